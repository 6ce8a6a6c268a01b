"""Requests the benchmarks send: short explanations of everyday topics (importable as ``_prompts``
by a script run as ``python benchmarks/NAME.py``)."""

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
