"""Throughput and peak memory of `parrot prepare` (streaming) against an in-memory baseline.

    .venv/bin/python benchmarks/prepare_throughput.py            # the embedded ShareGPT file
    .venv/bin/python benchmarks/prepare_throughput.py --source FILE.json

Each side runs in its own fresh interpreter so its peak RSS is its own:

- streaming: ``prepare()`` exactly as the CLI runs it (reads, cleans, writes train + dev
  files and their manifests);
- baseline: ``json.loads`` of the whole file, repaired at the cut (the bytes up to the last
  complete top-level record, plus ``]``), then the same cleaning (the same functions) over
  the list in memory, then the same two output files.

Target (issue 2): streaming at least 0.5x the baseline's MB/s, at no more than 1/4 of its
peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_streaming(src: str, out: Path) -> dict:
    from parrot.prepare.stage import PrepareConfig, prepare

    t0 = time.perf_counter()
    summary = prepare(PrepareConfig(source=[src], output=str(out)))
    return {"seconds": time.perf_counter() - t0, "written": summary["written"]}


def run_baseline(src: str, out: Path) -> dict:
    from collections import Counter

    from parrot.core.dialogue import dialogue_id
    from parrot.prepare.cleaning import Cleaner, CleanOptions, Conversation, normalize_role
    from parrot.prepare.sources import conversation_from_record, resolve_source
    from parrot.prepare.stage import dev_path, in_dev_split

    t0 = time.perf_counter()
    data = resolve_source(src).read_bytes()
    try:
        records = json.loads(data)
    except json.JSONDecodeError:
        # Repair at the cut: keep the bytes up to the last complete top-level record (ShareGPT's
        # file is indented by 2, so a record ends with "\n  }," at the start of a line).
        cut = data.rfind(b"\n  },")
        records = json.loads(data[: cut + 4] + b"\n]")
    del data
    cleaner = Cleaner(CleanOptions())
    kept: dict[str, list] = {"train": [], "dev": []}
    seen: set[str] = set()
    for i, rec in enumerate(records):
        fmt, pairs = conversation_from_record(rec, "auto", f"record {i}")
        msgs = [{"role": normalize_role(r, f"record {i}"), "content": c} for r, c in pairs]
        clean = cleaner.clean(Conversation(rec.get("id"), msgs, {"source": src, "format": fmt}))
        if clean is None:
            continue
        did = clean.id or dialogue_id(clean.messages)
        n = 2
        base = did
        while did in seen:
            did, n = f"{base}#{n}", n + 1
        seen.add(did)
        split = "dev" if in_dev_split(did, 0.01) else "train"
        kept[split].append({"id": did, "messages": clean.messages, "meta": clean.meta})
    for split, path in (("train", out), ("dev", dev_path(out))):
        with path.open("w", encoding="utf-8") as fh:
            for d in kept[split]:
                fh.write(json.dumps(d, ensure_ascii=False, separators=(",", ":")) + "\n")
    written = sum(len(v) for v in kept.values())
    return {"seconds": time.perf_counter() - t0, "written": written, "dropped": dict(Counter(cleaner.dropped))}


def child(mode: str, src: str, out: str) -> None:
    fn = run_streaming if mode == "streaming" else run_baseline
    result = fn(src, Path(out))
    result["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(result))


def measure(mode: str, src: str, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--source", src, "--out", str(out)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="sharegpt", help="a JSON array file (default: the embedded ShareGPT)")
    ap.add_argument("--child", choices=["streaming", "baseline"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.source, args.out)
        return
    from parrot.prepare.sources import resolve_source

    size_mb = resolve_source(args.source).stat().st_size / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        stream = measure("streaming", args.source, Path(tmp) / "stream.jsonl")
        base = measure("baseline", args.source, Path(tmp) / "base.jsonl")
    if stream["written"] != base["written"]:
        sys.exit(f"outputs differ: streaming wrote {stream['written']}, baseline {base['written']}")
    rows = []
    for name, r in (("prepare (streaming)", stream), ("json.load + clean (baseline)", base)):
        rows.append((name, size_mb / r["seconds"], r["seconds"], r["peak_rss_mb"], r["written"]))
    print(f"input: {args.source} ({size_mb:.1f} MB)")
    print(f"{'':30} {'MB/s':>8} {'seconds':>8} {'peak RSS MB':>12} {'written':>8}")
    for name, mbps, sec, rss, n in rows:
        print(f"{name:30} {mbps:8.1f} {sec:8.2f} {rss:12.1f} {n:8d}")
    speed = rows[0][1] / rows[1][1]
    memory = rows[0][3] / rows[1][3]
    ok = speed >= 0.5 and memory <= 0.25
    print(
        f"speed ratio {speed:.2f}x (target >= 0.5x), peak memory ratio {memory:.3f} (target <= 0.25): "
        f"{'PASS' if ok else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
