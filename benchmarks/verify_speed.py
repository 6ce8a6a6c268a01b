"""How fast ``parrot eval verify`` checks responses, on one core (issue 26's target: 10,000 responses
in at most 10 s).

    .venv/bin/python benchmarks/verify_speed.py              # --responses 10000 --repeats 3

It writes answer files for the packaged verified-mt set (every conversation answered by several
"models", so that ``--responses`` turns are checked: ~150 words per answer, paragraphs, a title,
bullets, some commas and capitals, so each checker does its real work), pins itself to one core, and
times the whole stage (read, check strict and loose, measures with intervals, write). The baseline,
timed in the same run: reading the same files and writing the same number of records with no
checking (what any stage pays). It prints seconds, responses per second and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from parrot.core.jsonl import AtomicWriter, read_jsonl
from parrot.evaluate.verified import read_bench
from parrot.evaluate.verify import VerifyConfig, verify_answers

WORDS = "the river carries cold water past old stone bridges and quiet fields toward a distant grey sea".split()


def answer_text(rng: random.Random) -> str:
    """About 150 words: a title, two paragraphs, three bullets, now and then a comma or a capital."""
    para = lambda n: " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."  # noqa: E731
    bullets = "\n".join(f"* {para(6)}" for _ in range(3))
    text = f"<<{para(3)}>>\n\n{para(60)}\n\n{para(60)}\n\n{bullets}"
    return text.replace(" past", ", past") if rng.random() < 0.5 else text.lower()


def write_answers(folder: Path, responses: int, seed: int = 0) -> tuple[list[Path], int]:
    items = read_bench("verified-mt")
    rng = random.Random(seed)
    paths, written, m = [], 0, 0
    while written < responses:
        path = folder / f"model{m}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for it in items:
                if written >= responses:
                    break
                turns = [answer_text(rng) for _ in it.turns[: responses - written]]
                written += len(turns)
                fh.write(json.dumps({"question_id": it.key, "model_id": f"m{m}", "choices": [{"turns": turns}]}) + "\n")
        paths.append(path)
        m += 1
    return paths, written


def baseline(paths: list[Path], out: Path) -> float:
    """Read every answer file and write one record per response, checking nothing."""
    t0 = time.perf_counter()
    with AtomicWriter(out) as w:
        for p in paths:
            for _, rec in read_jsonl(p):
                for t, text in enumerate(rec["choices"][0]["turns"], 1):
                    w.write({"key": rec["question_id"], "turn": t, "response": text})
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--responses", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths, n = write_answers(folder, args.responses)
        base, full = [], []
        for r in range(args.repeats):
            base.append(baseline(paths, folder / f"base{r}.jsonl"))
            cfg = VerifyConfig(answers=[str(p) for p in paths], output=str(folder / f"v{r}.jsonl"))
            t0 = time.perf_counter()
            counts = verify_answers(cfg)
            full.append(time.perf_counter() - t0)
        checked = counts["instructions"]
    b, v = statistics.median(base), statistics.median(full)
    print(f"\n{n} responses ({checked} instructions, strict and loose) on one core, median of {args.repeats}:")
    print(f"  parrot eval verify: {v:.2f} s ({n / v:,.0f} responses/s); target: {n} in <= 10 s -> {'met' if v * 10_000 / n <= 10 else 'NOT met'}")
    print(f"  baseline (read + write, no checks): {b:.2f} s; ratio verify/baseline: {v / b:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
