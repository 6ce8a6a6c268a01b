"""The 25 checks, one function per IFEval instruction id: ``(response, cleaned kwargs) -> bool``.

The kwargs are those :func:`parrot.evaluate.instructions.check_kwargs` returns.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable

from parrot.evaluate.instructions.text import count_sentences, count_words, is_language

# ---------------------------------------------------------------------------------------------
# the checks: one function per id, (response, cleaned kwargs) -> bool


def _compare(count: int, relation: str, threshold: int) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


@functools.lru_cache(maxsize=4096)
def _literal(text: str, whole_word: bool = False) -> re.Pattern:
    body = re.escape(text)
    return re.compile(rf"\b{body}\b" if whole_word else body, re.IGNORECASE)


def _existence(r: str, kw: dict) -> bool:
    return all(_literal(word).search(r) for word in kw["keywords"])


def _frequency(r: str, kw: dict) -> bool:
    return _compare(len(_literal(kw["keyword"]).findall(r)), kw["relation"], kw["frequency"])


def _forbidden_words(r: str, kw: dict) -> bool:
    return not any(_literal(word, True).search(r) for word in kw["forbidden_words"])


def _letter_frequency(r: str, kw: dict) -> bool:
    return _compare(r.lower().count(kw["letter"]), kw["let_relation"], kw["let_frequency"])


def _response_language(r: str, kw: dict) -> bool:
    return is_language(r, kw["language"])


def _number_sentences(r: str, kw: dict) -> bool:
    return _compare(count_sentences(r), kw["relation"], kw["num_sentences"])


_STARS_DIVIDER = re.compile(r"\s?\*\*\*\s?")


def _number_paragraphs(r: str, kw: dict) -> bool:
    parts = _STARS_DIVIDER.split(r)
    filled = [bool(p.strip()) for p in parts]
    if not all(filled[1:-1]):  # an empty paragraph between two dividers fails outright
        return False
    return sum(filled) == kw["num_paragraphs"]


def _number_words(r: str, kw: dict) -> bool:
    return _compare(count_words(r), kw["relation"], kw["num_words"])


_FIRST_WORD_STOP = re.compile(r"[.,?!'\"]")


def _nth_paragraph_first_word(r: str, kw: dict) -> bool:
    parts = r.split("\n\n")
    paragraphs = sum(1 for p in parts if p.strip())
    nth = kw["nth_paragraph"]
    # As in the reference, the n-th piece is taken counting empty pieces too.
    if nth > paragraphs or not parts[nth - 1].strip():
        return False
    word = parts[nth - 1].split()[0].lstrip("'").lstrip('"')
    word = _FIRST_WORD_STOP.split(word, maxsplit=1)[0].lower()
    return paragraphs == kw["num_paragraphs"] and word == kw["first_word"]


_PLACEHOLDER = re.compile(r"\[.*?\]")


def _number_placeholders(r: str, kw: dict) -> bool:
    return len(_PLACEHOLDER.findall(r)) >= kw["num_placeholders"]


_POSTSCRIPT = {"P.P.S": re.compile(r"p\.\s?p\.\s?s"), "P.S.": re.compile(r"p\.\s?s\.")}


def _postscript(r: str, kw: dict) -> bool:
    marker = kw["postscript_marker"]
    pattern = _POSTSCRIPT.get(marker) or _literal(marker.lower())
    return pattern.search(r.lower()) is not None


_STAR_BULLET = re.compile(r"^\s*\*[^\*].*$", re.MULTILINE)
_DASH_BULLET = re.compile(r"^\s*-.*$", re.MULTILINE)


def _number_bullet_lists(r: str, kw: dict) -> bool:
    return len(_STAR_BULLET.findall(r)) + len(_DASH_BULLET.findall(r)) == kw["num_bullets"]


_CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _constrained_response(r: str, kw: dict) -> bool:
    r = r.strip()
    return any(option in r for option in _CONSTRAINED_OPTIONS)


_SINGLE_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")


def _number_highlighted_sections(r: str, kw: dict) -> bool:
    found = sum(1 for h in _SINGLE_HIGHLIGHT.findall(r) if h.strip("*").strip())
    found += sum(1 for h in _DOUBLE_HIGHLIGHT.findall(r) if h[2:-2].strip())
    return found >= kw["num_highlights"]


@functools.lru_cache(maxsize=256)
def _section_splitter(word: str) -> re.Pattern:
    return re.compile(r"\s?" + re.escape(word) + r"\s?\d+\s?")


def _multiple_sections(r: str, kw: dict) -> bool:
    return len(_section_splitter(kw["section_spliter"]).split(r)) - 1 >= kw["num_sections"]


def _json_format(r: str, kw: dict) -> bool:
    text = r.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        text = text.removeprefix(fence)
    text = text.removesuffix("```").strip()
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


_TITLE = re.compile(r"<<[^\n]+>>")


def _title(r: str, kw: dict) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in _TITLE.findall(r))


def _two_responses(r: str, kw: dict) -> bool:
    parts = r.split("******")
    filled = [p for p in parts if p.strip()]
    if any(not p.strip() for p in parts[1:-1]):
        return False
    return len(filled) == 2 and filled[0].strip() != filled[1].strip()


def _repeat_prompt(r: str, kw: dict) -> bool:
    return r.strip().lower().startswith(kw["prompt_to_repeat"].strip().lower())


def _end_checker(r: str, kw: dict) -> bool:
    return r.strip().strip('"').lower().endswith(kw["end_phrase"].lower())


@functools.cache
def word_tokenizer():
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


# A capital that a lowercase letter follows ("The") stays in a token with it, unless a contraction
# splits the letters ("CANnot" -> "CAN", "not"): only chunks with another capital can give a token.
_MAY_GIVE_CAPITALS = re.compile(r"[A-Z](?![a-z])|(?i:cannot|gimme|lemme|gonna|wanna|gotta|more'n|d'ye|'tis|'twas)")


def _has_capital(chunk: str) -> bool:
    if chunk.isascii():
        return _MAY_GIVE_CAPITALS.search(chunk) is not None
    return any(c.isupper() for c in chunk)


def capital_words(text: str, enough: int | None = None) -> int:
    """The all-capital tokens of ``text`` (NLTK's Treebank word tokenizer, line by line), counted up to
    ``enough`` when given (a check whose verdict is settled once the count reaches its threshold).

    A token never spans whitespace, and a token with a capital followed by a lowercase letter is not
    all capitals, so only the chunks that can give one are tokenized (the rules that look past a
    chunk only split off quotes, commas and a final period, which never change whether a token counts):

    >>> capital_words("I'M SURE the USA is big, DON'T you think? ok.")
    6
    """
    count = 0
    for line in text.splitlines():
        kept = " ".join(chunk for chunk in line.split() if _has_capital(chunk))
        if kept:
            count += sum(1 for token in word_tokenizer().tokenize(kept) if token.isupper())
            if enough is not None and count >= enough:
                break
    return count


def _capital_word_frequency(r: str, kw: dict) -> bool:
    count = capital_words(r, enough=kw["capital_frequency"])  # past the threshold the verdict is known
    return _compare(count, kw["capital_relation"], kw["capital_frequency"])


def _english_capital(r: str, kw: dict) -> bool:
    return r.isupper() and is_language(r, "en")


def _english_lowercase(r: str, kw: dict) -> bool:
    return r.islower() and is_language(r, "en")


def _no_comma(r: str, kw: dict) -> bool:
    return "," not in r


def _quotation(r: str, kw: dict) -> bool:
    r = r.strip()
    return len(r) > 1 and r[0] == '"' and r[-1] == '"'


CHECKS: dict[str, Callable[[str, dict], bool]] = {
    "keywords:existence": _existence,
    "keywords:frequency": _frequency,
    "keywords:forbidden_words": _forbidden_words,
    "keywords:letter_frequency": _letter_frequency,
    "language:response_language": _response_language,
    "length_constraints:number_sentences": _number_sentences,
    "length_constraints:number_paragraphs": _number_paragraphs,
    "length_constraints:number_words": _number_words,
    "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
    "detectable_content:number_placeholders": _number_placeholders,
    "detectable_content:postscript": _postscript,
    "detectable_format:number_bullet_lists": _number_bullet_lists,
    "detectable_format:constrained_response": _constrained_response,
    "detectable_format:number_highlighted_sections": _number_highlighted_sections,
    "detectable_format:multiple_sections": _multiple_sections,
    "detectable_format:json_format": _json_format,
    "detectable_format:title": _title,
    "combination:two_responses": _two_responses,
    "combination:repeat_prompt": _repeat_prompt,
    "startend:end_checker": _end_checker,
    "change_case:capital_word_frequency": _capital_word_frequency,
    "change_case:english_capital": _english_capital,
    "change_case:english_lowercase": _english_lowercase,
    "punctuation:no_comma": _no_comma,
    "startend:quotation": _quotation,
}
