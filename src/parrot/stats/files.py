"""The ``stats`` outputs: ``stats.md`` (one row per dataset), ``stats.json``, PNG plots, manifests;
and :func:`read_stats`, what another stage (the report) reads of them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from parrot import ParrotError
from parrot.core.config import build_config, to_dict
from parrot.core.figures import style, subplots
from parrot.core.jsonl import read_json, write_text_atomic
from parrot.core.manifest import write_manifest
from parrot.core.markdown import cell, table
from parrot.core.redact import redact
from parrot.core.staging import save_figure

if TYPE_CHECKING:
    from parrot.stats.stage import StatsConfig

_fmt = partial(cell, missing="n/a")


def table_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The data table's headers and cells, one row per dataset (``parrot report`` shows them too)."""
    tok = any("user_tokens" in r for r in rows)
    judge = any("llm_judge" in r for r in rows)
    headers = [
        "dataset",
        "sessions",
        "turns/session (mean / median)",
        "user len" + (" (tokens / words)" if tok else " (words)"),
        "assistant len" + (" (tokens / words)" if tok else " (words)"),
        "ctx-dep. q/session",
        "ctx-dep. share of follow-ups",
    ]
    if judge:
        headers.append("LLM judge ctx-dep. share")
    headers += ["Self-ROUGE ↓", "topic diversity ↑", "topic shifts/session", "human-likeness AUC (0.5 = human)"]
    table = []
    for r in rows:

        def length(kind: str) -> str:
            words = _fmt(r[f"{kind}_words"]["mean"], 1)
            return f"{_fmt(r[f'{kind}_tokens']['mean'], 1)} / {words}" if f"{kind}_tokens" in r else words

        cells = [
            r["name"],
            str(r["sessions"]),
            f"{_fmt(r['turns_mean'])} / {_fmt(r['turns_median'], 1)}",
            length("user"),
            length("assistant"),
            _fmt(r["context_dependent_per_session"]),
            _fmt(r["context_dependent_share_of_followups"]),
        ]
        if judge:
            cells.append(_fmt((r.get("llm_judge") or {}).get("dependent_share")))
        shifts = (r.get("topic_shifts") or {}).get("shifts_per_session")
        cells += [_fmt(r.get("self_rouge"), 3), _fmt(r.get("topic_diversity"), 3), _fmt(shifts)]
        cells.append(_auc(r.get("human_likeness") or {}))
        table.append(cells)
    return headers, table


def _auc(hl: dict) -> str:
    """The human-likeness AUC: where recorded, the pooled out-of-fold AUC with its 95% interval
    (the value the interval is about, as the report shows it), else the mean over folds.

    >>> _auc({"auc": 0.61, "auc_ci": {"value": 0.6, "low": 0.52, "high": 0.68}}), _auc({"auc": 0.61}), _auc({})
    ('0.600 [0.520, 0.680]', '0.610', 'n/a')
    """
    ci = hl.get("auc_ci") or {}
    if ci.get("value") is not None and ci.get("low") is not None:
        return f"{ci['value']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"
    return _fmt(hl.get("auc"), 3)


def sampling_note(rows: list[dict], cfg) -> str:
    parts = []
    for r in rows:
        s = r["sampling"]
        bits = [
            f"Self-ROUGE on {r['self_rouge_sample']} of {s['questions_seen']} questions "
            f"(first {cfg.rouge_max_tokens} word tokens each)"
        ]
        if r.get("topic_diversity") is not None:
            bits.append(f"topic diversity on {r['topic_diversity_sample']} questions")
        if r.get("topic_shifts"):
            bits.append(
                f"topic shifts on {s['sessions_for_shifts']} sessions "
                f"(cosine < {cfg.shift_threshold}, later question self-contained)"
            )
        if hl := r.get("human_likeness"):
            halves = " (the real file itself: two disjoint halves of its sample)" if hl.get("halves") else ""
            bits.append(
                f"human-likeness on {hl['n_per_class']} vs {hl['n_per_class']} real questions, {hl['folds']}-fold CV{halves}"
            )
        if r.get("llm_judge"):
            bits.append(f"LLM judge on {r['llm_judge']['judged']} follow-ups")
        parts.append(f"- {r['name']}: " + "; ".join(bits) + f" (sampled uniformly, seed {s['seed']}).")
    head = "Sampled metrics (quadratic or model-bound; everything else is exact over the whole file):"
    return "\n".join([head, *parts]) + "\n"


