"""The report's figures. Every arm appears in every figure's legend: one with too little to draw
has a legend entry that says so (and the section notes under the figure name it)."""

from __future__ import annotations

from pathlib import Path

from parrot.core.staging import save_figure


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINES = ("-", "--", "-.", ":")


def style(i: int) -> dict:
    """Line ``i``'s look: its own hollow marker, shrinking and with its own dash, so that arms whose
    lines coincide (two models with the same scores) all stay visible.

    >>> style(0)["marker"], style(1)["marker"], style(1)["ls"]
    ('o', 's', '--')
    """
    return {
        "marker": MARKERS[i % len(MARKERS)],
        "ms": max(9 - 1.5 * i, 3.5),
        "mfc": "none",
        "ls": LINES[i % len(LINES)],
        "lw": 1.4,
    }


def _absent(ax, label: str) -> None:
    """A legend entry for an arm with nothing drawn."""
    ax.plot([], [], ls="none", marker="x", color="grey", label=label)


def _save(fig, ax, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def share_by_count(hist: dict | list | None) -> list[tuple[int, float]]:
    """``{turns: sessions}`` (keys may be strings) or ``[[turns, sessions], ...]`` as shares, sorted.

    >>> share_by_count({"2": 1, "1": 3})
    [(1, 0.75), (2, 0.25)]
    """
    items = hist.items() if isinstance(hist, dict) else (hist or [])
    pairs = sorted((int(k), float(v)) for k, v in items)
    total = sum(v for _, v in pairs) or 1.0
    return [(k, v / total) for k, v in pairs]


def plot_session_lengths(arms: list[dict], real: dict | None, path: Path) -> Path:
    """Turns per session, share of sessions, one line per asker arm and one for real users.
    ``arms``: ``{"name", "hist", "sessions", "too_few"}``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for i, arm in enumerate(arms):
        pts = share_by_count(arm.get("hist"))
        if not pts:
            _absent(ax, f"{arm['name']}: no sessions to plot")
            continue
        label = arm["name"] + (f" (only {arm['sessions']} sessions)" if arm.get("too_few") else "")
        ax.plot(*zip(*pts), label=label, **style(i))
    if real is not None:
        pts = share_by_count(real.get("hist"))
        if pts:
            ax.plot(*zip(*pts), color="black", label="real users", **{**style(len(arms)), "ms": 3, "mfc": "black"})
        else:
            _absent(ax, "real users: no sessions to plot")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("turns per session")
    ax.set_ylabel("share of sessions")
    ax.set_title("Session length by asker")
    return _save(fig, ax, path)


def plot_losses(curves: list[dict], path: Path) -> Path:
    """Training loss by step, one line per model (``{"name", "points": [[step, loss], ...]}``), and
    its held-out loss dashed where it was measured (``"eval_points"``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for i, c in enumerate(curves):
        pts = c.get("points") or []
        if not pts:
            _absent(ax, f"{c['name']}: no loss curve recorded")
        elif len(pts) == 1:
            line = ax.plot(*zip(*pts), label=f"{c['name']} (one logged step)", **{**style(i), "ls": "none"})[0]
        else:
            line = ax.plot(*zip(*pts), label=c["name"], **{**style(i), "ms": 3, "ls": "-"})[0]
        held = c.get("eval_points") or []
        if held:
            color = line.get_color() if pts else None
            ax.plot(*zip(*held), ls="--", marker="s", ms=3, color=color, label=f"{c['name']} (held-out)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (dashed: held-out)")
    ax.set_title("Training loss")
    return _save(fig, ax, path)


def plot_pairs_by_turn(files: list[dict], path: Path) -> Path:
    """CaPO pairs by turn, one line per pair file and strategy (``{"name", "by_turn_strategy"}``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    i = 0
    for f in files:
        by = f.get("by_turn_strategy") or {}
        if not by:
            _absent(ax, f"{f['name']}: no pairs")
            continue
        for strategy in sorted(by):
            pts = sorted((int(t), n) for t, n in by[strategy].items())
            ax.plot(*zip(*pts), label=f"{f['name']}: {strategy}", **style(i))
            i += 1
    ax.set_ylim(bottom=0)
    ax.set_xlabel("turn of the question (1-based)")
    ax.set_ylabel("pairs")
    ax.set_title("CaPO pairs by turn and strategy")
    return _save(fig, ax, path)


def plot_scores(models: dict, questions: dict, path: Path, title: str, min_questions: int) -> Path:
    """Mean score by turn, one line per model, min–max over judge runs as bars; a model with no
    scored turn, or turns with fewer than ``min_questions`` scored questions, says so in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    names = sorted(models)
    for i, model in enumerate(names):
        points = [(t, s) for t, s in sorted(models[model]["by_turn"].items()) if s is not None]
        if not points:
            _absent(ax, f"{model}: no scored judgments")
            continue
        few = [t for t, _ in points if questions.get(model, {}).get(t, 0) < min_questions]
        label = model + (f" (turn {', '.join(map(str, few))}: < {min_questions} questions)" if few else "")
        dodge = (i - (len(names) - 1) / 2) * min(0.08, 0.4 / max(len(names), 1))  # side by side at each turn
        xs = [t + dodge for t, _ in points]
        ys = [s["median"] for _, s in points]
        err = [[s["median"] - s["min"] for _, s in points], [s["max"] - s["median"] for _, s in points]]
        ax.errorbar(xs, ys, yerr=err, capsize=3, label=label, **style(i))
    ax.set_xlabel("turn")
    ax.set_ylabel("score (1–10)")
    ax.set_ylim(0, 10.5)
    ax.set_title(title)
    return _save(fig, ax, path)
