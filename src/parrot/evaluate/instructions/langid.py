"""langdetect's verdict, computed about ten times faster and identically.

IFEval checks a response's language with ``langdetect`` (Shuyo's n-gram profiles). A call costs
~15 ms in pure Python, which alone would spend a 10,000-response verification budget, so this module
runs the same algorithm on the same profiles (loaded from the installed ``langdetect``):

1. The text as ``Detector.append`` keeps it: URLs and e-mail addresses blanked, Vietnamese
   diacritics composed, cut at 10,000 characters, runs of spaces made one; then
   ``Detector.cleaning_text`` (Latin letters dropped when other scripts outnumber them twice).
2. Its n-grams (n = 1..3) as ``Detector._extract_ngrams`` lists them, with ``NGram.normalize``
   applied by a translation table, word by word (the list of a word is cached: words repeat).
3. Seven trials of the same seeded random walk (``random.Random`` seeded with the factory's seed,
   the same ``gauss`` and ``choice`` draws in the same order), each updating the 55 language
   probabilities with numpy instead of a Python loop. Every step is the same IEEE operation as
   langdetect's (an elementwise product; a sequential sum; an elementwise division), so the
   probabilities are bit for bit the same and so is the verdict (``tests/test_instructions.py``
   compares the two on texts in many languages and scripts).

:func:`detect` returns the language code, or None where langdetect raises (no features in the text).
"""

from __future__ import annotations

import functools
import random
import re

SEED = 0  # langdetect's DetectorFactory.seed for a reproducible verdict


@functools.cache
def _model():
    """langdetect's profiles and constants, with the normalization as a translation table."""
    import numpy as np
    from langdetect.detector import Detector
    from langdetect.detector_factory import DetectorFactory, init_factory
    from langdetect.utils.ngram import NGram

    DetectorFactory.seed = SEED
    init_factory()
    from langdetect import detector_factory

    factory = detector_factory._factory
    table = {c: NGram.normalize(chr(c)) for c in range(0x10000)}
    table = {c: n for c, n in table.items() if n != chr(c)}
    return {
        "np": np,
        "probs": factory.word_lang_prob_map,
        "langs": list(factory.langlist),
        "table": table,
        "normalize_vi": NGram.normalize_vi,
        "url": Detector.URL_RE,
        "vectors": {},
        "mail": Detector.MAIL_RE,
        "D": Detector,
    }


_SPACES = re.compile(" +")
_LATIN = re.compile("[A-z]")  # langdetect's 'A' <= ch <= 'z' (the six signs between Z and a included)
_NON_LATIN = re.compile("[\u0300-\u1dff\u1f00-\U0010ffff]")  # >= U+0300, not Latin Extended Additional


def _kept_text(text: str, m: dict) -> str:
    """``Detector.append`` then ``Detector.cleaning_text``."""
    text = m["url"].sub(" ", text)
    text = m["mail"].sub(" ", text)
    text = m["normalize_vi"](text)
    text = _SPACES.sub(" ", text[:10000])
    if len(_LATIN.findall(text)) * 2 < len(_NON_LATIN.findall(text)):
        text = _LATIN.sub("", text)
    return text


@functools.lru_cache(maxsize=1 << 18)
def _word_ngrams(word: str, spaced: bool) -> tuple[str, ...]:
    """The n-grams ``NGram`` yields for one normalized word (``spaced``: a space follows it)."""
    probs = _model()["probs"]
    grams, capital, out = " ", False, []
    for ch in word + (" " if spaced else ""):
        last = grams[-1]
        if last == " ":
            grams, capital = " ", False
        elif len(grams) >= 3:
            grams = grams[1:]
        grams += ch
        if ch.isupper():
            capital = capital or last.isupper()
        else:
            capital = False
        if capital:
            continue
        for n in (1, 2, 3):
            if len(grams) < n:
                break
            gram = grams[-n:]
            if gram != " " and gram in probs:
                out.append(gram)
    return tuple(out)


def ngrams(text: str) -> list[str]:
    """``Detector._extract_ngrams`` of ``text`` after append and cleaning."""
    m = _model()
    parts = _kept_text(text, m).translate(m["table"]).split(" ")
    out: list[str] = []
    last = len(parts) - 1
    for i, word in enumerate(parts):
        if word:
            out.extend(_word_ngrams(word, i < last))
    return out


def detect(text: str) -> str | None:
    """langdetect's ``detect(text)`` with the factory seeded (None where it finds no feature)."""
    return _walk(tuple(ngrams(text)))


@functools.lru_cache(maxsize=4096)
def _walk(grams: tuple[str, ...]) -> str | None:
    """The verdict from the n-grams alone: texts that differ only where langdetect sees no letter
    (IFEval's loose variants without ``*``, most of the time) are decided once."""
    m = _model()
    np, D = m["np"], m["D"]
    if not grams:
        return None
    vectors, unique = m["vectors"], sorted(set(grams))
    for g in set(unique) - vectors.keys():
        vectors[g] = np.array(m["probs"][g])
    index = {g: k for k, g in enumerate(unique)}
    ids = [index[g] for g in grams]  # random.choice(grams) is grams[_randbelow(len)]: draw that, look up by id
    rows = [vectors[g] for g in unique]
    n_langs, n = len(m["langs"]), len(grams)
    langprob = np.zeros(n_langs)
    rng = random.Random()
    rng.seed(SEED)
    draw = rng._randbelow
    for _ in range(7):  # Detector.n_trial
        prob = np.full(n_langs, 1.0 / n_langs)
        alpha = D.ALPHA_DEFAULT + rng.gauss(0.0, 1.0) * D.ALPHA_WIDTH
        weight = alpha / D.BASE_FREQ
        factors: list = [None] * len(unique)  # weight + p(gram | language), made as the walk meets each gram
        i, steps = 0, 1  # langdetect checks for convergence after step 0, then after every 5 steps
        while True:
            for _ in range(steps):
                k = ids[draw(n)]
                factor = factors[k]
                if factor is None:
                    factor = factors[k] = weight + rows[k]
                prob *= factor
            prob /= np.cumsum(prob)[-1]  # Python's sum(): left to right
            if prob.max() > D.CONV_THRESHOLD or i >= D.ITERATION_LIMIT:
                break
            steps = 5
            i += steps
        langprob += prob / 7
    best = int(np.argmax(langprob))  # the first of equals, as langdetect's stable sort keeps it
    return m["langs"][best] if langprob[best] > D.PROB_THRESHOLD else "unknown"
