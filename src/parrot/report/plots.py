"""The report's own figures (the score-by-turn one is :func:`parrot.core.figures.plot_scores`, the
data's are the stats plots). Every arm appears in every figure's legend: one with too little to
draw has a legend entry that says so (and the section notes under the figure name it)."""

from __future__ import annotations

from pathlib import Path

from parrot.core.figures import absent, finish, style, subplots


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
    fig, ax = subplots(figsize=(6.4, 3.6), dpi=100)
    for i, arm in enumerate(arms):
        pts = share_by_count(arm.get("hist"))
        if not pts:
            absent(ax, f"{arm['name']}: no sessions to plot")
            continue
        label = arm["name"] + (f" (only {arm['sessions']} sessions)" if arm.get("too_few") else "")
        ax.plot(*zip(*pts), label=label, **style(i))
    if real is not None:
        pts = share_by_count(real.get("hist"))
        if pts:
            ax.plot(*zip(*pts), color="black", label="real users", **{**style(len(arms)), "ms": 3, "mfc": "black"})
        else:
            absent(ax, "real users: no sessions to plot")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("turns per session")
    ax.set_ylabel("share of sessions")
    ax.set_title("Session length by asker")
    return finish(fig, ax, path)


def plot_losses(curves: list[dict], path: Path) -> Path:
    """Training loss by step, one line per model (``{"name", "points": [[step, loss], ...]}``), and
    its held-out loss dashed where it was measured (``"eval_points"``)."""
    fig, ax = subplots(figsize=(6.4, 3.6), dpi=100)
    for i, c in enumerate(curves):
        pts = c.get("points") or []
        if not pts:
            absent(ax, f"{c['name']}: no loss curve recorded")
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
    return finish(fig, ax, path)


def plot_pairs_by_turn(files: list[dict], path: Path) -> Path:
    """CaPO pairs by turn, one line per pair file and strategy (``{"name", "by_turn_strategy"}``)."""
    fig, ax = subplots(figsize=(6.4, 3.6), dpi=100)
    i = 0
    for f in files:
        by = f.get("by_turn_strategy") or {}
        if not by:
            absent(ax, f"{f['name']}: no pairs")
            continue
        for strategy in sorted(by):
            pts = sorted((int(t), n) for t, n in by[strategy].items())
            ax.plot(*zip(*pts), label=f"{f['name']}: {strategy}", **style(i))
            i += 1
    ax.set_ylim(bottom=0)
    ax.set_xlabel("turn of the question (1-based)")
    ax.set_ylabel("pairs")
    ax.set_title("CaPO pairs by turn and strategy")
    return finish(fig, ax, path)


def plot_shares(models: dict, measure: str, path: Path, title: str) -> Path:
    """A verified bench's strict instruction accuracy (%) with its 95% interval, one line per model:
    by turn (``measure="by_turn"``) or by turns since the instruction was given (``"retention"``)."""
    fig, ax = subplots(figsize=(6.4, 4.0), dpi=100)
    for i, model in enumerate(sorted(models)):
        cells = models[model][measure]
        points = []
        for x, cell in sorted(cells.items(), key=lambda kv: int(kv[0])):
            acc = (cell["instruction"] if measure == "by_turn" else cell)["strict"]
            if acc.get("mean") is not None:
                points.append((int(x), 100 * acc["mean"], 100 * acc["low"], 100 * acc["high"]))
        if not points:
            absent(ax, f"{model}: nothing checked")
            continue
        dodge = (i - (len(models) - 1) / 2) * min(0.08, 0.4 / max(len(models), 1))
        xs, ys = [p[0] + dodge for p in points], [p[1] for p in points]
        err = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ax.errorbar(xs, ys, yerr=err, capsize=3, label=model, **style(i))
    ax.set_xlabel("turn" if measure == "by_turn" else "turns since the instruction was given")
    ax.set_ylabel("instructions followed, strict (%)")
    ax.set_ylim(-2, 102)
    ax.set_title(title)
    return finish(fig, ax, path)
