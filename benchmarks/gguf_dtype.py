"""GGUF matrix types for serving on CPU: q8_0 against f16, the same checkpoint, the same run.

The checkpoint (default: the embedded SmolLM2-135M-Instruct as an ordinary checkpoint, the shape
``parrot train-*`` saves) is exported twice with :func:`~parrot.backends.gguf_export.export_gguf`,
as ``f16`` and as ``q8_0``; the same conversations then go greedily through llama.cpp serving each
(``slots`` parallel slots, continuous batching, as a pipeline serves a trained model). Rounds
alternate the order, so load from elsewhere hits both alike; the figure is the median of the
per-round ratios of completion tokens/s (q8_0 / f16). How many greedy answers are identical says
what the 8-bit blocks change (texts part ways at a near-tie, then differ).

    python benchmarks/gguf_dtype.py
    python benchmarks/gguf_dtype.py --model runs/demo/models/ask --slots 6 --max-tokens 96
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import _common
from gguf_serving import timed

from parrot.backends import SamplingParams, load_backend
from parrot.backends.gguf_export import export_gguf
from parrot.core.checkpoint import resolve_model_path

DTYPES = ("f16", "q8_0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="checkpoint directory, hf:PATH or smollm2")
    ap.add_argument("--requests", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--slots", type=int, default=6, help="parallel llama.cpp slots")
    ap.add_argument("--threads", type=int, help="llama.cpp threads (default: its own choice, as in a pipeline)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    checkpoint = resolve_model_path(args.model)
    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=args.max_tokens, seed=0)
    convs = _common.conversations(args.requests)
    rates: dict[str, list[float]] = {d: [] for d in DTYPES}
    outs: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for dtype in DTYPES:
            t0 = time.perf_counter()
            files[dtype] = export_gguf(checkpoint, Path(tmp) / f"{dtype}.gguf", dtype)
            size = files[dtype].stat().st_size / 1e6
            print(f"exported {checkpoint.name} as {dtype}: {size:.0f} MB in {time.perf_counter() - t0:.1f}s")
        models = {
            d: load_backend(f"gguf:{files[d]}", slots=args.slots, ctx_size=args.slots * 1024, threads=args.threads)
            for d in DTYPES
        }
        with models["f16"], models["q8_0"]:
            for model in models.values():
                model.generate(convs[:1], params.replace(max_tokens=4))  # load + warm-up
            ratios = []
            for r in range(args.rounds):
                for dtype in DTYPES if r % 2 == 0 else DTYPES[::-1]:
                    sec, tok, outs[dtype] = timed(models[dtype], convs, params)
                    rates[dtype].append(tok / sec)
                    print(f"  round {r + 1} {dtype:5s}: {tok} tokens in {sec:.2f}s = {tok / sec:.1f} tok/s")
                ratios.append(rates["q8_0"][-1] / rates["f16"][-1])
            threads = models["f16"].threads or "all"

    same = sum(a.text == b.text for a, b in zip(outs["f16"], outs["q8_0"]))
    print(
        f"{checkpoint.name}: {args.requests} conversations x max {args.max_tokens} tokens, greedy, "
        f"{args.rounds} rounds, {os.cpu_count()} cores (llama.cpp threads: {threads}), {args.slots} slots"
    )
    for dtype in DTYPES:
        print(f"  {dtype:5s}      : {statistics.median(rates[dtype]):8.1f} tok/s (median)")
    print(f"  q8_0 / f16 : {statistics.median(ratios):8.2f}x  per round {', '.join(f'{x:.2f}' for x in ratios)}")
    print(f"  identical greedy answers: {same}/{args.requests}")


if __name__ == "__main__":
    main()
