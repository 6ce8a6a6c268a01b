"""How much of the backends' raw throughput ``parrot synthesize`` keeps.

Two llama.cpp servers (SmolLM2, the embedded default), one per role, as ``synthesize`` runs
them. First ``synthesize`` runs N sessions through them while every call is recorded; then, in
the same run, the same requests (same conversations, same sampling, ``max_tokens`` capped at what each call
produced, so the token volume is the same) are sent straight to fresh servers of the same config (cold caches) with all of
them queued at once: the raw throughput, with no turn-by-turn dependency, no journal and no output.
The ratio synthesize / raw is the loop's efficiency. Target: at least 0.9x.

    .venv/bin/python benchmarks/synth_efficiency.py --sessions 16 --turns 4

On a shared CPU pass ``--threads 1``: llama.cpp's worker threads spin-wait for each other and
a busy machine slows them down far more than it slows one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from parrot.backends import Backend, BackendConfig, load_backend
from parrot.core.config import build_config
from parrot.core.log import setup_logging
from parrot.synthesize.stage import SynthesizeConfig, synthesize

FALLBACK_QUESTIONS = [
    "How do I read a CSV file in Python?",
    "What causes the seasons on Earth?",
    "Write a short poem about autumn.",
    "Explain recursion to a beginner.",
    "What is the difference between a list and a tuple?",
    "How can I improve my sleep?",
    "Give me a recipe for pancakes.",
    "What is a neural network?",
]


class Recording(Backend):
    """Passes calls to ``inner`` and records each one: (conversation, params, tokens produced)."""

    def __init__(self, inner: Backend):
        super().__init__(inner.config)
        self.inner, self.usage = inner, inner.usage
        self.calls: list[tuple] = []

    def shortens(self):
        return False  # the inner backend fits the context itself

    async def _agenerate(self, conversations, plist):
        out = await self.inner.agenerate(conversations, plist)
        for conv, p, c in zip(conversations, plist, out):
            if c.ok:
                self.calls.append((conv, p, c.completion_tokens))
        return out

    def start(self):
        self.inner.start()
        return self

    def close(self):
        pass  # the benchmark reuses the server for the raw pass

    def describe(self):
        return self.inner.describe()


def seed_file(path: Path) -> Path:
    dev = Path("data/sharegpt.dev.jsonl")
    if dev.is_file():
        return dev
    with path.open("w") as fh:
        for i, q in enumerate(FALLBACK_QUESTIONS):
            fh.write(
                json.dumps(
                    {"id": f"q{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "-"}]}
                )
                + "\n"
            )
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--in-flight", type=int, default=None, help="sessions at once (default: --slots)")
    ap.add_argument("--asker-tokens", type=int, default=32)
    ap.add_argument("--assistant-tokens", type=int, default=64)
    args = ap.parse_args()
    setup_logging(0)

    # A long timeout: on a busy shared CPU a timed-out call is retried and its work is wasted.
    role = {
        "spec": "smollm2",
        "slots": args.slots,
        "threads": args.threads,
        "ctx_size": 2048 * args.slots,
        "timeout": 900,
    }

    def fresh_servers():
        return [load_backend(build_config(BackendConfig, role)).start() for _ in range(2)]

    servers = fresh_servers()
    tmp = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    try:
        asker, assistant = (Recording(s) for s in servers)
        cfg = build_config(
            SynthesizeConfig,
            {
                "output": str(tmp / "out.jsonl"),
                "seeds": str(seed_file(tmp / "seeds.jsonl")),
                "num_sessions": args.sessions,
                "max_turns": args.turns,
                "asker_mode": "prompted",
                "max_seed_chars": 600,
                "in_flight": args.in_flight or args.slots,
                "asker": {**role, "max_tokens": args.asker_tokens},
                "assistant": {**role, "max_tokens": args.assistant_tokens},
            },
        )
        t0 = time.perf_counter()
        counts = synthesize(cfg, asker=asker, assistant=assistant)
        synth_s = time.perf_counter() - t0
        turns = counts["turns"]
        calls = len(asker.calls) + len(assistant.calls)
        synth_tokens = sum(n for r in (asker, assistant) for _, _, n in r.calls)

        # Raw: the same requests, all queued at once on each server (at most `slots` in flight
        # per server, the backend's bound), shuffled so the order synthesize used cannot help.
        async def replay(server, recorded):
            recorded = list(recorded)
            random.Random(0).shuffle(recorded)
            return await server.agenerate(
                [c for c, _, _ in recorded], [p.replace(max_tokens=max(1, n)) for _, p, n in recorded]
            )

        async def raw_pass():
            return await asyncio.gather(*(replay(s, r.calls) for s, r in zip(servers, (asker, assistant))))

        # Fresh servers: the raw pass must not read the synthesize pass's prompts from the cache.
        for srv in servers:
            srv.close()
        servers = fresh_servers()
        t0 = time.perf_counter()
        raw = asyncio.run(raw_pass())
        raw_s = time.perf_counter() - t0
        raw_tokens = sum(c.completion_tokens for part in raw for c in part if c.ok)
    finally:
        for s in servers:
            s.close()

    synth_tps, raw_tps = synth_tokens / synth_s, raw_tokens / raw_s
    print(
        f"\nsynth_efficiency: {args.sessions} sessions, up to {args.turns} turns, SmolLM2 via llama.cpp "
        f"({args.slots} slots, threads={args.threads or 'all'}, {args.in_flight or args.slots} sessions in flight), {calls} model calls"
    )
    print(
        f"  synthesize : {turns} turns in {synth_s:7.1f} s = {turns / synth_s:6.3f} turns/s, "
        f"{synth_tokens} tokens = {synth_tps:6.1f} tokens/s"
    )
    print(
        f"  raw backend: same requests in {raw_s:7.1f} s = {turns / raw_s:6.3f} turns/s equivalent, "
        f"{raw_tokens} tokens = {raw_tps:6.1f} tokens/s"
    )
    # Equal token volume: turns/s ratio = tokens/s ratio (the raw pass may stop a call early).
    print(
        f"  ratio synthesize / raw (turns/s at equal token volume = tokens/s): "
        f"{synth_tps / raw_tps:.2f}x   target >= 0.9x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
