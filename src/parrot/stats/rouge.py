"""Self-ROUGE: how much the questions of a dataset repeat each other (lower = more diverse).

Definitions (also in ``docs/stats.md``):

* tokens: lower-cased ``\\w+`` runs of the text, the first ``max_tokens`` (default 128) only;
* LCS(a, b): length of the longest common subsequence of the two token lists;
* ROUGE-L F1(a, b) = 2·P·R / (P + R) with P = LCS/|a|, R = LCS/|b| (0 when LCS = 0);
* Self-ROUGE of a sample q_1..q_n = (1/n) Σ_i [ (1/(n-1)) Σ_{j≠i} ROUGE-L F1(q_i, q_j) ],
  i.e. the mean over all ordered pairs; F1 is symmetric, so each unordered pair is computed once.

>>> rouge_l_f1("the cat sat on the mat", "the cat lay on a mat")
0.6666666666666666
>>> self_rouge(["a b c", "a b c", "x y z"])
0.3333333333333333
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+")


def rouge_tokens(text: str, max_tokens: int = 128) -> list[str]:
    return _TOKEN.findall(text.lower())[:max_tokens]


def lcs_length(a: list, b: list) -> int:
    """LCS length, bit-parallel (Crochemore et al. 2001): one big-int step per token of ``b``.

    >>> lcs_length(list("ABCBDAB"), list("BDCABA"))
    4
    """
    if not a or not b:
        return 0
    if len(a) < len(b):
        a, b = b, a  # the longer sequence becomes the bit vector: fewer loop steps
    masks: dict = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _f1(lcs: int, la: int, lb: int) -> float:
    if lcs == 0:
        return 0.0
    p, r = lcs / la, lcs / lb
    return 2 * p * r / (p + r)


def rouge_l_f1(a: str | list, b: str | list) -> float:
    """ROUGE-L F1 of two texts (or token lists)."""
    ta = rouge_tokens(a) if isinstance(a, str) else a
    tb = rouge_tokens(b) if isinstance(b, str) else b
    return _f1(lcs_length(ta, tb), len(ta), len(tb))


def self_rouge(texts: list[str], max_tokens: int = 128) -> float | None:
    """Mean ROUGE-L F1 of each text against every other text of the list (None below 2 texts)."""
    toks = [rouge_tokens(t, max_tokens) for t in texts]
    toks = [t for t in toks if t]
    n = len(toks)
    if n < 2:
        return None
    total = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            total += _f1(lcs_length(toks[i], toks[j]), len(toks[i]), len(toks[j]))
    return 2 * total / (n * (n - 1))
