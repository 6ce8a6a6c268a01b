"""One synthesis session and the rules every session follows (:class:`SessionRules`): what its
next call is and with which seed, what a completion does to it (a message added, a failed call,
a question drawn again, a question that ends it), when it is over, and the record it leaves.

Guardrails. The simulator's questions are held to three settings of the run:

- ``min_turns``: its stop marker is not accepted before that many answers. While it is not, the
  marker's first token is banned at sampling where the engine can (``SamplingParams.ban``: hf,
  vllm, gguf); an endpoint that cannot ban gets the question drawn again (``early_stop``).
- ``max_redraws``: a degenerate question (:func:`degenerate_reason`) or an early stop is drawn
  again, up to that many times at one place of the session, each time with a fresh seed derived
  from the run seed; only then does the session end, with that reason (an early stop: with
  ``stop_marker``, the simulator's own end).
- ``min_question_words`` / ``max_question_words``: the bounds of a question's length.

Each redraw is counted by reason in the session's ``meta.redraws`` and journaled, so a resumed
run neither repeats a draw nor skips one. The loops
(:mod:`~parrot.synthesize.loops`) run sessions by these rules; the writer
(:mod:`~parrot.synthesize.writer`) keeps what they make."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from parrot.backends import Completion, SamplingParams
from parrot.core.dialogue import answered_turns
from parrot.core.questions import overlap, reads_like_answer, words
from parrot.synthesize.roleswap import STOP_MARKER, is_stop, simulator_prompt

if TYPE_CHECKING:
    from parrot.synthesize.stage import SynthesizeConfig

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


_NORM = re.compile(r"[\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    return _NORM.sub(" ", text.lower()).strip()


#: Word n-grams of a question compared with an earlier question's (``parrot filter``'s default).
REPEAT_NGRAM, REPEAT_OVERLAP = 3, 0.7


def degenerate_reason(question: str, messages: list[dict], bounds: tuple[int, int] = (1, 0)) -> str | None:
    """Why ``question`` is not a user's next question, or None. The first that holds:

    - ``empty_question``: no word at all;
    - ``too_short`` / ``too_long``: fewer words than ``bounds[0]``, more than ``bounds[1]`` (0: no bound);
    - ``repeated_question``: an earlier question again, word for word;
    - ``echoed_answer``: the last answer, or a long stretch of it, said back;
    - ``repeated_question`` too: at least 70% of its word 3-grams in one earlier question (what
      ``parrot filter`` calls repetitive);
    - ``assistant_like``: it reads like an assistant's reply
      (:func:`parrot.core.questions.reads_like_answer`).

    >>> msgs = [{"role": "user", "content": "What is x?"}, {"role": "assistant", "content": "x is a letter."}]
    >>> [degenerate_reason(q, msgs, (2, 50)) for q in ["what is X", "Why?", "Sure! Here is more.", "And y?"]]
    ['repeated_question', 'too_short', 'assistant_like', None]
    """
    q = normalize(question)
    if not q:
        return "empty_question"
    ws = words(question)
    if len(ws) < bounds[0]:
        return "too_short"
    if bounds[1] and len(ws) > bounds[1]:
        return "too_long"
    asked = [m["content"] for m in messages if m["role"] == "user"]
    if any(normalize(a) == q for a in asked):
        return "repeated_question"
    last = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), None)
    if last is not None:
        a = normalize(last)
        if q == a or (len(q) >= 40 and q in a):
            return "echoed_answer"
    if any(overlap(ws, words(a), REPEAT_NGRAM) >= REPEAT_OVERLAP for a in asked):
        return "repeated_question"
    if reads_like_answer(question):
        return "assistant_like"
    return None


@dataclass
class Session:
    index: int
    id: str
    seed: dict  # {"kind": "question" | "topic", "text", "source"}
    messages: list[dict]
    end_reason: str | None = None
    failed_calls: int = 0  # so far (each tried again, up to step_retries times)
    last_error: str | None = None  # the error of the failed call that ended it
    shortened: dict = dataclasses.field(default_factory=dict)  # role -> calls shortened to fit the context
    redraws: dict = dataclasses.field(default_factory=dict)  # reason -> questions drawn again, all places
    drawn_again: int = 0  # questions drawn again at the current place (the next question's)

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


class Call(NamedTuple):
    role: str  # "asker" or "assistant"
    messages: list[dict]  # the conversation as that role's model sees it
    params: SamplingParams


#: What a completion did to its session: its message added, a failed call (tried again), a
#: question to draw again, the session ended.
ADDED, FAILED, REDRAW, ENDED = "added", "failed", "redraw", "ended"


class SessionRules:
    """The rules every session follows, from the run's config."""

    def __init__(self, cfg: SynthesizeConfig):
        self.cfg = cfg
        self.params = {
            "asker": cfg.asker.sampling(ASKER_DEFAULTS),
            "assistant": cfg.assistant.sampling(ASSISTANT_DEFAULTS),
        }
        sampling = {role: {**p.to_dict(), "seed": SEED_NOTE} for role, p in self.params.items()}
        self.models_meta = {  # what every record says of the two models
            "asker": {"spec": cfg.asker.spec, "mode": cfg.asker_mode, "sampling": sampling["asker"]},
            "assistant": {"spec": cfg.assistant.spec, "sampling": sampling["assistant"]},
        }
        self.asker_system = load_prompted_prompt(cfg.prompted_prompt) if cfg.asker_mode == "prompted" else None

    def open(self, index: int, seed: dict) -> Session:
        """Session ``index``, opened by ``seed``: the system prompt, then a seed question."""
        msgs = [{"role": "system", "content": self.cfg.system_prompt}] if self.cfg.system_prompt else []
        if seed["kind"] == "question":
            msgs.append({"role": "user", "content": seed["text"]})
        return Session(index, session_id(self.cfg.id_prefix, self.cfg.seed, index), seed, msgs)

    def next_call(self, s: Session) -> Call:
        """The asker's next question (the role-swapped view), or the assistant's answer. Explicit
        sampling with a seed derived from (run seed, index, position, role), so a resumed or
        sharded run asks the same, and two sessions on one seed question sample differently.
        (In-process backends batch calls whatever their seeds: vLLM seeds each request,
        transformers seeds each batch from its requests' seeds.)"""
        role = s.next_role
        messages = list(s.messages)
        if role == "asker":
            topic = s.seed["text"] if s.seed["kind"] == "topic" else None
            turns = [m for m in s.messages if m["role"] != "system"]
            messages = simulator_prompt(turns, system_prompt=self.asker_system, topic=topic, where=s.id)
        params = self.params[role]
        if role == "asker" and answered_turns(s.messages) < self.cfg.min_turns:
            params = params.replace(ban=[STOP_MARKER])  # no stop yet: blocked where the engine can
        retry = (s.failed_calls,) if s.failed_calls else ()  # a call tried again draws anew
        redraw = ("redraw", s.drawn_again) if s.drawn_again else ()  # and so does a question drawn again
        seed = derive_seed(self.cfg.seed, s.index, len(s.messages), role, params.seed, *retry, *redraw)
        return Call(role, messages, params.replace(seed=seed))

    def apply(self, s: Session, role: str, c: Completion) -> str:
        """Apply the completion of the session's next call: ``ADDED`` (its message), ``FAILED`` (no
        text, or an empty answer: tried again, up to ``step_retries`` times, before the session
        ends), ``REDRAW`` (a degenerate question or an early stop: drawn again, up to
        ``max_redraws`` times) or ``ENDED`` (the stop marker; a question still degenerate)."""
        if c.shortened:  # the model saw the session with its oldest turns left out
            note = s.shortened.setdefault(role, {"calls": 0, "max_turns_dropped": 0})
            note["calls"] += 1
            note["max_turns_dropped"] = max(note["max_turns_dropped"], c.shortened.get("turns_dropped", 0))
        text = c.text.strip() if c.ok else None
        if text is None or (role == "assistant" and not text):
            s.failed_calls += 1
            if s.failed_calls > self.cfg.step_retries:
                s.end_reason = f"{role}_failed"
                s.last_error = (c.error or "empty answer") if c.ok else c.error
            return FAILED
        if role == "asker":
            reason = self.question_fault(s, text)
            if reason and s.drawn_again < self.cfg.max_redraws:
                s.drawn_again += 1
                s.redraws[reason] = s.redraws.get(reason, 0) + 1
                return REDRAW
            if reason or is_stop(text):
                s.end_reason = "stop_marker" if reason in (None, "early_stop") else reason
                return ENDED
        s.drawn_again = 0
        s.messages.append({"role": "user" if role == "asker" else "assistant", "content": text})
        return ADDED

    def question_fault(self, s: Session, text: str) -> str | None:
        """Why the simulator's ``text`` cannot be the session's next question: ``early_stop`` (its
        stop marker before ``min_turns`` answers), a :func:`degenerate_reason`; None when it is
        one, or the stop marker in its time."""
        if is_stop(text):
            return "early_stop" if answered_turns(s.messages) < self.cfg.min_turns else None
        return degenerate_reason(text, s.messages, (self.cfg.min_question_words, self.cfg.max_question_words))

    def is_over(self, s: Session) -> bool:
        """Whether the session has ended (``max_turns`` answers end it, and its end reason says so)."""
        if s.end_reason is None and answered_turns(s.messages) >= self.cfg.max_turns:
            s.end_reason = "max_turns"
        return s.end_reason is not None

    def retry_delay(self, s: Session) -> float:
        """Seconds before a failed call is tried again, doubling with each try."""
        return self.cfg.step_retry_delay * 2 ** (s.failed_calls - 1)

    def record(self, s: Session) -> dict | None:
        """The Dialogue record of an ended session; None when it has no complete turn."""
        msgs = s.dialogue()
        if not answered_turns(msgs):
            return None
        seed = {"kind": s.seed["kind"], "source": s.seed["source"]}
        if s.seed["kind"] == "topic":
            seed["topic"] = s.seed["text"]
        meta = {
            "source": "parrot synthesize",
            "index": s.index,
            "run_seed": self.cfg.seed,
            "seed": seed,
            "turns": answered_turns(msgs),
            "end_reason": s.end_reason,
            "failed_calls": s.failed_calls,
            "redraws": dict(sorted(s.redraws.items())),
            **({"shortened": s.shortened} if s.shortened else {}),
            **self.models_meta,
        }
        return {"id": s.id, "messages": msgs, "meta": meta}
