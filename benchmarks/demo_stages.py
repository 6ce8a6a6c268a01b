"""Where ``make demo``'s time goes: each step's seconds, and synthesis against raw llama.cpp.

Runs the demo pipeline (``--config demo``, the shipped config) in a fresh work directory, or reads a finished one
(``--workdir runs/demo``), then prints:

- each step's time, as the pipeline recorded it;
- this machine's reference speeds, measured in the same run: llama.cpp tokens/s serving the
  embedded SmolLM2 with all requests queued at once, and seconds per training step of each
  training step (these 2-core machines differ up to ~3x, so a stage time means little without them);
- each synthesize step's generated tokens/s against the raw llama.cpp throughput of the same models
  (the asker's and the assistant's GGUF files) for the same token volume: the loop's efficiency;
- the thread count an in-process engine picks right after a busy step (the pipeline's own last
  step, or, reading a finished run, every core kept busy until the 1-minute load average reaches
  the core count): by the load average (the rule before: 1 thread, as the demo's judge once ran)
  and by the cores at work now (:func:`parrot.backends.cpu.busy_cores`), with llama.cpp's
  tokens/s at each, measured then: the fix as a ratio.

    .venv/bin/python benchmarks/demo_stages.py                    # runs the whole demo (~15 min)
    .venv/bin/python benchmarks/demo_stages.py --workdir runs/demo  # reads a finished run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

from parrot.backends import BackendConfig, load_backend
from parrot.backends.base import SamplingParams
from parrot.backends.cpu import busy_cores, busy_machine_threads
from parrot.backends.spec import parse_spec
from parrot.core.config import build_config
from parrot.core.log import format_table, setup_logging


def raw_tokens_per_s(spec: str, slots: int, max_tokens: int, requests: int = 24, threads: int | None = None) -> float:
    """Generated tokens/s of a GGUF model served by llama.cpp with every request queued at once."""
    options = {"spec": spec, "slots": slots, "timeout": 900, "threads": threads}
    backend = load_backend(build_config(BackendConfig, options)).start()
    try:
        convs = _common.conversations(requests, numbered=True)
        params = [SamplingParams(temperature=0.7, top_p=0.95, max_tokens=max_tokens, seed=i) for i in range(requests)]
        seconds, tokens = _common.timed_generate(backend, convs, params, what=spec)
        return tokens / seconds
    finally:
        backend.close()


def _spin(until: float) -> None:
    while time.time() < until:
        pass


def after_a_busy_step(max_busy_s: float = 180) -> list[tuple[str, str]]:
    """What an in-process engine starting right after a busy step picks, by the old rule and by
    this one, and llama.cpp's speed with each. Where the load average is below the core count (a
    finished run read back), every core (and one more process) spins until it is not."""
    cores = os.cpu_count() or 1
    rows = []
    if os.getloadavg()[0] < cores:
        t0 = time.time()
        spinners = [multiprocessing.Process(target=_spin, args=(t0 + max_busy_s,)) for _ in range(cores + 1)]
        for p in spinners:
            p.start()
        while os.getloadavg()[0] < cores and time.time() < t0 + max_busy_s:
            time.sleep(2)
        for p in spinners:
            p.terminate()
            p.join()
        rows.append(("busy step (simulated)", f"{cores + 1} spinning processes for {time.time() - t0:.0f} s"))
    load, now = os.getloadavg()[0], busy_cores()
    old = 1 if cores > 1 and load >= cores else None  # the rule before issue 28: the 1-minute load average
    new = busy_machine_threads("llama.cpp")
    rates = {n: raw_tokens_per_s("smollm2", slots=4, max_tokens=96, threads=n) for n in {old, new}}
    rows += [
        ("1-minute load average", f"{load:.2f} ({cores} cores)"),
        ("cores at work now", f"{now:.2f}" if now is not None else "unknown"),
        ("threads by the load average (before)", str(old or cores)),
        ("threads by the cores at work (now)", str(new or cores)),
        ("llama.cpp tokens/s, before", f"{rates[old]:.1f}"),
        ("llama.cpp tokens/s, now", f"{rates[new]:.1f}"),
        ("now / before", f"{rates[new] / rates[old]:.2f}x"),
    ]
    return rows


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", help="a finished demo's work directory (default: run the demo in a fresh one)")
    ap.add_argument("--config", default="demo", help="a shipped config's name or a YAML file")
    args = ap.parse_args()
    setup_logging(0)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="demo-bench-"))
    if not args.workdir:
        parrot = Path(sys.executable).with_name("parrot")
        t0 = time.monotonic()
        subprocess.run([str(parrot), "pipeline", "--config", args.config, f"workdir={workdir}"], check=True)
        print(f"\ndemo pipeline: {time.monotonic() - t0:.0f} s in {workdir}")
    threads = after_a_busy_step()  # first: right after the pipeline's last step
    run = read(workdir / "pipeline.manifest.json")
    if not any(s["status"] == "done" for s in run["steps"]):
        sys.exit(f"{workdir}: its last pipeline run had every step up to date: read it right after a run that made it")
    rows = [(s["step"], s["stage"], s["status"], f"{s['seconds']:.1f}") for s in run["steps"]]
    print("\n" + format_table(rows, ("step", "stage", "status", "seconds")))
    print(f"total {sum(s['seconds'] for s in run['steps']):.0f} s")

    # This machine's reference speeds.
    ref = raw_tokens_per_s("smollm2", slots=6, max_tokens=128)
    speeds = [("llama.cpp, SmolLM2-135M Q4_1, 6 slots", f"{ref:.1f} tokens/s")]
    for manifest in sorted((workdir / "models").glob("*.manifest.json")):
        doc = read(manifest)
        steps = (doc.get("losses") or {}).get("steps")
        if steps:
            speeds.append(
                (f"{doc['stage']} {manifest.name.split('.')[0]}", f"{doc['timings']['train_s'] / steps:.2f} s/step")
            )
    print("\n" + format_table(speeds, ("this machine", "speed")))

    # Synthesis against raw llama.cpp of the same models, for the same token volume.
    rows = []
    for manifest in sorted((workdir / "data").glob("*.jsonl.manifest.json")):
        doc = read(manifest)
        if doc.get("stage") != "synthesize":
            continue
        models, usage = doc["models"], doc["usage"]
        raw_seconds = 0.0
        for role in ("asker", "assistant"):
            spec, slots = models[role]["spec"], models[role]["options"]["slots"]
            if parse_spec(spec).kind != "gguf":
                break
            rate = raw_tokens_per_s(spec, slots=slots, max_tokens=doc["sampling"][role]["max_tokens"])
            raw_seconds += usage[role]["completion_tokens"] / rate
        else:
            tokens = doc["timings"]["completion_tokens"]
            synth = doc["timings"]["tokens_per_s"]
            raw = tokens / raw_seconds
            rows.append((manifest.name.split(".")[0], tokens, f"{synth:.1f}", f"{raw:.1f}", f"{synth / raw:.2f}x"))
            continue
        rows.append(
            (
                manifest.name.split(".")[0],
                doc["timings"]["completion_tokens"],
                doc["timings"]["tokens_per_s"],
                "-",
                "not llama.cpp",
            )
        )
    print("\n" + format_table(rows, ("synthesis", "tokens", "tokens/s", "raw llama.cpp tokens/s", "ratio")))
    print("\n" + format_table(threads, ("an engine started right after a busy step", "")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
