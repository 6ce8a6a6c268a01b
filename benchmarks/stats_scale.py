"""Time and peak memory of ``parrot stats`` on the prepared ShareGPT data, per metric, and on
the same file doubled (memory must stay flat: the ratio doubled/single should be ~1.0).

    .venv/bin/parrot prepare sharegpt -o data/sharegpt.jsonl     # once (data/ is git-ignored)
    .venv/bin/python benchmarks/stats_scale.py                   # --data, --real, --threads, --quick

Each measurement runs in a fresh child process. A sampler thread reads the child's resident
set size every 20 ms, so every step (scan, tokens, embeddings, Self-ROUGE...) gets its own
peak; the baseline is the RSS of the same child after its imports, before any work.
Targets (issue 6): full file under 5 minutes on 2 cores and under 2 GB; doubled/single peak ~1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, threading, time
from parrot.core.config import build_config
from parrot.stats.stage import StatsConfig
import parrot.stats.run as run

def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

import numpy, torch, transformers, sklearn, matplotlib  # imported up front: part of the baseline
baseline = rss_mb()
peaks, current, overall = {}, ["(between steps)"], [baseline]

def sample():
    while True:
        r = rss_mb()
        overall[0] = max(overall[0], r)
        peaks[current[0]] = max(peaks.get(current[0], 0.0), r)
        time.sleep(0.02)

threading.Thread(target=sample, daemon=True).start()
orig = run.Timer.__call__

def traced(self, name):
    span = orig(self, name)
    class Span:
        def __enter__(s):
            s.prev = current[0]; current[0] = name; return span.__enter__()
        def __exit__(s, *exc):
            out = span.__exit__(*exc); current[0] = s.prev; return out
    return Span()

run.Timer.__call__ = traced
cfg = build_config(StatsConfig, json.loads(sys.argv[1]))
t0 = time.perf_counter()
doc = run.measure_datasets(cfg)
wall = time.perf_counter() - t0
time.sleep(0.05)
import resource
ru = resource.getrusage(resource.RUSAGE_SELF)
print("RESULT " + json.dumps({"wall_s": wall, "cpu_total_s": ru.ru_utime + ru.ru_stime,
                              "cpu_s": doc["cpu_s"], "load_avg": os.getloadavg()[0], "baseline_mb": baseline, "peak_mb": overall[0],
                              "peak_by_step_mb": peaks, "timings_s": doc["timings_s"],
                              "sessions": doc["datasets"][0]["sessions"]}))
"""


def measure(data: Path, args, out: Path) -> dict:
    cfg = {"data": [str(data)], "names": ["sharegpt"], "output": str(out), "seed": 0}
    if args.real:
        cfg["real"] = args.real
    if args.threads:
        cfg["threads"] = args.threads
    if args.quick:
        cfg.update(sample=200, rouge_sample=100, shift_sessions=50)
    env = dict(os.environ, PARROT_NO_PROGRESS="1", TOKENIZERS_PARALLELISM="true")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"stats run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def report(label: str, r: dict) -> None:
    print(
        f"\n{label}: {r['sessions']} sessions, wall {r['wall_s']:.1f} s, CPU {r['cpu_total_s']:.1f} s "
        f"(process total, all threads), load average at the end {r['load_avg']:.1f}; peak RSS "
        f"{r['peak_mb']:.0f} MB (baseline after imports {r['baseline_mb']:.0f} MB)"
    )
    print(f"  {'step':<18} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}")
    for step in sorted(set(r["timings_s"]) | set(r["peak_by_step_mb"]), key=lambda s: -r["timings_s"].get(s, 0)):
        cells = [r["timings_s"].get(step), r["cpu_s"].get(step), r["peak_by_step_mb"].get(step)]
        print(f"  {step:<18} " + " ".join("        " if c is None else f"{c:8.1f}" for c in cells))
    print("  (tokens and context_detector run inside scan; their time is part of scan's)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "sharegpt.jsonl"))
    ap.add_argument(
        "--real",
        default=str(ROOT / "data" / "sharegpt.dev.jsonl"),
        help="real questions for human-likeness ('' to skip)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the embedding model")
    ap.add_argument("--quick", action="store_true", help="small samples (a smoke run)")
    ap.add_argument("--keep", default=None, help="copy the single run's output directory here")
    args = ap.parse_args()
    data = Path(args.data)
    if not data.is_file():
        sys.exit(f"{data}: not found; run `.venv/bin/parrot prepare sharegpt -o data/sharegpt.jsonl` first")
    if args.real and not Path(args.real).is_file():
        args.real = ""
    print(
        f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, "
        f"embedding threads: {args.threads or 'torch default'}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        single = measure(data, args, tmp / "out1")
        report(f"single ({data.name})", single)
        if args.keep:
            shutil.copytree(tmp / "out1", args.keep, dirs_exist_ok=True)
        doubled_path = tmp / "doubled.jsonl"
        with doubled_path.open("wb") as fh:
            for _ in range(2):
                with data.open("rb") as src:
                    shutil.copyfileobj(src, fh)
        doubled = measure(doubled_path, args, tmp / "out2")
        report("doubled (the file twice)", doubled)
    ratio = doubled["peak_mb"] / single["peak_mb"]
    work = (doubled["peak_mb"] - doubled["baseline_mb"]) / max(single["peak_mb"] - single["baseline_mb"], 1)
    print(
        f"\npeak RSS doubled/single: {ratio:.2f} (above the import baseline: {work:.2f}); "
        f"time doubled/single: {doubled['wall_s'] / single['wall_s']:.2f}"
    )
    print(
        f"targets: single under 300 s -> wall {single['wall_s']:.0f} s "
        f"({'ok' if single['wall_s'] < 300 else 'MISSED'}; CPU {single['cpu_total_s']:.0f} s, i.e. "
        f">= {single['cpu_total_s'] / 2:.0f} s of 2 idle cores); peak under 2048 MB -> {single['peak_mb']:.0f} MB "
        f"({'ok' if single['peak_mb'] < 2048 else 'MISSED'}); flat memory -> ratio {ratio:.2f} "
        f"({'ok' if ratio < 1.15 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
