"""Paired bootstrap intervals of a score difference between two models, over questions.

Each question counts once: its score for a model is the mean of that model's scored judgments of
the question (every turn, every judge run). The questions both models have are resampled with
replacement ``n_boot`` times; the interval is the middle ``level`` of the resampled mean
differences (percentile bootstrap), seeded, so the same inputs give the same interval.
"""

from __future__ import annotations

from collections import defaultdict


def question_means(records: list[dict]) -> dict[str, dict[str, float]]:
    """``{model: {question_id: mean score}}`` over the scored judgments (score -1 left out).

    >>> question_means([
    ...     {"model": "a", "question_id": 81, "turn": 1, "score": 6},
    ...     {"model": "a", "question_id": 81, "turn": 2, "score": 8},
    ...     {"model": "a", "question_id": 82, "turn": 1, "score": -1},
    ... ])
    {'a': {'81': 7.0}}
    """
    scores: dict = defaultdict(lambda: defaultdict(list))
    for rec in records:
        if rec.get("score", -1) != -1:
            scores[rec.get("model")][str(rec["question_id"])].append(float(rec["score"]))
    return {m: {q: sum(v) / len(v) for q, v in qs.items()} for m, qs in scores.items()}


def paired_bootstrap(
    a: dict[str, float], b: dict[str, float], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict:
    """The mean of ``a[q] - b[q]`` over the questions both have, and its paired bootstrap interval.

    Identical scores give 0 and an interval of width 0; a constant shift gives that shift, exactly:

    >>> same = paired_bootstrap({"1": 5.0, "2": 7.0, "3": 2.0}, {"1": 5.0, "2": 7.0, "3": 2.0})
    >>> same["mean_diff"], same["low"], same["high"], same["n"]
    (0.0, 0.0, 0.0, 3)
    >>> shift = paired_bootstrap({"1": 6.5, "2": 8.5, "3": 3.5, "4": 9}, {"1": 5.0, "2": 7.0, "3": 2.0})
    >>> shift["mean_diff"], shift["low"], shift["high"], shift["n"]
    (1.5, 1.5, 1.5, 3)
    >>> paired_bootstrap({"1": 6.0}, {"2": 5.0})["n"]
    0
    """
    import numpy as np

    common = sorted(set(a) & set(b), key=str)
    out = {"n": len(common), "n_boot": n_boot, "seed": seed, "level": level}
    if not common:
        return {**out, "mean_diff": None, "low": None, "high": None, "excludes_zero": False}
    diffs = np.array([float(a[q]) - float(b[q]) for q in common])
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(n_boot, len(diffs)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = (round(float(x), 4) for x in np.percentile(means, [tail, 100 - tail]))
    return {
        **out,
        "mean_diff": round(float(diffs.mean()), 4),
        "low": low,
        "high": high,
        "excludes_zero": bool(low > 0 or high < 0),
    }
