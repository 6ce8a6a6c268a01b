"""What the backend layer costs: completion tokens/s through it vs. a bare client, same run.

1. openai backend vs. bare HTTP. The embedded SmolLM2 is served by llama.cpp (xllamacpp) with
   ``--slots`` parallel slots. The same requests (the exact bodies the backend sends: greedy,
   fixed seed, same max_tokens) go out once through :class:`OpenAIBackend` with concurrency =
   slots, and once through a bare client: ``slots`` threads, each with one keep-alive
   ``http.client`` connection. Rounds alternate between the two so machine load hits both
   alike; the ratio is the median of the per-round ratios (target >= 0.95x).
2. hf backend, batch 8 vs batch 1: the same 8 conversations greedily through ``hf:`` with
   ``batch_size=8`` (one coroutine per item, coalesced by the micro-batcher) and ``batch_size=1``.

    python benchmarks/backend_overhead.py                 # SmolLM2 for both parts
    python benchmarks/backend_overhead.py --hf-model tiny # a 2-layer random model for part 2
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import _common

from parrot.backends import SamplingParams, load_backend
from parrot.backends.base import BackendConfig
from parrot.backends.openai_api import OpenAIBackend


def bare_client(base_url: str, bodies: list[dict], workers: int) -> tuple[float, int]:
    """Send ``bodies`` with ``workers`` threads over keep-alive connections: (seconds, tokens)."""
    url = urlsplit(base_url)
    path = url.path.rstrip("/") + "/chat/completions"

    def worker(chunk: list[dict]) -> int:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
        tokens = 0
        for body in chunk:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            reply = json.loads(conn.getresponse().read())
            tokens += reply["usage"]["completion_tokens"]
        conn.close()
        return tokens

    # Interleaved chunks: each thread gets every workers-th request, like a pool would.
    chunks = [bodies[i::workers] for i in range(workers)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        tokens = sum(pool.map(worker, chunks))
    return time.perf_counter() - t0, tokens


def openai_vs_bare(args) -> None:
    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=args.max_tokens, seed=0)
    convs = _common.conversations(args.requests, numbered=True)
    with load_backend("smollm2", slots=args.slots, ctx_size=args.slots * 2048) as server:
        client = OpenAIBackend(BackendConfig(spec="openai:smollm2", base_url=server.base_url, concurrency=args.slots))
        bodies = [{k: v for k, v in client.request_body(c, params).items() if k != "extra_body"} for c in convs]
        client.generate(_common.conversations(args.slots, numbered=True), params.replace(max_tokens=8))  # warm-up
        rates = {"bare": [], "openai": []}
        ratios = []
        for r in range(args.rounds):
            order = ["bare", "openai"] if r % 2 == 0 else ["openai", "bare"]
            for name in order:
                if name == "bare":
                    sec, tok = bare_client(server.base_url, bodies, args.slots)
                else:
                    sec, tok = _common.timed_generate(client, convs, params)
                rates[name].append(tok / sec)
                print(f"  round {r + 1} {name:6s}: {tok} tokens in {sec:.2f}s = {tok / sec:.1f} tok/s")
            # Each round's two passes ran back to back: their ratio is what machine load
            # drifting between rounds disturbs least.
            ratios.append(rates["openai"][-1] / rates["bare"][-1])
        print(
            f"llama.cpp SmolLM2, {args.slots} slots, {args.requests} requests x max {args.max_tokens} tokens, "
            f"{args.rounds} rounds (threads: {server.threads or 'all cores'})"
        )
        print(f"  bare http.client threads : {statistics.median(rates['bare']):8.1f} completion tok/s (median)")
        print(f"  openai backend           : {statistics.median(rates['openai']):8.1f} completion tok/s (median)")
        print(
            f"  ratio openai/bare        : {statistics.median(ratios):8.3f}x  median of per-round ratios "
            f"{', '.join(f'{x:.3f}' for x in ratios)}  (target >= 0.95x)"
        )


def hf_batching(args) -> None:
    if args.hf_model == "tiny":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from fixtures.models import build_tiny_model

        from parrot.core.checkpoint import smollm2_tokenizer

        path = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", smollm2_tokenizer())
        spec = f"hf:{path}"
    else:
        spec = "hf:smollm2"  # the embedded GGUF converted once to a plain checkpoint (cached)
    params = SamplingParams(temperature=0.0, max_tokens=args.hf_max_tokens, seed=0)
    convs = _common.conversations(8, numbered=True)
    rates = {}
    for batch in (1, 8):
        with load_backend(spec, batch_size=batch, dtype=args.hf_dtype) as model:
            model.generate(convs[:1], params.replace(max_tokens=2))  # load + warm-up
            before = model.usage.completion_tokens

            async def one_coroutine_per_item():
                return await asyncio.gather(*(model.agenerate([c], params) for c in convs))

            t0 = time.perf_counter()
            asyncio.run(one_coroutine_per_item())
            sec = time.perf_counter() - t0
            tok = model.usage.completion_tokens - before
            rates[batch] = tok / sec
            print(
                f"  hf batch {batch}: {tok} tokens in {sec:.2f}s = {tok / sec:.1f} tok/s "
                f"({model.batches_run - 1} generate calls)"
            )
    print(f"hf backend ({spec}, {args.hf_dtype}, 8 conversations x max {args.hf_max_tokens} tokens)")
    print(f"  batch 8 / batch 1        : {rates[8] / rates[1]:8.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--hf-model", choices=["smollm2", "tiny"], default="smollm2")
    ap.add_argument("--hf-dtype", default="float32")
    ap.add_argument("--hf-max-tokens", type=int, default=32)
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()
    openai_vs_bare(args)
    if not args.skip_hf:
        hf_batching(args)


if __name__ == "__main__":
    main()
