"""What a user's question is made of, and the signs that it is not one: the words it is counted
in, how much of it another text already holds, and whether it reads like an assistant's answer.

Two stages judge simulator questions by these same rules: ``parrot synthesize`` draws a question
again when it fails one (:func:`parrot.synthesize.session.degenerate_reason`), and ``parrot
filter`` cuts a session at the first question that fails one
(:class:`parrot.filter.stage.QuestionRules`). A mechanism changed here changes both.

Words. A run of letters or digits is a word; Chinese and Japanese are written without spaces, so
each of their characters counts as one (else a whole clause is one "word", and every such
question is too short).

Reads like an answer (:func:`reads_like_answer`). A user simulator that slips into the
assistant's role writes text like an answer. Two signs in the text itself, either enough:

1. it opens the way assistants open (``Sure``, ``Certainly``, ``Of course``, ``Great question``,
   ``As an AI``, ``I'm sorry, but``, ``Here is``/``Here's``, ``I'd be happy to``...);
2. it holds assistant boilerplate anywhere (``as an AI language model``, ``I hope this helps``,
   ``let me know if you have any other questions``, ``feel free to ask``, ``is there anything
   else I can help``).

>>> words("How do I sort a list in Python?")
['how', 'do', 'i', 'sort', 'a', 'list', 'in', 'python']
>>> overlap(words("how do I sort a list"), words("so how do I sort a list then"), 3)
1.0
>>> reads_like_answer("Sure! Here is how you sort a list."), reads_like_answer("Can you sort it?")
(True, False)
"""

from __future__ import annotations

import re

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_ASSISTANT_OPENING = re.compile(
    r"^\W*(sure\b|certainly\b|of course\b|absolutely[,!.]|great question|good question|as an ai\b|"
    r"i'?m sorry,? but|i apologi[sz]e|here (is|are)\b|here'?s\b|i'?d be (happy|glad) to|"
    r"i would be (happy|glad) to|thank you for (your|the) question)",
    re.I,
)
_ASSISTANT_BOILERPLATE = re.compile(
    r"as an ai language model|i hope (this|that) helps|let me know if you (have|need) any|"
    r"feel free to ask|is there anything else i can (help|do)",
    re.I,
)


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (a Chinese or Japanese character is one)."""
    return _WORD.findall(text.lower())


def ngrams(ws: list[str], n: int) -> set[tuple]:
    n = max(1, min(n, len(ws)))
    return {tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)}


def overlap(question: list[str], other: list[str], n: int) -> float:
    """Share of ``question``'s word n-grams that also occur in ``other`` (0..1)."""
    mine = ngrams(question, n)
    if not mine or not other:
        return 0.0
    k = max(1, min(n, len(question)))
    theirs = {tuple(other[i : i + k]) for i in range(len(other) - k + 1)}
    return len(mine & theirs) / len(mine)


def reads_like_answer(text: str) -> bool:
    """Whether ``text`` opens like an assistant's reply or holds an assistant's boilerplate."""
    return bool(_ASSISTANT_OPENING.search(text) or _ASSISTANT_BOILERPLATE.search(text))
