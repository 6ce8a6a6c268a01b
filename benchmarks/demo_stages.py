"""Where ``make demo``'s time goes: each step's seconds, and synthesis against raw llama.cpp.

Runs the demo pipeline (``--config demo``, the shipped config) in a fresh work directory, or reads a finished one
(``--workdir runs/demo``), then prints:

- each step's time, as the pipeline recorded it;
- this machine's reference speeds, measured in the same run: llama.cpp tokens/s serving the
  embedded SmolLM2 with all requests queued at once, and seconds per training step of each
  training step (these 2-core machines differ up to ~3x, so a stage time means little without them);
- each synthesize step's generated tokens/s against the raw llama.cpp throughput of the same models
  (the asker's and the assistant's GGUF files) for the same token volume: the loop's efficiency.

    .venv/bin/python benchmarks/demo_stages.py                    # runs the whole demo (~15 min)
    .venv/bin/python benchmarks/demo_stages.py --workdir runs/demo  # reads a finished run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

from parrot.backends import BackendConfig, load_backend
from parrot.backends.base import SamplingParams
from parrot.backends.spec import parse_spec
from parrot.core.config import build_config
from parrot.core.log import format_table, setup_logging


def raw_tokens_per_s(spec: str, slots: int, max_tokens: int, requests: int = 24) -> float:
    """Generated tokens/s of a GGUF model served by llama.cpp with every request queued at once."""
    backend = load_backend(build_config(BackendConfig, {"spec": spec, "slots": slots, "timeout": 900})).start()
    try:
        convs = _common.conversations(requests, numbered=True)
        params = [SamplingParams(temperature=0.7, top_p=0.95, max_tokens=max_tokens, seed=i) for i in range(requests)]
        seconds, tokens = _common.timed_generate(backend, convs, params, what=spec)
        return tokens / seconds
    finally:
        backend.close()


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
