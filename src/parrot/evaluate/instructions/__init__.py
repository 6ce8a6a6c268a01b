"""IFEval-compatible instruction verifier: the 25 verifiable instructions of IFEval, checked offline.

IFEval (Zhou et al. 2023, google-research ``instruction_following_eval``) asks a model to follow
instructions that a program can check: "answer in fewer than 100 words", "wrap the answer in
JSON", "end with 'Any other questions?'". This module is our own implementation of those checks,
with IFEval's instruction ids, kwargs names and semantics (relations, counting rules, the conflict
table, the loose variants), so a response scored here scores as IFEval scores it. Nothing is
fetched at run time: language detection uses ``langdetect`` (its profiles ship in the wheel), the
capital-word count uses ``nltk``'s regex word tokenizer (no data files).

What is verified, by kind, and the kwargs each id takes (all required, see below):

=========================  ====================================================================
keywords                   existence ``keywords`` (list of str: all present, case-insensitive);
                           frequency ``keyword, frequency, relation``; forbidden_words
                           ``forbidden_words`` (none present as a whole word); letter_frequency
                           ``letter, let_frequency, let_relation`` (case-insensitive count)
language                   response_language ``language`` (ISO 639-1 code, langdetect's verdict)
length_constraints         number_sentences ``num_sentences, relation``; number_paragraphs
                           ``num_paragraphs`` (exactly, split on ``***``); number_words
                           ``num_words, relation`` (``\\w+`` runs); nth_paragraph_first_word
                           ``num_paragraphs, nth_paragraph, first_word`` (split on a blank line)
detectable_content         number_placeholders ``num_placeholders`` (at least, ``[...]``);
                           postscript ``postscript_marker`` (e.g. "P.S.", "P.P.S")
detectable_format          number_bullet_lists ``num_bullets`` (exactly, ``*``/``-`` lines);
                           constrained_response; number_highlighted_sections ``num_highlights``
                           (at least, ``*x*``/``**x**``); multiple_sections ``section_spliter,
                           num_sections`` (at least); json_format; title (``<<title>>``)
combination                two_responses (two different answers split by ``******``);
                           repeat_prompt ``prompt_to_repeat`` (the answer starts with it)
startend                   end_checker ``end_phrase``; quotation (wrapped in double quotes)
change_case                capital_word_frequency ``capital_frequency, capital_relation``;
                           english_capital; english_lowercase
punctuation                no_comma
=========================  ====================================================================

A relation is ``"less than"`` (count < threshold) or ``"at least"`` (count >= threshold).

Required kwargs: the reference picks a random value when a kwarg is absent (num_words, relation,
keywords, ...), which makes an absent kwarg meaningless for checking a given response. IFEval's
data gives every kwarg of every instruction, so :func:`check_kwargs` requires them all. Keys whose
value is ``None`` are dropped first (the Hugging Face copy of IFEval fills unused keys with null).
Values the reference would silently replace by a random one are errors here too: a negative count,
a letter that is not one of a-z, an ``nth_paragraph`` outside 1..``num_paragraphs``.

Strict and loose: the strict verdict checks the response as it is; an empty or whitespace-only
response follows nothing. The loose verdict (IFEval's upper bound) passes an instruction if any
non-empty one of eight variants passes: the response, with its first line removed, its last line
removed, both, and each of those four with every ``*`` removed (:func:`loose_variants`, in the
reference's order). A response opening with "Sure, here it is:" thus fails ``startend:quotation``
strictly and passes it loosely.

Deviations from the reference, and why:

* Sentence counting (length_constraints:number_sentences). The reference counts with NLTK's
  pretrained Punkt English model, a data file NLTK downloads and we cannot load. We count with our
  own rules (:func:`count_sentences`): a sentence ends at ``.``, ``?`` or ``!`` followed by
  whitespace (closing quotes and brackets may come between), and the text's end closes the last
  one; a period does not end a sentence after a common abbreviation ("Mr.", "Inc.", "p.m."), an
  initial or an ellipsis unless a capitalised sentence opener ("The", "It", ...) follows, nor after
  a number when a lowercase word follows. Measured against the pretrained model (loaded for the
  measurement only), these rules give the same verdicts on all the reference's sentence tests and
  the same count on its four count tests, and the same count on 24 of 25 held-out plausible
  responses (NLTK's untrained Punkt: 21; the reference's own ``split_into_sentences`` rules: 19).
  They differ where Punkt's learned statistics decide, e.g. after "hrs." or list labels "A.".
* Capital words (change_case:capital_word_frequency). The reference calls ``nltk.word_tokenize``,
  which first splits sentences with the same Punkt model; we run NLTK's Treebank word tokenizer
  (``NLTKWordTokenizer``, no data needed) over each line. Splitting sentences there only detaches
  sentence-final periods, which never change whether a token is all capitals, so the counts agree.
* Keywords, forbidden words, section splitters and custom postscript markers are matched as
  literal text; the reference pastes them into a regular expression unescaped, so a keyword such
  as "C++" would raise there. IFEval's own keywords contain no regex syntax, so verdicts agree.
* langdetect is made deterministic (``DetectorFactory.seed = 0``); the reference leaves it
  random, so its verdicts on borderline text can change from run to run. As in the reference,
  text langdetect cannot classify (no letters) passes the language instructions.
* JSON that nests too deep for Python's parser fails json_format instead of raising.

Layout: this package holds the ids, kwargs, verdicts and the conflict table; ``checks.py`` the 25
checks; ``text.py`` the word and sentence counts and the (lazy, cached) language detection.

Example:

>>> follows("My answer is yes.", "detectable_format:constrained_response", {})
True
>>> verify("Sure, here it is:\\n\\"Hello world\\"", ["startend:quotation"], [{}])
([False], [True])
>>> check_kwargs("keywords:frequency", {"keyword": " cat ", "frequency": 2, "relation": "at least", "letter": None})
{'keyword': 'cat', 'frequency': 2, 'relation': 'at least'}
"""

