"""Shared helpers for the synthesize tests: seed files and a scripted simulator/assistant pair
served by the fault server (a real OpenAI-compatible HTTP server on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

from parrot.core.config import build_config
from parrot.synthesize.roleswap import STOP_MARKER
from parrot.synthesize.stage import SynthesizeConfig

SEED_QUESTIONS = ["How do I sort a list in Python?", "What is a monad?", "Plan a trip to Rome for me."]


def write_seeds(path: Path, questions=SEED_QUESTIONS) -> Path:
    with path.open("w") as fh:
        for i, q in enumerate(questions):
            fh.write(
                json.dumps(
                    {
                        "id": f"seed{i}",
                        "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "real answer"}],
                    }
                )
                + "\n"
            )
    return path


def is_asker_request(body: dict) -> bool:
    """The simulator's view starts with its system prompt and the neutral opening turn."""
    from parrot.synthesize.roleswap import opening_turn

    msgs = body["messages"]
    return len(msgs) >= 2 and msgs[1]["role"] == "user" and msgs[1]["content"].startswith(opening_turn())


class Script:
    """Replies for both roles. The asker writes numbered follow-ups (or what ``ask`` returns for
    question number k); the assistant answers ``Answer to: <question>``."""

    def __init__(self, ask=None):
        self.ask = ask or (lambda k, body: f"Follow-up number {k}: can you say more about that?")
        self.asker_calls = 0
        self.assistant_calls = 0

    def __call__(self, body: dict) -> str:
        msgs = body["messages"]
        if is_asker_request(body):
            self.asker_calls += 1
            k = sum(1 for m in msgs if m["role"] == "assistant") + 1  # this question's number
            return self.ask(k, body)
        self.assistant_calls += 1
        return f"Answer to: {msgs[-1]['content']}"


def stop_after(n: int):
    """A simulator that ends the session after ``n`` questions."""
    return lambda k, body: STOP_MARKER if k > n else f"Question {k}, tell me more?"


def read_out(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def make_cfg(out, base_url, assistant_url=None, **kw):
    data = {
        "output": str(out),
        "num_sessions": 4,
        "max_turns": 3,
        "step_retry_delay": 0,
        "asker": {"spec": "openai:sim", "base_url": base_url, "max_retries": 0, "concurrency": 2},
        "assistant": {"spec": "openai:chat", "base_url": assistant_url or base_url, "max_retries": 0, "concurrency": 2},
    }
    data.update(kw)
    return build_config(SynthesizeConfig, data)