def _save(fig, axes, path: Path, layout: bool = True) -> Path:
    for ax in axes:
        ax.legend(fontsize=8)
    if layout:
        fig.tight_layout()
    return save_figure(fig, path)


def plot_turns(rows: list[dict], path: Path) -> Path:
    """Turns per session, a share of each dataset's sessions (20 = 20 or more)."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = subplots(figsize=(6, 3.4), dpi=90)
    for i, r in enumerate(rows):
        hist = {int(k): v for k, v in r["turns_histogram"].items()}
        top = 20
        xs = list(range(1, top + 1))
        ys = [hist.get(x, 0) for x in xs[:-1]] + [sum(v for k, v in hist.items() if k >= top)]
        total = sum(hist.values()) or 1
        ax.plot(xs, [y / total for y in ys], label=r["name"], **style(i, size=7, smallest=3, lines=False))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("turns per session (20 = 20 or more)")
    ax.set_ylabel("share of sessions")
    return _save(fig, [ax], path)


def plot_lengths(rows: list[dict], path: Path) -> Path:
    """User and assistant message lengths, cumulative, on a log scale."""
    fig, axes = subplots(1, 2, figsize=(9, 3.4), dpi=90)
    for ax, kind in zip(axes, ("user", "assistant")):
        unit = "tokens" if f"{kind}_tokens" in rows[0] else "words"
        for r in rows:
            h = r[f"{kind}_{unit}"]["histogram"]
            total = sum(h["counts"]) or 1
            cum, ys = 0, []
            for c in h["counts"]:
                cum += c
                ys.append(cum / total)
            ax.step([max(e, 1) for e in h["edges"]], ys, where="post", label=r["name"])
        ax.set_xscale("log")
        ax.set_xlabel(f"{kind} message length ({unit}, log scale)")
        ax.set_ylabel("share of messages this long or shorter")
        ax.set_ylim(0, 1.02)
    return _save(fig, axes, path)


def plot_context(rows: list[dict], path: Path) -> Path:
    """The context-dependent share of questions by turn, where a turn has enough questions."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = subplots(figsize=(6, 3.4), dpi=90)
    for i, r in enumerate(rows):
        pts = [(p["turn"], p["share"]) for p in r["context_by_turn"] if p["questions"] >= CONTEXT_MIN_QUESTIONS]
        if pts:  # own marker and size per dataset: lines that coincide stay visible
            ax.plot(*zip(*pts), label=r["name"] + _short_suffix(r), **style(i, size=8, smallest=3, lines=False))
        else:  # every dataset is in the legend: one with no turn to plot says so
            ax.plot([], [], ls="none", marker="x", label=f"{r['name']}: not plotted{_short_suffix(r)}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"turn index (20 = 20 or later; points with {CONTEXT_MIN_QUESTIONS}+ questions)")
    ax.set_ylabel("context-dependent share")
    ax.set_ylim(0, 1)
    notes = context_plot_notes(rows)
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes), fontsize=7, va="bottom", wrap=True)
        fig.tight_layout(rect=(0, 0.04 + 0.05 * len(notes), 1, 1))
    return _save(fig, [ax], path, layout=not notes)


#: The plots a stats run writes beside stats.json and stats.md, and what draws each.
PLOTS = {"turns_histogram.png": plot_turns, "lengths.png": plot_lengths, "context_by_turn.png": plot_context}

#: A turn's context-dependent share is plotted when the dataset has this many questions at that turn.
CONTEXT_MIN_QUESTIONS = 20


def _short_turns(row: dict) -> tuple[list[int], int]:
    """The turns of ``row`` with too few questions to plot, and its most questions at any turn."""
    points = row.get("context_by_turn") or []
    short = [p["turn"] for p in points if p["questions"] < CONTEXT_MIN_QUESTIONS]
    return short, max((p["questions"] for p in points), default=0)


