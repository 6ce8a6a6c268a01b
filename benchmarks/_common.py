"""What the benchmarks share (importable as ``_common`` by a script run as ``python benchmarks/NAME.py``):
the requests they send, short explanations of everyday topics, and one timed pass through a backend."""

import sys
import time

TOPICS = [
    "the water cycle",
    "how a bicycle works",
    "why the sky is blue",
    "the history of tea",
    "photosynthesis",
    "how to learn a language",
    "what a compiler does",
    "volcanoes",
    "the moon's phases",
    "how bread rises",
    "saving money",
    "the Roman empire",
    "how vaccines work",
    "black holes",
    "keeping houseplants alive",
    "chess openings",
]


def conversations(n: int, numbered: bool = False) -> list[list[dict]]:
    """``n`` one-message conversations; ``numbered`` makes each text distinct (no shared prompt cache)."""
    return [
        [
            {
                "role": "user",
                "content": f"Explain {TOPICS[i % len(TOPICS)]} in a few sentences." + (f" ({i})" if numbered else ""),
            }
        ]
        for i in range(n)
    ]


def timed_generate(backend, convs, params, what: str = "the backend") -> tuple[float, int]:
    """One timed ``generate`` pass: (seconds, completion tokens it added to the backend's usage);
    failed completions are reported on stderr."""
    before = backend.usage.completion_tokens
    t0 = time.perf_counter()
    out = backend.generate(convs, params)
    seconds = time.perf_counter() - t0
    failed = sum(not c.ok for c in out)
    if failed:
        print(f"warning: {failed} failed completions through {what}", file=sys.stderr)
    return seconds, backend.usage.completion_tokens - before
