"""``parrot eval verify``: whether each response does what its instructions say, checked by a program.

    parrot eval verify --bench verified-mt eval/verified_base.jsonl eval/verified_sft.jsonl -o eval/verified.jsonl
    parrot eval verify --bench ifeval_input_data.jsonl responses.jsonl -o eval/ifeval.jsonl

No model is involved: every instruction active at a turn is checked on that turn's response by
:mod:`parrot.evaluate.instructions` (IFEval's 25 kinds), strictly and loosely (loose: the response
also passes with its first and/or last line left out and/or its ``*`` removed). Benches and
responses are read as :mod:`parrot.evaluate.verified` describes.

One record per model, item and answered turn, with IFEval's field names, so a line compares with the
reference's ``eval_results_strict.jsonl`` / ``eval_results_loose.jsonl`` ones::

    {"model": "base", "key": "vmt-001", "turn": 2, "prompt": "...", "response": "...",
     "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"],
     "kwargs": [{}, {}], "since": [1, 2],
     "strict": {"follow_instruction_list": [true, false], "follow_all_instructions": false},
     "loose": {"follow_instruction_list": [true, true], "follow_all_instructions": true}}

``since`` is the turn that gave each instruction: ``turn - since`` is how many turns ago it was
given, which the retention measure groups by. The measures (:func:`measures`), per model:

- **by turn**: instruction-level accuracy (followed instructions / instructions) and
  conversation-level accuracy (turns whose every instruction is followed / turns with instructions),
  strict and loose, each with a bootstrap interval over conversations;
- **retention**: instruction-level accuracy by how many turns ago the instruction was given;
- **by kind**: instruction-level accuracy per IFEval kind (``keywords``, ``length_constraints``...);
- **overall**: instruction-level accuracy and turn-level accuracy (turns whose every instruction is
  followed) over every turn.

Items a model left unanswered (``parrot eval answer --limit``) are counted and left out; turns with no
instruction are written but measure nothing. The whole output is written again at each run (10,000
responses take seconds); with ``--resume`` a complete output made with the same inputs is kept.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

from parrot import ParrotError
from parrot.core.config import opt
from parrot.core.jsonl import AtomicWriter, read_jsonl
from parrot.core.log import format_table, progress
from parrot.core.manifest import write_manifest
from parrot.core.outputs import ONE_PASS, WritesOutput, writes_output
from parrot.evaluate.bench import bench_name
from parrot.evaluate.instructions import kind, verify
from parrot.evaluate.verified import VERIFIED_MT, read_bench, read_responses
from parrot.report.bootstrap import cluster_bootstrap

log = logging.getLogger("parrot.evaluate")

LEVELS = ("strict", "loose")


@dataclass
class VerifyConfig(WritesOutput):
    answers: list[str] = opt(
        help="response files: Parrot's answers (question_id, choices[0].turns) or IFEval's (prompt, response)",
        positional=True,
        digest=True,
    )
    output: str = opt(help="verdicts JSONL, one line per model, item and turn", flag="-o", hashed=False)
    bench: str = opt(VERIFIED_MT, "verified-mt | a bench FILE (IFEval JSONL, Multi-IF CSV/JSONL)", digest=True)
    n_boot: int = opt(2000, "bootstrap resamples for the intervals", min=100)

    STAGE: ClassVar[str] = "eval verify"
    PLACE: ClassVar[str] = "eval/{}.jsonl"
    RESUMES: ClassVar[str] = ONE_PASS
    RECORDS: ClassVar[str] = "verdicts"

    def __post_init__(self):
        if not self.answers:
            raise ParrotError("answers: expected one or more response files, found none")


def verdicts(items, responses) -> tuple[list[dict], dict]:
    """One record per model, item and answered turn; and the counts."""
    by_key = {it.key: it for it in items}
    records, counts = [], {"turns": 0, "instructions": 0, "unanswered": 0}
    for resp in responses:
        counts["unanswered"] += sum(1 for it in items if it.key not in resp.turns)
        for key, answers in resp.turns.items():
            item = by_key[key]
            for t, (turn, response) in enumerate(zip(item.turns, answers), 1):
                ids = [a.id for a in turn.instructions]
                kwargs = [a.kwargs for a in turn.instructions]
                strict, loose = verify(response, ids, kwargs, prompt=turn.prompt)
                counts["turns"] += 1
                counts["instructions"] += len(ids)
                records.append(
                    {
                        "model": resp.model,
                        "key": key,
                        "turn": t,
                        "prompt": turn.prompt,
                        "response": response,
                        "instruction_id_list": ids,
                        "kwargs": kwargs,
                        "since": [a.since for a in turn.instructions],
                        "strict": {"follow_instruction_list": strict, "follow_all_instructions": all(strict)},
                        "loose": {"follow_instruction_list": loose, "follow_all_instructions": all(loose)},
                    }
                )
    return records, dict(counts)


# ---------------------------------------------------------------- measures


def _accuracy(cells: dict, n_boot: int) -> dict:
    """Accuracy from ``{conversation: [hits, n]}``, with its 95% interval over conversations (seed 0):
    ``{mean, low, high, n (conversations), items (instructions or turns)}``."""
    acc = cluster_bootstrap({k: tuple(v) for k, v in cells.items()}, n_boot=n_boot)
    return {k: acc[k] for k in ("mean", "low", "high", "n", "items")}


MEASURES = ("by_turn", "retention", "by_kind", "overall")


def measures(records: list[dict], n_boot: int = 2000, parts: tuple[str, ...] = MEASURES) -> dict:
    """``{model: {by_turn, retention, by_kind, overall}}`` (those of ``parts``): accuracies with their
    intervals (over conversations, percentile bootstrap, seeded), strict and loose."""
    out = {}
    for model in sorted({r["model"] for r in records}):
        groups: dict = defaultdict(lambda: defaultdict(lambda: [0, 0]))  # (measure, level, group) -> key -> [hits, n]

        def add(name: str, level: str, group, key: str, hits: int, n: int) -> None:
            cell = groups[name, level, group][key]
            cell[0] += hits
            cell[1] += n

        for r in records:
            if r["model"] != model or not r["instruction_id_list"]:
                continue
            key, turn = r["key"], r["turn"]
            for level in LEVELS:
                follow = r[level]["follow_instruction_list"]
                followed, whole = sum(follow), int(all(follow))
                add("turn_instruction", level, turn, key, followed, len(follow))
                add("turn_conversation", level, turn, key, whole, 1)
                add("overall", level, "instruction", key, followed, len(follow))
                add("overall", level, "turn", key, whole, 1)
                for ok, iid, since in zip(follow, r["instruction_id_list"], r["since"]):
                    if "retention" in parts:
                        add("retention", level, turn - since, key, int(ok), 1)
                    if "by_kind" in parts:
                        add("by_kind", level, kind(iid), key, int(ok), 1)
        table: dict = defaultdict(lambda: defaultdict(dict))
        for (name, level, group), cells in groups.items():
            table[name][str(group)][level] = _accuracy(cells, n_boot)
        every = {
            "by_turn": {
                t: {"instruction": table["turn_instruction"][t], "conversation": table["turn_conversation"][t]}
                for t in sorted(table["turn_instruction"], key=int)
            },
            "retention": {d: table["retention"][d] for d in sorted(table["retention"], key=int)},
            "by_kind": dict(sorted(table["by_kind"].items())),
            "overall": dict(table["overall"]),
        }
        out[model] = {part: every[part] for part in parts}
    return out


def conversation_accuracy(records: list[dict], model: str, level: str = "strict") -> dict[str, float]:
    """``{conversation: instruction-level accuracy}`` of one model: what paired comparisons resample."""
    cells: dict = defaultdict(lambda: [0, 0])
    for r in records:
        if r["model"] == model and r["instruction_id_list"]:
            follow = r[level]["follow_instruction_list"]
            cells[r["key"]][0] += sum(follow)
            cells[r["key"]][1] += len(follow)
    return {k: h / n for k, (h, n) in cells.items()}


@dataclass(frozen=True)
class VerifiedRun:
    """What one ``parrot eval verify`` output holds, as the report reads it."""

    source: str
    bench: str
    records: list[dict]


def verify_run(path) -> VerifiedRun:
    """The records ``parrot eval verify`` wrote to ``path`` and the bench they answer (the report's reader)."""
    from parrot.core.manifest import read_manifest

    bench = (read_manifest(path) or {}).get("bench") or VERIFIED_MT
    return VerifiedRun(str(path), bench_name(bench), [rec for _, rec in read_jsonl(path)])


# ---------------------------------------------------------------- the stage


@writes_output
def verify_answers(cfg: VerifyConfig) -> dict:
    """Run ``parrot eval verify``; return the counts."""
    started = time.monotonic()
    items = read_bench(cfg.bench)
    responses = [r for path in cfg.answers for r in read_responses(path, items)]
    names = [r.model for r in responses]
    twice = sorted({m for m in names if names.count(m) > 1})
    if twice:
        raise ParrotError(f"model {twice[0]!r} answers in more than one of {', '.join(cfg.answers)}")
    if not responses:
        log.warning("no responses in %s: the output holds no verdicts", ", ".join(cfg.answers))
    records, counts = verdicts(items, progress(responses, desc="verify", unit="model"))
    with AtomicWriter(cfg.output) as out:
        for rec in records:
            out.write(rec)
    summary = measures(records, cfg.n_boot, parts=("by_turn", "overall"))  # what it prints and records
    counts = {"models": len(responses), "items": len(items), **counts}
    write_manifest(
        cfg,
        counts=counts,
        timings={"seconds": round(time.monotonic() - started, 3)},
        bench=bench_name(cfg.bench),
        overall={m: s["overall"] for m, s in summary.items()},
        complete=True,
    )
    print(summary_table(summary))
    return counts


def summary_table(summary: dict) -> str:
    """Accuracy by turn per model, as printed at the end of a run."""
    rows = []
    for model, s in summary.items():
        for t, cell in s["by_turn"].items():
            rows.append(
                (
                    model,
                    t,
                    cell["instruction"]["strict"]["n"],
                    _pct(cell["instruction"]["strict"]),
                    _pct(cell["instruction"]["loose"]),
                    _pct(cell["conversation"]["strict"]),
                    _pct(cell["conversation"]["loose"]),
                )
            )
    headers = ("model", "turn", "conversations", "instr strict", "instr loose", "all strict", "all loose")
    return format_table(rows, headers, left=(0,))


def _pct(acc: dict) -> str:
    return "–" if acc["mean"] is None else f"{acc['mean']:.1%} [{acc['low']:.0%}, {acc['high']:.0%}]"