from __future__ import annotations

from collections.abc import Iterable

from parrot.evaluate.instructions.checks import CHECKS as _CHECKS
from parrot.evaluate.instructions.text import count_sentences, count_words

__all__ = [
    "CONFLICTS",
    "INSTRUCTION_IDS",
    "KWARGS",
    "LANGUAGE_CODES",
    "RELATIONS",
    "check_kwargs",
    "conflicting",
    "count_sentences",
    "count_words",
    "follows",
    "kind",
    "loose_variants",
    "verify",
]

INSTRUCTION_IDS: tuple[str, ...] = (
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
    "startend:quotation",
)

RELATIONS: tuple[str, str] = ("less than", "at least")

#: The response languages IFEval can ask for (ISO 639-1 code -> name), as in the reference.
LANGUAGE_CODES: dict[str, str] = {
    "en": "English", "es": "Spanish", "pt": "Portuguese", "ar": "Arabic", "hi": "Hindi",
    "fr": "French", "ru": "Russian", "de": "German", "ja": "Japanese", "it": "Italian",
    "bn": "Bengali", "uk": "Ukrainian", "th": "Thai", "ur": "Urdu", "ta": "Tamil",
    "te": "Telugu", "bg": "Bulgarian", "ko": "Korean", "pl": "Polish", "he": "Hebrew",
    "fa": "Persian", "vi": "Vietnamese", "ne": "Nepali", "sw": "Swahili", "kn": "Kannada",
    "mr": "Marathi", "gu": "Gujarati", "pa": "Punjabi", "ml": "Malayalam", "fi": "Finnish",
}  # fmt: skip

# Kwarg types: ``int`` a non-negative integer, ``str`` a non-empty string, ``list`` a non-empty list
# of non-empty strings. Relations take a value of RELATIONS; ``language`` a key of LANGUAGE_CODES.
KWARGS: dict[str, dict[str, type]] = {
    "keywords:existence": {"keywords": list},
    "keywords:frequency": {"keyword": str, "frequency": int, "relation": str},
    "keywords:forbidden_words": {"forbidden_words": list},
    "keywords:letter_frequency": {"letter": str, "let_frequency": int, "let_relation": str},
    "language:response_language": {"language": str},
    "length_constraints:number_sentences": {"num_sentences": int, "relation": str},
    "length_constraints:number_paragraphs": {"num_paragraphs": int},
    "length_constraints:number_words": {"num_words": int, "relation": str},
    "length_constraints:nth_paragraph_first_word": {"num_paragraphs": int, "nth_paragraph": int, "first_word": str},
    "detectable_content:number_placeholders": {"num_placeholders": int},
    "detectable_content:postscript": {"postscript_marker": str},
    "detectable_format:number_bullet_lists": {"num_bullets": int},
    "detectable_format:constrained_response": {},
    "detectable_format:number_highlighted_sections": {"num_highlights": int},
    "detectable_format:multiple_sections": {"section_spliter": str, "num_sections": int},
    "detectable_format:json_format": {},
    "detectable_format:title": {},
    "combination:two_responses": {},
    "combination:repeat_prompt": {"prompt_to_repeat": str},
    "startend:end_checker": {"end_phrase": str},
    "change_case:capital_word_frequency": {"capital_frequency": int, "capital_relation": str},
    "change_case:english_capital": {},
    "change_case:english_lowercase": {},
    "punctuation:no_comma": {},
    "startend:quotation": {},
}

