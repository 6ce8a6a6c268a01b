"""``parrot eval report``: scores per turn, per category and overall, as tables and a figure.

    parrot eval report judgments/*.jsonl -o report/

Each judgment file is one judge run. Within a run, a judgment is identified by (question,
model, turn, judge, prompt) and the last scored record wins; -1 (unparsable) is excluded
from every mean and counted. Means are FastChat's: the mean of all scored judgments (overall),
of those of turn k (per turn), of those of a category's questions (per category). Several runs
for the same model (the same answers judged again) give the median of the runs' means and the
spread (min–max). Several models appear side by side.

Without ``-o`` the markdown tables are printed; with ``-o DIR`` it writes ``report.md``,
``report.json``, ``score_by_turn.png`` (the paper's figure: score by turn, one line per model)
and ``report.manifest.json``.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.core.assets import DATA_DIR_HELP
from parrot.core.config import opt
from parrot.core.figures import plot_scores
from parrot.core.jsonl import read_jsonl, write_text_atomic
from parrot.core.manifest import write_manifest
from parrot.core.markdown import cell, table
from parrot.core.outputs import WritesFolder, writes_output
from parrot.core.staging import staged_folder
from parrot.evaluate.bench import load_bench

log = logging.getLogger("parrot.evaluate")


@dataclass
class ReportConfig(WritesFolder):
    judgments: list[str] = opt(help="judgment files (one judge run each)", positional=True, digest=True)
    output: str | None = opt(None, "directory for report.md, report.json, score_by_turn.png", flag="-o", hashed=False)
    bench: str = opt(
        "mt-bench",
        "questions whose categories label the per-category table (mt-bench-pp has the same ids and categories)",
        digest=True,
    )
    data_dir: str | None = opt(None, DATA_DIR_HELP, digest=True)

    STAGE: ClassVar[str] = "eval report"
    PLACE: ClassVar[str] = "eval/{}"
    FILES: ClassVar[tuple[str, ...]] = ("report.md", "report.json", "score_by_turn.png")
    RECORDS: ClassVar[str] = "report"


# ---------------------------------------------------------------- aggregation


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def latest_judgments(records: list[dict]) -> list[dict]:
    """One record per (question, model, turn, judge, prompt): the last scored one, else the last."""
    best: dict = {}
    for rec in records:
        key = (str(rec.get("question_id")), rec.get("model"), rec.get("turn"), tuple(rec.get("judge") or ()))
        if rec.get("score", -1) != -1 or key not in best or best[key].get("score", -1) == -1:
            best[key] = rec
    return list(best.values())


def score_run(records: list[dict], categories: dict) -> dict:
    """Means of one run of one model: overall, by turn, by category; -1 counted, not averaged."""
    scored = [r for r in records if r.get("score", -1) != -1]
    # Every turn and category judged gets a key, even when all its judgments are -1.
    by_turn, by_cat, unparsable_by_turn = defaultdict(list), defaultdict(list), defaultdict(int)
    for r in records:
        turn, cat = int(r["turn"]), categories.get(str(r["question_id"]), "unknown")
        scored_here = r.get("score", -1) != -1
        for group in (by_turn[turn], by_cat[cat]):  # indexing creates the key either way
            if scored_here:
                group.append(float(r["score"]))
        if not scored_here:
            unparsable_by_turn[turn] += 1
    return {
        "overall": _mean([float(r["score"]) for r in scored]),
        "by_turn": {k: _mean(v) for k, v in sorted(by_turn.items())},
        "by_category": {k: _mean(v) for k, v in sorted(by_cat.items())},
        "unparsable_by_turn": dict(sorted(unparsable_by_turn.items())),
        "judged": len(scored),
        "unparsable": len(records) - len(scored),
        "judges": sorted({(r.get("judge") or ["?"])[0] for r in records}),
    }


def combine(values: list[float | None]) -> dict | None:
    """Median and spread of one statistic across runs (runs lacking it are left out)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    return {"median": round(statistics.median(xs), 4), "min": min(xs), "max": max(xs), "runs": len(xs)}


def aggregate(runs: list[dict], categories: dict) -> dict:
    """``runs``: ``[{"source": path, "records": [...]}]`` (:func:`load_runs`: each judgment's latest)
    → per-model summary across runs."""
    per_model: dict = defaultdict(list)
    for run in runs:
        by_model = defaultdict(list)
        for rec in run["records"]:
            by_model[rec.get("model")].append(rec)
        for model, recs in by_model.items():
            per_model[model].append({"source": run["source"], **score_run(recs, categories)})
    models = {}
    for model, stats in per_model.items():
        turns = sorted({t for s in stats for t in s["by_turn"]})
        cats = sorted({c for s in stats for c in s["by_category"]})
        models[model] = {
            "runs": stats,
            "overall": combine([s["overall"] for s in stats]),
            "by_turn": {t: combine([s["by_turn"].get(t) for s in stats]) for t in turns},
            "by_category": {c: combine([s["by_category"].get(c) for s in stats]) for c in cats},
            "judged": sum(s["judged"] for s in stats),
            "unparsable": sum(s["unparsable"] for s in stats),
            "unparsable_by_turn": {t: sum(s["unparsable_by_turn"].get(t, 0) for s in stats) for t in turns},
        }
    return models


