"""What every plot shares (``parrot stats``, ``parrot eval report``, ``parrot report``): a line's
look, the legend entry of an arm with nothing drawn, the finish, and the score-by-turn figure.
Every arm appears in a figure's legend: one with too little to draw has an entry that says so."""

from __future__ import annotations

from pathlib import Path

from parrot.core.staging import save_figure

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINES = ("-", "--", "-.", ":")


def subplots(*args, **kwargs):
    """``plt.subplots`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def style(i: int, *, size: float = 9, smallest: float = 3.5, lines: bool = True) -> dict:
    """Line ``i``'s look: its own hollow marker, shrinking from ``size`` to ``smallest``, and (with
    ``lines``) its own dash, so that arms whose lines coincide (two models with the same scores)
    all stay visible.

    >>> style(0)["marker"], style(1)["marker"], style(1)["ls"], style(2, size=7, smallest=3, lines=False)
    ('o', 's', '--', {'marker': '^', 'ms': 4.0, 'mfc': 'none'})
    """
    look = {"marker": MARKERS[i % len(MARKERS)], "ms": max(size - 1.5 * i, smallest), "mfc": "none"}
    return {**look, "ls": LINES[i % len(LINES)], "lw": 1.4} if lines else look


def absent(ax, label: str) -> None:
    """A legend entry for an arm with nothing drawn."""
    ax.plot([], [], ls="none", marker="x", color="grey", label=label)


def finish(fig, ax, path: Path) -> Path:
    """Whole steps on the x axis, a grid, the legend; saved to ``path``."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_scores(models: dict, path: Path, title: str, questions: dict = (), min_questions: int = 0) -> Path:
    """The paper's figure: mean score by turn, one line per model (``aggregate``'s), min–max over
    judge runs as bars; a model with no scored turn, or turns with fewer than ``min_questions``
    scored questions (``questions``: ``{model: {turn: n}}``), says so in the legend."""
    fig, ax = subplots(figsize=(6.4, 4.0), dpi=100)
    questions = dict(questions)
    names = sorted(models)
    for i, model in enumerate(names):
        points = [(t, s) for t, s in sorted(models[model]["by_turn"].items()) if s is not None]
        if not points:
            absent(ax, f"{model}: no scored judgments")
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
    return finish(fig, ax, path)
