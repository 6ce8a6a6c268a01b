"""One synthesis session and the rules every session follows: who speaks next, the seeds of each
call, when a question ends the session, what a failed call does. Shared by the batched loop
(local backends: every live session in one batch per role) and the concurrent one (HTTP
backends: one coroutine per session)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from parrot.backends import Completion, SamplingParams
from parrot.core.dialogue import answered_turns
from parrot.core.jsonl import AppendWriter
from parrot.synthesize.roleswap import STOP_MARKER, is_stop, simulator_prompt

if TYPE_CHECKING:
    from parrot.synthesize.stage import SynthesizeConfig

log = logging.getLogger("parrot.synthesize")

ASKER_DEFAULTS = SamplingParams(temperature=0.8, top_p=0.95, max_tokens=128)
ASSISTANT_DEFAULTS = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=512)


def session_id(prefix: str, run_seed: int, index: int) -> str:
    """``synth-s0-000042``: unique per (run seed, index), the same in every shard and resume."""
    return f"{prefix}-s{run_seed}-{index:06d}"


SEED_NOTE = "derived(run_seed, index, position, role[, failed tries])"  # what records say of their seeds


def derive_seed(*parts) -> int:
    """A sampling seed from (run seed, index, position, role): stable across resumes and shards."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def load_prompted_prompt(path: str | None) -> str:
    text = (
        Path(path).read_text(encoding="utf-8")
        if path
        else resources.files("parrot.prompts").joinpath("synth_prompted_user.txt").read_text(encoding="utf-8")
    )
    return text.strip().replace("{stop_marker}", STOP_MARKER)


# ---------------------------------------------------------------- one session

_NORM = re.compile(r"[\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    return _NORM.sub(" ", text.lower()).strip()


def degenerate_reason(question: str, messages: list[dict]) -> str | None:
    """Why ``question`` should end the session, or None: ``empty_question``,
    ``repeated_question`` (same words as an earlier question), ``echoed_answer`` (the last
    answer, or a long stretch of it, said back)."""
    q = normalize(question)
    if not q:
        return "empty_question"
    if any(normalize(m["content"]) == q for m in messages if m["role"] == "user"):
        return "repeated_question"
    last = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), None)
    if last is not None:
        a = normalize(last)
        if q == a or (len(q) >= 40 and q in a):
            return "echoed_answer"
    return None


@dataclass
class Session:
    index: int
    id: str
    seed: dict
    messages: list[dict]
    end_reason: str | None = None
    failures: int = 0  # failed calls so far (each retried up to step_retries times)
    restored: bool = False  # rebuilt from the journal on --resume
    shortened: dict = dataclasses.field(default_factory=dict)  # role -> calls shortened to fit the context

    @property
    def turns(self) -> int:
        return answered_turns(self.messages)

    @property
    def next_role(self) -> str:
        last = next((m["role"] for m in reversed(self.messages) if m["role"] != "system"), None)
        return "assistant" if last == "user" else "asker"

    def dialogue(self) -> list[dict]:
        """The messages up to the last complete turn (a trailing unanswered question is cut)."""
        msgs = list(self.messages)
        while msgs and msgs[-1]["role"] == "user":
            msgs.pop()
        return msgs