_RELATION_KEYS = {"relation", "let_relation", "capital_relation"}


def kind(instruction_id: str) -> str:
    """The group an instruction id belongs to: the part before ':' (``keywords``, ``language``, ...)."""
    _known(instruction_id)
    return instruction_id.split(":", 1)[0]


def _known(instruction_id: str) -> None:
    if instruction_id not in KWARGS:
        raise ValueError(f"unknown instruction id {instruction_id!r}")


# ---------------------------------------------------------------------------------------------
# kwargs


def _clean_value(instruction_id: str, key: str, want: type, value: object) -> object:
    where = f"{instruction_id}: {key}"
    if want is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where} must be an integer, not {value!r}")
        if value < 0:
            raise ValueError(f"{where} must not be negative, got {value}")
        return value
    if want is list:
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"{where} must be a non-empty list of strings, not {value!r}")
        words = []
        for word in value:
            if not isinstance(word, str) or not word.strip():
                raise ValueError(f"{where} must hold non-empty strings, not {word!r}")
            words.append(word)
        return words
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where} must be a non-empty string, not {value!r}")
    if key in _RELATION_KEYS:
        if value not in RELATIONS:
            raise ValueError(f"{where} must be one of {RELATIONS}, not {value!r}")
        return value
    if key == "language":
        if value not in LANGUAGE_CODES:
            raise ValueError(f"{where}: unknown language code {value!r}")
        return value
    if key == "letter":
        letter = value.strip().lower()
        if len(letter) != 1 or not "a" <= letter <= "z":
            raise ValueError(f"{where} must be one letter a-z, not {value!r}")
        return letter
    if key == "first_word":
        return value.strip().lower()
    if key == "prompt_to_repeat":
        return value
    return value.strip()  # keyword, postscript_marker, section_spliter, end_phrase


def check_kwargs(instruction_id: str, kwargs: dict | None) -> dict:
    """Validate the kwargs of one instruction and return them cleaned (as the reference stores them).

    Keys whose value is None are dropped first. Raises ValueError, with a one-line message, for an
    unknown id, a missing or extra kwarg, or a bad value.
    """
    _known(instruction_id)
    spec = KWARGS[instruction_id]
    given = {k: v for k, v in (kwargs or {}).items() if v is not None}
    extra = sorted(set(given) - set(spec))
    if extra:
        raise ValueError(f"{instruction_id}: unexpected kwarg(s) {', '.join(extra)}")
    missing = [k for k in spec if k not in given]
    if missing:
        raise ValueError(f"{instruction_id}: missing kwarg(s) {', '.join(missing)}")
    cleaned = {k: _clean_value(instruction_id, k, want, given[k]) for k, want in spec.items()}
    if instruction_id == "length_constraints:nth_paragraph_first_word":
        if not 1 <= cleaned["nth_paragraph"] <= cleaned["num_paragraphs"]:
            raise ValueError(
                f"{instruction_id}: nth_paragraph must be between 1 and num_paragraphs "
                f"({cleaned['num_paragraphs']}), got {cleaned['nth_paragraph']}"
            )
    return cleaned


assert tuple(_CHECKS) == INSTRUCTION_IDS == tuple(KWARGS)


# ---------------------------------------------------------------------------------------------
# verdicts


def _prepare(instruction_id: str, kwargs: dict | None, prompt: str | None) -> dict:
    if instruction_id == "combination:repeat_prompt" and prompt is not None:
        if (kwargs or {}).get("prompt_to_repeat") is None:
            kwargs = {**(kwargs or {}), "prompt_to_repeat": prompt}
    return check_kwargs(instruction_id, kwargs)


def follows(response: str, instruction_id: str, kwargs: dict | None, prompt: str | None = None) -> bool:
    """The strict verdict: does ``response`` follow the instruction? An empty response follows nothing.

    ``prompt`` is used only by combination:repeat_prompt, and only when its ``prompt_to_repeat``
    kwarg is absent. Raises ValueError for an unknown id or bad kwargs.
    """
    cleaned = _prepare(instruction_id, kwargs, prompt)
    return bool(response.strip()) and _CHECKS[instruction_id](response, cleaned)


