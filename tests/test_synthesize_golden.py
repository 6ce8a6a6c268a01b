"""The same small syntheses give the same bytes as the code that recorded
``tests/data/synthesize_golden.json``: output records, failures file, journal after a crash,
manifest counts, log lines, and every call's batch, seed and sampling. Scripted in-process models
(no server, no threads) make each run deterministic, in the batched loop (``local``) and in the
concurrent one. Rewrite the golden file after an intended change of behaviour:
``PARROT_WRITE_GOLDEN=1 pytest tests/test_synthesize_golden.py``."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from synth_helpers import write_seeds

from parrot import ParrotError
from parrot.backends import Backend, Completion
from parrot.core.config import build_config
from parrot.core.manifest import read_manifest
from parrot.core.outputs import failures_path
from parrot.synthesize.journal import journal_path
from parrot.synthesize.roleswap import STOP_MARKER
from parrot.synthesize.stage import SynthesizeConfig, synthesize

GOLDEN = Path(__file__).parent / "data" / "synthesize_golden.json"


class Crash(Exception):
    """The process dies mid-run."""


class Scripted(Backend):
    """Replies that depend only on the request (its conversation and seed): a failure, the stop
    marker, an empty, repeated or echoed question, an empty or shortened answer, or a plain one."""

    def __init__(self, config, role: str, local: bool, batches: list, crash_at: int | None = None):
        super().__init__(config)
        self.batched, self.role, self.batches, self.crash_at = local, role, batches, crash_at

    @property
    def micro_batched(self) -> bool:
        return self.batched

    def shortens(self) -> bool:
        return False

    async def _agenerate(self, conversations, params):
        if self.crash_at is not None and len(self.batches) >= self.crash_at:
            raise Crash
        self.batches.append(
            [self.role, [[p.seed, p.temperature, p.top_p, p.max_tokens, len(c)] for c, p in zip(conversations, params)]]
        )
        return [self.reply(c, p.seed) for c, p in zip(conversations, params)]

    def reply(self, conv, seed: int) -> Completion:
        h = seed % 100
        opening = next((m["content"] for m in conv if m["role"] == "user"), "")
        if h < 8 or (self.role == "assistant" and opening == "What is a monad?" and len(conv) <= 3 and h % 5):
            return Completion(None, error=f"scripted {self.role} failure {h}")
        if self.role == "asker":
            questions = [m["content"] for m in conv if m["role"] == "assistant"]  # the simulator's view
            answers = [m["content"] for m in conv[2:] if m["role"] == "user"]
            text = f"Question {len(questions) + 1} ({h}) about: {conv[1]['content'][-30:]}?"
            if h < 14:
                text = f"Thanks! {STOP_MARKER}"
            elif h < 18:
                text = " "
            elif h < 22 and questions:
                text = questions[0].upper()
            elif h < 26 and answers:
                text = answers[-1]
            return Completion(text, completion_tokens=len(text.split()))
        if h < 12:
            return Completion("  ", completion_tokens=0)
        text = f"Answer {h} to: {conv[-1]['content']}"
        shortened = {"turns_dropped": h % 3, "chars": 5} if h < 20 else None
        return Completion(text, completion_tokens=len(text.split()), shortened=shortened)


def run(tmp_path: Path, name: str, local: bool, crash_at: int | None = None, **settings) -> dict:
    """One scenario: a run (and, after a crash, its ``--resume``), and all it left behind."""
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    topics = tmp_path / "topics.txt"
    topics.write_text("# topics\nthe history of tea\n\nlearning to juggle\n")
    out = tmp_path / f"{name}.jsonl"
    data = {
        "output": str(out),
        "seeds": str(seeds),
        "topics": str(topics),
        "num_sessions": 12,
        "max_turns": 4,
        "seed": 3,
        "step_retries": 1,
        "step_retry_delay": 0,
        "system_prompt": "Be brief.",
        "asker": {"spec": "openai:sim", "temperature": 0.9},
        "assistant": {"spec": "openai:chat", "max_tokens": 64},
        **settings,
    }
    seen: dict = {"batches": []}

    def attempt(crash: int | None, **more) -> None:
        cfg = build_config(SynthesizeConfig, {**data, **more})
        asker = Scripted(cfg.asker, "asker", local, seen["batches"], crash)
        assistant = Scripted(cfg.assistant, "assistant", local, seen["batches"], crash)
        try:
            synthesize(cfg, asker=asker, assistant=assistant)
        except ParrotError as e:
            seen.setdefault("errors", []).append(str(e).replace(str(tmp_path), "TMP"))

    if crash_at is not None:
        with pytest.raises(Crash):
            attempt(crash_at)
        seen["journal"] = journal_path(out).read_text()
        seen["output_before_resume"] = out.read_text() if out.exists() else ""
        attempt(None, resume=True)
    else:
        attempt(None)
    seen["output"] = out.read_text()
    fails = failures_path(out)
    seen["failures"] = (
        [{k: v for k, v in json.loads(line).items() if k != "time"} for line in fails.read_text().splitlines()]
        if fails.exists()
        else []
    )
    seen["journal_left"] = journal_path(out).exists()
    seen["counts"] = read_manifest(out)["counts"]
    return seen


SCENARIOS = {
    "batched": dict(local=True, in_flight=5),
    "concurrent": dict(local=False, in_flight=3, asker_mode="prompted"),
    "batched_crash_resume": dict(local=True, in_flight=4, crash_at=9),
    "concurrent_crash_resume": dict(local=False, in_flight=2, crash_at=15, shard="1/2", num_sessions=14),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_synthesis_writes_what_the_golden_run_wrote(tmp_path, caplog, name):
    with caplog.at_level(logging.INFO, logger="parrot.synthesize"):
        seen = run(tmp_path, name, **SCENARIOS[name])
    seen["log"] = [r.getMessage() for r in caplog.records if r.name == "parrot.synthesize"]
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("PARROT_WRITE_GOLDEN"):
        golden[name] = seen
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    assert seen == golden[name]
