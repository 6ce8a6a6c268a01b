"""Serving a trained checkpoint: hf backend (transformers) vs gguf backend (llama.cpp) after
:func:`~parrot.backends.gguf_export.export_gguf`, same weights, same run.

The checkpoint (default: the embedded SmolLM2-135M-Instruct converted once to an ordinary
checkpoint, which is what ``parrot train-*`` starts from and saves the shape of) is exported to
a temporary GGUF (f16 by default), then the same conversations go greedily through

1. ``hf:CKPT`` (float32 on CPU, ``batch_size`` conversations per forward pass, one coroutine per
   item so the micro-batcher coalesces them), and
2. ``gguf:FILE`` (llama.cpp in-process, ``slots`` parallel slots, continuous batching),

and the completion tokens/s of each are printed with their ratio. Both count the tokens their
own engine generated. Threads: ``--threads N`` for both, else each backend's own choice as in a
pipeline run (every core, or 1 on a machine already busy). Rounds alternate the order of the
two, so load from elsewhere hits both alike; the ratio is the median of the per-round ratios.
Greedy texts are compared too (how many answers are identical: f16 weights and another kernel
order may part ways at a near-tie; the f32 export gives the same texts).

    python benchmarks/gguf_serving.py                       # SmolLM2, f16 export
    python benchmarks/gguf_serving.py --threads 1 --requests 4 --batch-size 1 --slots 1  # one stream
    python benchmarks/gguf_serving.py --model runs/demo/models/ask --dtype f32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import _common

from parrot.backends import SamplingParams, load_backend
from parrot.backends.gguf_export import export_gguf
from parrot.core.checkpoint import resolve_model_path


def timed(model, convs, params) -> tuple[float, int, list]:
    """Generate ``convs`` (one coroutine each): (seconds, completion tokens, completions)."""
    before = model.usage.completion_tokens

    async def all_at_once():
        return await asyncio.gather(*(model.agenerate([c], params) for c in convs))

    t0 = time.perf_counter()
    out = [c for [c] in asyncio.run(all_at_once())]
    return time.perf_counter() - t0, model.usage.completion_tokens - before, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="checkpoint directory, hf:PATH or smollm2")
    ap.add_argument("--dtype", choices=["f16", "f32"], default="f16", help="GGUF export dtype")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=8, help="hf backend: conversations per forward pass")
    ap.add_argument("--slots", type=int, default=4, help="gguf backend: parallel llama.cpp slots")
    ap.add_argument("--threads", type=int, help="CPU threads for both backends (default: each backend's own)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    checkpoint = resolve_model_path(args.model)
    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=args.max_tokens, seed=0)
    convs = _common.conversations(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        gguf = export_gguf(checkpoint, Path(tmp) / "model.gguf", args.dtype)
        export_s = time.perf_counter() - t0
        print(f"exported {checkpoint} -> {args.dtype} GGUF ({gguf.stat().st_size / 1e6:.0f} MB) in {export_s:.1f}s")

        hf = load_backend(f"hf:{checkpoint}", batch_size=args.batch_size, dtype="float32", threads=args.threads)
        llama = load_backend(f"gguf:{gguf}", slots=args.slots, ctx_size=args.slots * 1024, threads=args.threads)
        with hf, llama:
            for model in (hf, llama):
                model.generate(convs[:1], params.replace(max_tokens=4))  # load + warm-up
            rates: dict[str, list[float]] = {"hf": [], "gguf": []}
            outs: dict[str, list] = {}
            ratios = []
            for r in range(args.rounds):
                for name in ("hf", "gguf") if r % 2 == 0 else ("gguf", "hf"):
                    sec, tok, outs[name] = timed(hf if name == "hf" else llama, convs, params)
                    rates[name].append(tok / sec)
                    print(f"  round {r + 1} {name:4s}: {tok} tokens in {sec:.2f}s = {tok / sec:.1f} tok/s")
                ratios.append(rates["gguf"][-1] / rates["hf"][-1])
            threads = f"threads: hf {hf.torch_threads or 'all'}, llama.cpp {llama.threads or 'all'}"

    same = sum(a.text == b.text for a, b in zip(outs["hf"], outs["gguf"]))
    failed = sum(not c.ok for c in outs["hf"] + outs["gguf"])
    print(
        f"{checkpoint.name}: {args.requests} conversations x max {args.max_tokens} tokens, greedy, "
        f"{args.rounds} rounds, {os.cpu_count()} cores ({threads})"
    )
    print(f"  hf   (float32, batch {args.batch_size:2d})  : {statistics.median(rates['hf']):8.1f} tok/s (median)")
    print(f"  gguf ({args.dtype}, {args.slots} slots)     : {statistics.median(rates['gguf']):8.1f} tok/s (median)")
    print(
        f"  gguf / hf                 : {statistics.median(ratios):8.2f}x  median of per-round ratios "
        f"{', '.join(f'{x:.2f}' for x in ratios)}"
    )
    print(f"  identical greedy answers  : {same}/{args.requests}" + (f"  ({failed} failed)" if failed else ""))


if __name__ == "__main__":
    main()