class Synthesizer:
    """The per-session rules, shared by the batched and the concurrent loop."""

    def __init__(
        self,
        cfg: SynthesizeConfig,
        asker,
        assistant,
        journal: AppendWriter,
        output: AppendWriter,
        failures: AppendWriter,
    ):
        self.cfg = cfg
        self.asker, self.assistant = asker, assistant
        self.journal, self.output, self.failures_out = journal, output, failures
        self.asker_params = cfg.asker.sampling(ASKER_DEFAULTS)
        self.assistant_params = cfg.assistant.sampling(ASSISTANT_DEFAULTS)
        self.asker_system = load_prompted_prompt(cfg.prompted_prompt) if cfg.asker_mode == "prompted" else None
        self.counts: Counter = Counter()
        self.turns_done = 0
        self.tokens = 0
        self.bar = None
        self.started = time.monotonic()

    # -- building sessions
    def new_session(self, index: int, seed: dict) -> Session:
        msgs = [{"role": "system", "content": self.cfg.system_prompt}] if self.cfg.system_prompt else []
        if seed["kind"] == "question":
            msgs.append({"role": "user", "content": seed["text"]})
        return Session(index, session_id(self.cfg.id_prefix, self.cfg.seed, index), seed, msgs)

    # -- one call
    def request(self, s: Session) -> tuple[object, list[dict], SamplingParams, str]:
        """(backend, conversation, params, role) for the session's next call."""
        role = s.next_role
        pos = len(s.messages)
        if role == "asker":
            topic = s.seed["text"] if s.seed["kind"] == "topic" else None
            conv = simulator_prompt(
                [m for m in s.messages if m["role"] != "system"],
                system_prompt=self.asker_system,
                topic=topic,
                where=s.id,
            )
            return self.asker, conv, self._params(self.asker_params, s, pos, role), role
        return self.assistant, list(s.messages), self._params(self.assistant_params, s, pos, role), role

    def _params(self, params: SamplingParams, s: Session, pos: int, role: str) -> SamplingParams:
        """Explicit sampling with a seed derived from (run seed, index, position, role), so a
        resumed or sharded run asks the same, and two sessions on one seed question sample
        differently. (In-process backends batch calls whatever their seeds: vLLM seeds each request,
        transformers seeds each batch from its requests' seeds.)"""
        retry = (s.failures,) if s.failures else ()  # a call tried again draws anew
        return params.replace(seed=derive_seed(self.cfg.seed, s.index, pos, role, params.seed, *retry))

    def accept(self, s: Session, role: str, c: Completion) -> None:
        """Apply one completion: append the message (and journal it) or end the session."""
        self.tokens += c.completion_tokens or 0
        if c.shortened:  # the model saw the session with its oldest turns left out
            note = s.shortened.setdefault(role, {"calls": 0, "max_turns_dropped": 0})
            note["calls"] += 1
            note["max_turns_dropped"] = max(note["max_turns_dropped"], c.shortened.get("turns_dropped", 0))
            self.counts[f"calls_shortened:{role}"] += 1
        text = c.text.strip() if c.ok else None
        if role == "assistant" and c.ok and not text:
            text, c = None, dataclasses.replace(c, text=None, error=c.error or "empty answer")
        if text is None:
            s.failures += 1
            self.counts[f"call_failed:{role}"] += 1
            if s.failures > self.cfg.step_retries:
                s.end_reason = f"{role}_failed"
                s.last_error = c.error  # type: ignore[attr-defined]
            self._refresh_bar()
            return
        if role == "asker":
            if is_stop(text):
                s.end_reason = "stop_marker"
                return
            reason = degenerate_reason(text, s.messages)
            if reason:
                s.end_reason = reason
                return
            msg = {"role": "user", "content": text}
        else:
            msg = {"role": "assistant", "content": text}
            self.turns_done += 1
        self.journal.write({"i": s.index, "n": len(s.messages), "m": msg})
        s.messages.append(msg)
        if role == "assistant" and s.turns >= self.cfg.max_turns:
            s.end_reason = "max_turns"
        self._refresh_bar()

    def check_done(self, s: Session) -> bool:
        if s.end_reason is None and s.turns >= self.cfg.max_turns:
            s.end_reason = "max_turns"  # restored after a crash between the last answer and the write
        return s.end_reason is not None

    def finish(self, s: Session) -> None:
        """Write a finished session to the output, or (no complete turn) to the failures file."""
        msgs = s.dialogue()
        if not answered_turns(msgs):
            self.failures_out.write(
                {
                    "id": s.id,
                    "index": s.index,
                    "reason": s.end_reason,
                    "error": getattr(s, "last_error", None),
                    "seed": s.seed,
                    "time": time.time(),
                }
            )
            self.journal.write({"i": s.index, "reset": True})  # --resume starts it afresh
            self.counts["sessions_failed"] += 1
            self.counts[f"sessions_failed:{s.end_reason}"] += 1
        else:
            self.output.write({"id": s.id, "messages": msgs, "meta": self.meta(s, msgs)})
            self.counts["sessions_written"] += 1
            self.counts[f"end:{s.end_reason}"] += 1
        if self.bar is not None:
            self.bar.update(1)
        self._refresh_bar()

    def meta(self, s: Session, msgs: list[dict]) -> dict:
        seed = {"kind": s.seed["kind"], "source": s.seed["source"]}
        if s.seed["kind"] == "topic":
            seed["topic"] = s.seed["text"]
        return {
            "source": "parrot synthesize",
            "index": s.index,
            "run_seed": self.cfg.seed,
            "seed": seed,
            "turns": answered_turns(msgs),
            "end_reason": s.end_reason,
            "failed_calls": s.failures,
            **({"shortened": s.shortened} if s.shortened else {}),
            "asker": {
                "spec": self.cfg.asker.spec,
                "mode": self.cfg.asker_mode,
                "sampling": {**self.asker_params.to_dict(), "seed": SEED_NOTE},
            },
            "assistant": {
                "spec": self.cfg.assistant.spec,
                "sampling": {**self.assistant_params.to_dict(), "seed": SEED_NOTE},
            },
        }

    def _refresh_bar(self) -> None:
        if self.bar is None:
            return
        elapsed = max(1e-9, time.monotonic() - self.started)
        self.bar.set_postfix(
            turns_s=f"{self.turns_done / elapsed:.2f}",
            tok_s=f"{self.tokens / elapsed:.1f}",
            failed=self.counts["sessions_failed"],
            refresh=False,
        )

    # -- the two loops
    async def run_batched(self, sessions, window: int) -> None:
        """Turn-synchronous: all live sessions ask in one batch, then all are answered in one."""
        live: list[Session] = []
        pending = iter(sessions)
        while True:
            for s in pending:
                live.append(s)
                if len(live) >= window:
                    break
            if not live:
                return
            for role in ("asker", "assistant"):
                todo = [s for s in live if not self.check_done(s) and s.next_role == role]
                if not todo:
                    continue
                reqs = [self.request(s) for s in todo]
                backend = reqs[0][0]
                comps = await backend.agenerate([r[1] for r in reqs], [r[2] for r in reqs])
                for s, c in zip(todo, comps):
                    self.accept(s, role, c)
            still = []
            for s in live:
                if self.check_done(s):
                    self.finish(s)
                else:
                    still.append(s)
            live = still

    async def run_concurrent(self, sessions, window: int) -> None:
        """One coroutine per session, ``window`` sessions at a time (HTTP backends)."""
        pending = iter(sessions)

        async def worker():
            for s in pending:  # a shared iterator: each session is taken by exactly one worker
                while not self.check_done(s):
                    backend, conv, params, role = self.request(s)
                    [c] = await backend.agenerate([conv], params)
                    self.accept(s, role, c)
                    if not c.ok and not self.check_done(s):  # the backend gave up: wait, then again
                        await asyncio.sleep(self.cfg.step_retry_delay * 2 ** (s.failures - 1))
                self.finish(s)

        await asyncio.gather(*(worker() for _ in range(max(1, window))))