# ---------------------------------------------------------------- rendering


def same_score_warning(runs: list[dict]) -> str | None:
    """A warning when every scored judgment of every run has one and the same score: such a
    judge (a tiny offline model, say) does not tell answers apart, so no ranking can be read."""
    scores = [float(r["score"]) for run in runs for r in run["records"] if r.get("score", -1) != -1]
    if len(scores) < 2 or len(set(scores)) != 1:
        return None
    return (
        f"The judge gave all {len(scores)} judged turns the same score ({scores[0]:g}): it does not "
        "tell the answers apart, so these scores rank nothing. Judge again with a stronger model "
        "(`parrot eval judge --judge SPEC`)."
    )


def markdown(models: dict, warning: str | None = None) -> str:
    """The three tables: overall, by turn, by category (median [min–max] over runs)."""
    names = sorted(models)
    counts = [
        [m, cell(x["overall"]), *map(str, (len(x["runs"]), x["judged"], x["unparsable"]))] for m, x in models.items()
    ]
    overall = table(["model", "score", "runs", "judged", "-1 (excluded)"], sorted(counts))
    turns = sorted({t for m in names for t in models[m]["by_turn"]})
    rows = []
    for m in names:
        rows.append([m] + [cell(models[m]["by_turn"].get(t)) for t in turns])
        if models[m]["unparsable"]:  # how many -1 each turn's mean leaves out
            rows.append([f"{m}: -1 excluded"] + [str(models[m]["unparsable_by_turn"].get(t, 0)) for t in turns])
    by_turn = table(["model"] + [f"turn {t}" for t in turns], rows)
    cats = sorted({c for m in names for c in models[m]["by_category"]})
    by_cat = table(["model"] + cats, [[m] + [cell(models[m]["by_category"].get(c)) for c in cats] for m in names])
    note = (
        "Scores 1–10 from the judge; -1 (no rating could be read) excluded and counted. "
        "With several judge runs: median [min–max] over runs."
    )
    head = f"> **Warning:** {warning}\n\n" if warning else ""
    return (
        f"{head}## Overall\n\n{overall}\n\n## Score by turn\n\n{by_turn}\n\n"
        f"## Score by category\n\n{by_cat}\n\n{note}\n"
    )


# ---------------------------------------------------------------- command


def load_runs(paths: list[str]) -> list[dict]:
    """One run per judgment file: ``{"source", "records"}``, the latest of each judgment (:func:`latest_judgments`)."""
    runs = []
    for path in paths:
        records = []
        for lineno, rec in read_jsonl(path):
            missing = [k for k in ("question_id", "model", "score", "turn") if k not in rec]
            if missing:
                raise ParrotError(
                    f"{path}:{lineno}: expected FastChat's single-judgment schema, missing {', '.join(missing)}"
                )
            score, turn = rec["score"], rec["turn"]
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise ParrotError(f"{path}:{lineno}: score: expected a number (-1 for unparsable), found {score!r}")
            if isinstance(turn, bool) or not isinstance(turn, int) or turn < 1:
                raise ParrotError(f"{path}:{lineno}: turn: expected a turn number from 1, found {turn!r}")
            records.append(rec)
        runs.append({"source": str(path), "records": latest_judgments(records)})
    return runs


def question_categories(bench: str, data_dir) -> dict:
    """question_id (as a string) → category; empty (with a warning) when the data is missing."""
    try:
        questions = load_bench(bench, data_dir, followups=None).questions
    except ParrotError as e:
        if bench.lower().replace("_", "-") in ("mt-bench-pp", "mt-bench++"):  # same ids as MT-Bench
            return question_categories("mt-bench", data_dir)
        log.warning("no categories (%s): every question counts as 'unknown'", e)
        return {}
    return {str(q["question_id"]): q.get("category", "unknown") for q in questions}


@writes_output
def report(cfg: ReportConfig) -> dict:
    """Run ``parrot eval report``; return the summary written to report.json."""
    started = time.monotonic()
    runs = load_runs(cfg.judgments)
    models = aggregate(runs, question_categories(cfg.bench, cfg.data_dir))
    if not models:
        raise ParrotError(f"{', '.join(cfg.judgments)}: no judgments")
    warning = same_score_warning(runs)
    if warning:
        log.warning("%s", warning)
    text = markdown(models, warning)
    summary = {"models": models, "sources": list(cfg.judgments), "warnings": [warning] if warning else []}
    if not cfg.output:
        print(text)
        return summary
    out = Path(cfg.output)
    # all three files or none: a full disk or a read-only folder leaves the previous report whole
    with staged_folder(out, unclaim=cfg.side_files()) as staging:
        write_text_atomic(staging / "report.md", "# Evaluation report\n\n" + text)
        write_text_atomic(staging / "report.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        png = out / plot_scores(models, staging / "score_by_turn.png", "Score by turn").name
    write_manifest(
        cfg,
        counts={"runs": len(runs), "models": len(models)}
        | {k: sum(m[k] for m in models.values()) for k in ("judged", "unparsable")},
        timings={"seconds": round(time.monotonic() - started, 3)},
        outputs=[str(out / "report.md"), str(out / "report.json"), str(png)],
    )
    log.info("report: %s", out / "report.md")
    return summary
