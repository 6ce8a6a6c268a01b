"""Text measures behind the checks: words, sentences (our offline rules), language, capital words.

See the package docstring (parrot.evaluate.instructions) for how these differ from IFEval's.
"""

from __future__ import annotations

import functools
import re

# ---------------------------------------------------------------------------------------------
# counting helpers

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Words as IFEval counts them: runs of ``\\w`` characters ("hydro-thermal" is two)."""
    return len(_WORD.findall(text))


_TOKEN = re.compile(r"\S+")
_CLOSERS = "\"'\u201d\u2019)]}*"
_OPENERS = "\"'\u201c\u2018([{*"
_INNER_PUNCT = re.compile(r"[?!)\";}\]*:@'({\[]")
_NUMBER = re.compile(r"\d[\d,.]*")
# Abbreviations a period does not end a sentence after, unless a common sentence opener follows.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr gen col lt sen rep inc ltd co corp vs ave ft jan feb aug sep sept oct nov dec "
    "u.s u.s.a u.k u.n a.m p.m ph.d d.c n.y".split()
)
# Capitalised, these words start a sentence after an abbreviation, an initial or an ellipsis.
_OPENER_WORDS = frozenset(
    "the a an it its he she they we i you this that these those there here in on at by to of from with for "
    "but and or nor so if when while whereas however then thus also as after before my our your his her their "
    "what why how who where which is are was were do does did can will would should could please note first "
    "next finally yes no although since though because even both many most some each every all such one "
    "indeed instead meanwhile moreover nevertheless nonetheless similarly despite according among under yet "
    "let now today overall still just not".split()
)


def count_sentences(text: str) -> int:
    """Sentences in ``text``, by our offline rules (see the module docstring: IFEval uses Punkt).

    >>> count_sentences("Dr. Smith came at 5 p.m. on Monday. He was late!")
    2
    """
    tokens = _TOKEN.findall(text)
    if not tokens:
        return 0
    return 1 + sum(_ends_sentence(tok, nxt) for tok, nxt in zip(tokens, tokens[1:]))


def _opens(word: str) -> bool:
    word = word.lstrip(_OPENERS)
    return word[:1].isupper() and word.rstrip(".,;:!?\"')]}*").lower() in _OPENER_WORDS


def _ends_sentence(token: str, following: str) -> bool:
    core = token.rstrip(_CLOSERS)
    stop = len(core) - len(core.rstrip(".?!"))
    if not stop:
        return False
    run = core[-stop:]
    if "?" in run or "!" in run:
        return True
    if len(run) > 1:  # an ellipsis: a sentence ends only if a sentence opener follows
        return _opens(following)
    word = _INNER_PUNCT.split(core[:-1])[-1].lower()  # "xx}x." ends in the initial "x."
    if word in _ABBREVIATIONS or word.rsplit("-", 1)[-1] in _ABBREVIATIONS:
        return _opens(following)
    if len(word) == 1 and word.isalpha():  # an initial, as in "J. K. Rowling"
        return _opens(following)
    if _NUMBER.fullmatch(word):  # "in 2020. then" goes on; "1. First" is a break
        return not following.lstrip(_OPENERS)[:1].islower()
    return True


# ---------------------------------------------------------------------------------------------
# language detection (lazy: langdetect loads its profiles on first use)


@functools.lru_cache(maxsize=65536)
def _detect_language(text: str) -> str | None:
    """langdetect's verdict for ``text`` (seeded; :mod:`.langid` computes it), or None where it
    cannot tell (no letters)."""
    from parrot.evaluate.instructions.langid import detect

    return detect(text)


def is_language(text: str, language: str) -> bool:
    found = _detect_language(text)
    return found is None or found == language
