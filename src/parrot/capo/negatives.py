"""The three ways CaPO writes a wrong answer to a context-dependent question.

Each strategy turns a selected turn (see :mod:`parrot.capo.select`) into the conversations sent
to the generator, and returns the rejected answer plus what to keep in ``meta``:

- ``ignore``: the question alone (``capo_ignore.txt``), no history at all.
- ``hallucinate``: two calls. Without the history, guess what the reference or ellipsis means
  (``capo_hallucinate_guess.txt``, the guess kept as ``meta.guess``); then answer the question
  on that reading (``capo_hallucinate_answer.txt``).
- ``misunderstand``: an earlier user message that is *not* the one just before the question
  (turns 1..k-2 for a question at turn k, one drawn with a seeded RNG keyed by the seed and the
  turn id) is quoted, and the generator answers as if the question referred to it
  (``capo_misunderstand.txt``; the turn number and the quoted span kept in meta). A question at
  turn 2 has no such turn: it gets no misunderstanding pair (counted ``no_unrelated_turn``).

The session's system message, when there is one, is sent before every answering call (it is
the assistant's setup, not conversation history); the guess and verification calls get none.
"""

from __future__ import annotations

import random
import re
from difflib import SequenceMatcher

from parrot.backends import SamplingParams
from parrot.capo.prompts import Prompts
from parrot.core.dialogue import split_system
from parrot.core.itemloop import ItemFailed

STRATEGIES = ("ignore", "hallucinate", "misunderstand")

GUESS_MAX_CHARS = 300  # a guess is a phrase; a rambling one is cut before it is reused
SPAN_MAX_CHARS = 1000  # the quoted earlier message in the misunderstanding prompt

_WORD = re.compile(r"\w+")


def similarity(a: str, b: str) -> float:
    """How alike two answers are: difflib's ratio over lower-cased word sequences,
    2 * matched words / (words in a + words in b), from 0.0 (nothing shared) to 1.0 (same words).

    >>> similarity("The Loire is 1,006 km long.", "the Loire is 1,006 km long!")
    1.0
    >>> round(similarity("The Loire is 1,006 km long.", "The Seine is 777 km long."), 2)
    0.62
    >>> similarity("yes", "no")
    0.0
    """
    wa, wb = _WORD.findall(a.lower()), _WORD.findall(b.lower())
    if not wa and not wb:
        return 1.0
    return SequenceMatcher(None, wa, wb, autojunk=False).ratio()


def unrelated_turn(turn: dict, seed: int) -> tuple[int, str] | None:
    """``(turn number, user message)`` of the earlier turn the misunderstanding binds to.

    Drawn uniformly from turns 1..k-2 (never k-1, the turn a follow-up most likely refers to)
    with ``random.Random(f"{seed}:{turn id}:misunderstand")``; None when k = 2.
    """
    _, msgs = split_system(turn["prompt"])
    earlier = [m["content"] for m in msgs[:-1] if m["role"] == "user"]  # turns 1..k-1
    choices = list(range(1, len(earlier)))  # turn numbers 1..k-2
    if not choices:
        return None
    j = random.Random(f"{seed}:{turn['id']}:misunderstand").choice(choices)
    return j, earlier[j - 1][:SPAN_MAX_CHARS]


def _head(turn: dict) -> list[dict]:
    system, _ = split_system(turn["prompt"])
    return [system] if system else []


async def _one(backend, messages: list[dict], params: SamplingParams, step: str) -> str:
    [c] = await backend.agenerate([messages], params)
    if not c.ok or not c.text.strip():
        raise ItemFailed("generator_failed", {"step": step, "error": c.error or "empty reply"})
    return c.text.strip()


def clean_guess(text: str) -> str:
    r"""The guess from the reply: its first non-empty line that is not a lead-in ending with ':',
    without quotes or a 'Guess:' label.

    >>> clean_guess('The original message is:\n"the Loire"\n')
    'the Loire'
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = next((ln for ln in lines if not ln.endswith(":")), lines[0] if lines else "")
    line = re.sub(r"^(?:my\s+)?guess\s*:\s*", "", line, flags=re.I).strip().strip("\"'`").strip()
    return line[:GUESS_MAX_CHARS]


async def ignore_context(backend, prompts: Prompts, turn: dict, params: SamplingParams, seed: int):
    msgs = _head(turn) + prompts.user("capo_ignore", question=turn["question"])
    return await _one(backend, msgs, params, "answer"), {}


async def hallucinate_context(
    backend, prompts: Prompts, turn: dict, params: SamplingParams, seed: int, guess_params: SamplingParams | None = None
):
    guess_msgs = prompts.user("capo_hallucinate_guess", question=turn["question"])
    reply = await _one(backend, guess_msgs, guess_params or params, "guess")
    guess = clean_guess(reply)
    if not guess:
        raise ItemFailed("generator_failed", {"step": "guess", "error": "no guess in the reply", "reply": reply[:300]})
    msgs = _head(turn) + prompts.user("capo_hallucinate_answer", question=turn["question"], guess=guess)
    return await _one(backend, msgs, params, "answer"), {"guess": guess}


async def misunderstand_context(backend, prompts: Prompts, turn: dict, params: SamplingParams, seed: int):
    picked = unrelated_turn(turn, seed)
    if picked is None:  # callers skip these before asking; this guards direct use
        raise ItemFailed("no_unrelated_turn", {"turn": turn["turn"]})
    j, span = picked
    msgs = _head(turn) + prompts.user("capo_misunderstand", question=turn["question"], span=span)
    return await _one(backend, msgs, params, "answer"), {"misunderstood_turn": j, "span": span}


WRITERS = {"ignore": ignore_context, "hallucinate": hallucinate_context, "misunderstand": misunderstand_context}
