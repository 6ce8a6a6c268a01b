"""How fast ``parrot eval verify`` checks responses, on one core (issue 26's target: 10,000 responses
in at most 10 s).

    .venv/bin/python benchmarks/verify_speed.py              # --responses 10000 --repeats 3

It writes answer files for the packaged verified-mt set, every conversation answered by several
"models" until ``--responses`` turns are answered. The answers are real: assistant replies from the
embedded ShareGPT data (as found, markdown, code, other languages and all), so each checker meets
the text it meets in use. Each repeat runs in a fresh process pinned to one core (no cache carried
over) and times the whole stage as a user's run pays it: the libraries it loads on first use
(langdetect's profiles, NLTK), reading, checking strict and loose, the measures with their
intervals, writing. The baseline, timed the same way: reading the same files and writing the same
number of records with no checking (what any stage pays). It prints seconds, responses per second
and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from parrot.core.jsonl import AtomicWriter, read_jsonl
from parrot.evaluate.verified import read_bench
from parrot.evaluate.verify import VerifyConfig, verify_answers


def real_replies(n: int) -> list[str]:
    """The first ``n`` non-empty assistant replies of the embedded ShareGPT data."""
    from parrot.prepare.sources import SourceStats, read_source

    replies: list[str] = []
    for raw in read_source("sharegpt", SourceStats()):
        turns = raw.record.get("conversations") or [] if isinstance(raw.record, dict) else []
        replies += [t["value"] for t in turns if t.get("from") == "gpt" and str(t.get("value", "")).strip()]
        if len(replies) >= n:
            return replies[:n]
    return replies


def write_answers(folder: Path, responses: int, seed: int = 0) -> tuple[list[Path], int]:
    items = read_bench("verified-mt")
    replies = real_replies(responses)
    rng = random.Random(seed)
    rng.shuffle(replies)
    paths, written, m = [], 0, 0
    while written < responses:
        path = folder / f"model{m}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for it in items:
                if written >= responses:
                    break
                turns = [replies[(written + k) % len(replies)] for k in range(min(len(it.turns), responses - written))]
                written += len(turns)
                fh.write(json.dumps({"question_id": it.key, "model_id": f"m{m}", "choices": [{"turns": turns}]}) + "\n")
        paths.append(path)
        m += 1
    return paths, written


CHILD = """
import os, sys, time
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}) if hasattr(os, "sched_setaffinity") else None
sys.path.insert(0, sys.argv[1])
from verify_speed import baseline, verify
what, out, paths = sys.argv[2], sys.argv[3], sys.argv[4:]
print((baseline if what == "base" else verify)(paths, out))
"""


def baseline(paths: list[str], out: str) -> float:
    """Read every answer file and write one record per response, checking nothing."""
    t0 = time.perf_counter()
    with AtomicWriter(out) as w:
        for p in paths:
            for _, rec in read_jsonl(p):
                for t, text in enumerate(rec["choices"][0]["turns"], 1):
                    w.write({"key": rec["question_id"], "turn": t, "response": text})
    return time.perf_counter() - t0


def verify(paths: list[str], out: str) -> float:
    """The whole ``parrot eval verify`` stage."""
    import contextlib
    import io

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its summary table
        verify_answers(VerifyConfig(answers=paths, output=out))
    return time.perf_counter() - t0


def timed(what: str, paths: list[Path], out: Path) -> float:
    """One run of ``what`` (base, verify) in a fresh process on one core: its seconds."""
    args = [sys.executable, "-c", CHILD, str(Path(__file__).parent), what, str(out), *map(str, paths)]
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--responses", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths, n = write_answers(folder, args.responses)
        base = [timed("base", paths, folder / f"base{r}.jsonl") for r in range(args.repeats)]
        full = [timed("verify", paths, folder / f"verified{r}.jsonl") for r in range(args.repeats)]
        records = read_jsonl(folder / "verified0.jsonl")
        checked = sum(len(rec["instruction_id_list"]) for _, rec in records)
    b, v = statistics.median(base), statistics.median(full)
    print(
        f"{n} responses ({checked} instructions, strict and loose), one core, fresh process, median of {args.repeats}:"
    )
    met = "met" if v * 10_000 / n <= 10 else "NOT met"
    print(f"  parrot eval verify: {v:.2f} s ({n / v:,.0f} responses/s); target 10,000 in <= 10 s: {met}")
    print(f"  baseline (read + write, no checks): {b:.2f} s; ratio verify/baseline: {v / b:.1f}x")
    print(
        f"  all runs (s): verify {', '.join(f'{x:.2f}' for x in full)}; baseline {', '.join(f'{x:.2f}' for x in base)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