def loose_variants(response: str) -> list[str]:
    """IFEval's eight loose variants of a response, in the reference's order: the response, it
    without '*', then without its first line, last line, both (each stripped), and those three
    without '*'."""
    lines = response.split("\n")
    first = "\n".join(lines[1:]).strip()
    last = "\n".join(lines[:-1]).strip()
    both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        first,
        last,
        both,
        first.replace("*", ""),
        last.replace("*", ""),
        both.replace("*", ""),
    ]


def verify(
    response: str, instruction_ids: list[str], kwargs: list[dict | None], prompt: str | None = None
) -> tuple[list[bool], list[bool]]:
    """Strict and loose follow lists for one response and its instructions (one kwargs dict each).

    Loose: an instruction passes if any non-empty variant of :func:`loose_variants` passes it.
    """
    if len(instruction_ids) != len(kwargs):
        raise ValueError(f"{len(instruction_ids)} instruction ids but {len(kwargs)} kwargs")
    prepared = [(_CHECKS[i], _prepare(i, kw, prompt)) for i, kw in zip(instruction_ids, kwargs)]
    variants = [v for v in dict.fromkeys(loose_variants(response)) if v.strip()]
    strict: list[bool] = []
    loose: list[bool] = []
    for check, cleaned in prepared:
        ok = bool(response.strip()) and check(response, cleaned)
        strict.append(ok)
        loose.append(ok or any(check(v, cleaned) for v in variants[1:] if v != response))
    return strict, loose


# ---------------------------------------------------------------------------------------------
# conflicts: which instructions IFEval never combines in one prompt


def _build_conflicts() -> dict[str, frozenset[str]]:
    everything = set(INSTRUCTION_IDS)
    table: dict[str, set[str]] = {
        "keywords:existence": set(),
        "keywords:frequency": set(),
        "keywords:forbidden_words": set(),
        "keywords:letter_frequency": set(),
        "language:response_language": {
            "detectable_format:multiple_sections",
            "keywords:existence",
            "keywords:frequency",
            "keywords:forbidden_words",
            "startend:end_checker",
            "change_case:english_capital",
            "change_case:english_lowercase",
        },
        "length_constraints:number_sentences": set(),
        "length_constraints:number_paragraphs": {
            "length_constraints:nth_paragraph_first_word",
            "length_constraints:number_sentences",
        },
        "length_constraints:number_words": set(),
        "length_constraints:nth_paragraph_first_word": {"length_constraints:number_paragraphs"},
        "detectable_content:number_placeholders": set(),
        "detectable_content:postscript": set(),
        "detectable_format:number_bullet_lists": set(),
        "detectable_format:constrained_response": everything,
        "detectable_format:number_highlighted_sections": set(),
        "detectable_format:multiple_sections": {
            "language:response_language",
            "detectable_format:number_highlighted_sections",
        },
        "detectable_format:json_format": everything - {"keywords:forbidden_words", "keywords:existence"},
        "detectable_format:title": set(),
        "combination:two_responses": everything
        - {
            "keywords:forbidden_words",
            "keywords:existence",
            "language:response_language",
            "detectable_format:title",
            "punctuation:no_comma",
        },
        "combination:repeat_prompt": everything
        - {"keywords:existence", "detectable_format:title", "punctuation:no_comma"},
        "startend:end_checker": set(),
        "change_case:capital_word_frequency": {"change_case:english_lowercase", "change_case:english_capital"},
        "change_case:english_capital": set(),
        "change_case:english_lowercase": {"change_case:english_capital"},
        "punctuation:no_comma": set(),
        "startend:quotation": {"detectable_format:title"},
    }
    closed = {i: {i} for i in INSTRUCTION_IDS}  # every instruction conflicts with itself
    for a, others in table.items():
        for b in others:
            closed[a].add(b)
            closed[b].add(a)
    return {i: frozenset(closed[i]) for i in INSTRUCTION_IDS}


#: For each id, the ids IFEval never puts in the same prompt with it (symmetric; includes itself).
CONFLICTS: dict[str, frozenset[str]] = _build_conflicts()


def conflicting(ids: Iterable[str]) -> list[tuple[str, str]]:
    """The pairs among ``ids`` (in their order, each pair once) that IFEval's conflict table forbids
    together, including an id given twice."""
    ids = list(ids)
    for i in ids:
        _known(i)
    return [(a, b) for n, a in enumerate(ids) for b in ids[n + 1 :] if b in CONFLICTS[a]]
