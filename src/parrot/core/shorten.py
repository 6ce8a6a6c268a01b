"""One rule for a conversation longer than a token budget, used by every stage that renders one.

Long sessions are the point of the method, and their late turns (the longest) are where CaPO
acts, so a long conversation is shortened, never dropped wholesale:

1. keep the system message and the *kept* turns (the ones being trained or answered);
2. drop the oldest whole turns until the rest fits;
3. only when the kept turns alone are over the budget, cut inside their first message, keeping
   its end (a pasted document usually ends with the question about it).

A *turn* is a user message and the messages after it up to the next user message. The budget
is whatever ``fits(messages)`` says: a training length, a model's context minus the room for
its answer. What was shortened is returned (:class:`Shortening`) so each stage counts it in its
manifest and records say so in ``meta``.

>>> msgs = [{"role": "system", "content": "Be brief."},
...         {"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "The Loire."},
...         {"role": "user", "content": "How long is it?"}]
>>> fits = lambda m: sum(len(x["content"]) for x in m) <= 40
>>> kept, how = shorten(msgs, fits)
>>> [m["content"] for m in kept], how.turns_dropped
(['Be brief.', 'How long is it?'], 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Fits = Callable[[list[dict]], bool]

# A cut that would start mid-word moves to the next space when one is this close.
_WORD_SLACK = 30


@dataclass
class Shortening:
    """What :func:`shorten` left out: whole turns, and characters cut from the front of one message."""

    turns_dropped: int = 0
    chars_cut: int = 0

    def __bool__(self) -> bool:
        return bool(self.turns_dropped or self.chars_cut)

    def to_dict(self) -> dict:
        return {"turns_dropped": self.turns_dropped, "chars_cut": self.chars_cut}

    def count_in(self, counts: dict) -> None:
        """Add this shortening to a stage's counts (``turns_dropped``, ``messages_cut``)."""
        if self.turns_dropped:
            counts["turns_dropped"] = counts.get("turns_dropped", 0) + self.turns_dropped
        if self.chars_cut:
            counts["messages_cut"] = counts.get("messages_cut", 0) + 1


def split_turns(messages: list[dict]) -> tuple[list[dict], list[list[dict]]]:
    """``(head, turns)``: the system message (if first) and the turns, each starting with a user
    message (a conversation that opens with another role has that opening as its first turn)."""
    head = list(messages[:1]) if messages and messages[0]["role"] == "system" else []
    turns: list[list[dict]] = []
    for m in messages[len(head) :]:
        if m["role"] == "user" or not turns:
            turns.append([])
        turns[-1].append(m)
    return head, turns


def flatten(turns: list[list[dict]]) -> list[dict]:
    return [m for turn in turns for m in turn]


def shorten(messages: list[dict], fits: Fits, *, keep: int = 1) -> tuple[list[dict], Shortening] | None:
    """``messages`` shortened by the rule until ``fits`` says yes; the last ``keep`` turns are kept.

    Returns ``(messages, Shortening)`` (the input itself, untouched, when it fits), or None when
    the kept turns do not fit even with their first message cut down to one word. ``fits`` must
    be monotone: a conversation with less in it never fits worse.
    """
    if fits(messages):
        return messages, Shortening()
    head, turns = split_turns(messages)
    if not turns:  # a system message alone: nothing to drop or cut
        return None
    keep = max(1, min(keep, len(turns)))
    lo, hi = 1, len(turns) - keep  # the fewest dropped turns that make it fit lies in [lo, hi]
    if hi >= lo and fits(head + flatten(turns[hi:])):
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(head + flatten(turns[mid:])):
                hi = mid
            else:
                lo = mid + 1
        return head + flatten(turns[lo:]), Shortening(turns_dropped=lo)
    kept = turns[len(turns) - keep :]
    cut = _cut_first_message(head, kept, fits)
    if cut is None:
        return None
    return cut[0], Shortening(turns_dropped=len(turns) - keep, chars_cut=cut[1])


def _cut_first_message(head: list[dict], kept: list[list[dict]], fits: Fits) -> tuple[list[dict], int] | None:
    """The kept turns with their first message cut to the longest end that fits, and the
    characters cut; None when not even its last word fits."""
    first, rest = kept[0][0], flatten(kept)[1:]
    text = first["content"]

    def build(n: int) -> list[dict]:
        return head + [{**first, "content": _tail(text, n)}] + rest

    # Gallop up from a short tail, so a pasted document is never counted whole again and again;
    # then bisect.
    lo, hi = 1, len(text)  # lo - 1: the longest tail known to fit (0: none yet)
    probe = 64
    while probe < len(text) and fits(build(probe)):
        lo, probe = probe + 1, probe * 2
    hi = min(hi, probe)
    while lo <= hi and hi - lo >= lo // 32:  # within 3% of the longest tail that fits is enough
        mid = (lo + hi) // 2
        if fits(build(mid)):
            lo = mid + 1
        else:
            hi = mid - 1
    if lo <= 1:
        return None
    out = build(lo - 1)  # the longest tail found to fit
    return out, len(text) - len(out[len(head)]["content"])


def _tail(text: str, n: int) -> str:
    """The last ``n`` characters of ``text``, starting at a word when a space is near."""
    tail = text[len(text) - n :]
    if n < len(text) and not text[len(text) - n - 1].isspace():
        space = tail.find(" ", 0, _WORD_SLACK)
        if 0 <= space < len(tail) - 1:
            tail = tail[space + 1 :]
    return tail