def _short_suffix(row: dict) -> str:
    short, most = _short_turns(row)
    points = row.get("context_by_turn") or []
    if not short:
        return ""
    if len(short) == len(points):
        return f" (no turn with {CONTEXT_MIN_QUESTIONS}+ questions; most {most})"
    return f" (turns {_turn_span(short)}: < {CONTEXT_MIN_QUESTIONS} questions, not plotted)"


def _turn_span(turns: list[int]) -> str:
    return (
        f"{turns[0]}"
        if len(turns) == 1
        else f"{turns[0]}–{turns[-1]}"
        if turns == list(range(turns[0], turns[-1] + 1))
        else ", ".join(map(str, turns))
    )


def context_plot_notes(rows: list[dict]) -> list[str]:
    """What ``context_by_turn.png`` leaves out, naming each dataset: a dataset with no turn of
    ``CONTEXT_MIN_QUESTIONS`` questions has no line at all, and the plot must not be silent about it.

    >>> context_plot_notes([{"name": "synth", "context_by_turn": [{"turn": 1, "questions": 12}]}])
    ['synth: not plotted, no turn has 20+ questions (most: 12)']
    """
    notes = []
    for r in rows:
        short, most = _short_turns(r)
        if short and len(short) == len(r.get("context_by_turn") or []):
            notes.append(f"{r['name']}: not plotted, no turn has {CONTEXT_MIN_QUESTIONS}+ questions (most: {most})")
    return notes


def write_files(cfg, rows: list[dict], folder: Path, timer, *, tokenizer_path: str | None) -> dict:
    """The plots, stats.json and stats.md in ``folder`` (the output's staging folder); return
    the document of stats.json."""
    plots = []
    if cfg.plots:
        with timer("plots"):
            plots = [plot(rows, folder / name) for name, plot in PLOTS.items()]
    doc = {
        "datasets": rows,
        "tokenizer": tokenizer_path,
        "config": redact(to_dict(cfg)),
        "timings_s": timer.rounded(),
        "cpu_s": timer.rounded_cpu(),
        "plots": [p.name for p in plots],
    }
    write_text_atomic(folder / "stats.json", json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    md = table(*table_cells(rows), numbers=True) + "\n\n" + sampling_note(rows, cfg)
    if plots and (notes := context_plot_notes(rows)):
        md += "\ncontext_by_turn.png: " + "; ".join(notes) + ".\n"
    if plots:
        md += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"
    write_text_atomic(folder / "stats.md", md)
    return doc


@dataclass(frozen=True)
class StatsRun:
    """What a stats folder's stats.json holds (:func:`read_stats`)."""

    datasets: list[dict]  # one row per dataset, as :func:`table_cells` shows them
    config: StatsConfig  # the settings it ran with


def read_stats(folder: str | Path) -> StatsRun:
    """The rows and the settings a `parrot stats` run wrote into ``folder/stats.json``; a setting
    this version does not know is an error naming the file."""
    from parrot.stats.stage import StatsConfig  # noqa: F811 - stats.stage imports this module

    path = Path(folder) / "stats.json"
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), list) or "config" not in doc:
        raise ParrotError(f"{path}: not the stats.json of `parrot stats` (no datasets or config)")
    return StatsRun(doc["datasets"], build_config(StatsConfig, doc["config"], where=str(path)))


def write_manifests(cfg, out_dir: Path, plots: list[str], timer, counts: dict) -> None:
    """The manifests of stats.json and stats.md, once the files are in place."""
    for name in reversed(cfg.MANIFESTS):  # stats.json's manifest, the one that says complete, last
        write_manifest(
            cfg,
            of=out_dir / name,
            counts=counts,
            timings={"wall_s": timer.rounded(), "cpu_s": timer.rounded_cpu()},
            sampling={
                "seed": cfg.seed,
                "sample": cfg.sample,
                "rouge_sample": cfg.rouge_sample,
                "shift_sessions": cfg.shift_sessions,
            },
            files=[*plots, "stats.md", "stats.json"],
        )
