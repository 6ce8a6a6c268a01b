"""Bootstrap intervals: a score difference between two models, paired over questions; a share over clusters;
any statistic of one or two samples (:func:`bootstrap_cell`).

Each question counts once: its score for a model is the mean of that model's scored judgments of
the question (every turn, every judge run). The questions both models have are resampled with
replacement ``n_boot`` times; the interval is the middle ``level`` of the resampled mean
differences (percentile bootstrap), seeded, so the same inputs give the same interval.
"""

from __future__ import annotations

import functools
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
    """The mean of ``a[q] - b[q]`` over the questions both have, its paired bootstrap interval, and
    ``sd``, the sample standard deviation of the differences (None under 2 questions): what
    :func:`parrot.report.power.paired_power` reads a comparison's minimum detectable effect from.

    Identical scores give 0 and an interval of width 0; a constant shift gives that shift, exactly:

    >>> same = paired_bootstrap({"1": 5.0, "2": 7.0, "3": 2.0}, {"1": 5.0, "2": 7.0, "3": 2.0})
    >>> same["mean_diff"], same["low"], same["high"], same["n"]
    (0.0, 0.0, 0.0, 3)
    >>> shift = paired_bootstrap({"1": 6.5, "2": 8.5, "3": 3.5, "4": 9}, {"1": 5.0, "2": 7.0, "3": 2.0})
    >>> shift["mean_diff"], shift["low"], shift["high"], shift["n"], shift["sd"]
    (1.5, 1.5, 1.5, 3, 0.0)
    >>> paired_bootstrap({"1": 6.0}, {"2": 5.0})["n"]
    0
    """
    import numpy as np

    common = sorted(set(a) & set(b), key=str)
    out = {"n": len(common), "n_boot": n_boot, "seed": seed, "level": level}
    if not common:
        return {**out, "mean_diff": None, "low": None, "high": None, "excludes_zero": False, "sd": None}
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
        "sd": round(float(diffs.std(ddof=1)), 6) if len(diffs) > 1 else None,
    }


def cluster_bootstrap(
    cells: dict[str, tuple[int, int]], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict:
    """A share over clusters (conversations) and its bootstrap interval: ``cells[c] = (hits, n)``;
    the share is ``sum(hits) / sum(n)``, and the clusters are resampled whole, so instructions of one
    conversation (which go together) are not counted as independent.

    >>> r = cluster_bootstrap({"a": (2, 2), "b": (1, 2), "c": (0, 1)})
    >>> r["mean"], r["n"], r["items"], r["low"] <= r["mean"] <= r["high"]
    (0.6, 3, 5, True)
    >>> cluster_bootstrap({"a": (3, 3), "b": (1, 1)})["low"]
    1.0
    >>> cluster_bootstrap({})["mean"] is None
    True
    """
    import numpy as np

    keys = sorted(cells, key=str)
    hits = np.array([cells[k][0] for k in keys], dtype=float)
    n = np.array([cells[k][1] for k in keys], dtype=float)
    out = {"n": len(keys), "items": int(n.sum()), "n_boot": n_boot, "seed": seed, "level": level}
    if not keys or not n.sum():
        return {**out, "mean": None, "low": None, "high": None}
    times = _resample_counts(len(keys), n_boot, seed)  # how often each cluster is drawn, per resample
    shares = (times @ hits) / np.maximum(times @ n, 1)
    tail = (1 - level) / 2 * 100
    low, high = (round(float(x), 4) for x in np.percentile(shares, [tail, 100 - tail]))
    return {**out, "mean": round(float(hits.sum() / n.sum()), 4), "low": low, "high": high}


@functools.lru_cache(maxsize=64)
def _resample_counts(k: int, n_boot: int, seed: int):
    """``n_boot`` resamples of ``k`` clusters with replacement (seeded), as draw counts per cluster:
    the same for every measure over ``k`` clusters, so it is drawn once."""
    import numpy as np

    picks = np.random.default_rng(seed).integers(0, k, size=(n_boot, k))
    times = np.zeros((n_boot, k))
    np.add.at(times, (np.arange(n_boot)[:, None], picks), 1)
    times.flags.writeable = False
    return times


def share_cell(cells: list[tuple[float, float]], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """A ratio over clusters as an interval cell: ``cells[i] = (hits, n)`` of cluster ``i`` (a
    session), ``value = sum(hits) / sum(n)`` and the :func:`cluster_bootstrap` interval, clusters
    resampled whole. With ``n = 1`` everywhere it is a mean over clusters (turns per session).

    >>> c = share_cell([(1, 1), (0, 1), (1, 1), (1, 1)])
    >>> c["value"], c["n"], c["low"] <= c["value"] <= c["high"]
    (0.75, 4, True)
    >>> share_cell([(3, 1), (3, 1)])["low"], share_cell([])["value"]
    (3.0, None)
    """
    r = cluster_bootstrap({i: c for i, c in enumerate(cells)}, n_boot=n_boot, seed=seed, level=level)
    total = sum(n for _, n in cells)
    value = sum(h for h, _ in cells) / total if total else None
    return {"value": value, "low": r["low"], "high": r["high"], "n": len(cells), "n_boot": n_boot, "level": level}


def bootstrap_cell(statistic, *samples: list, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """``statistic(*samples)`` as an interval cell: ``{"value", "low", "high", "n"}``, the interval the
    middle ``level`` of the statistic over ``n_boot`` resamples (percentile bootstrap, seeded), each
    sample resampled with replacement on its own (two samples: the simulator's sessions and the
    real ones, independently). ``n`` is the size of the first sample (``sizes``: of each). Resamples
    where the statistic is None are left out; no interval when the statistic is None.

    >>> c = bootstrap_cell(lambda xs: max(xs), [1, 1, 1])
    >>> c["value"], c["low"], c["high"], c["n"]
    (1, 1.0, 1.0, 3)
    >>> c = bootstrap_cell(lambda a, b: sum(a) / len(a) - sum(b) / len(b), [1, 2, 3], [0, 1])
    >>> c["value"], c["sizes"], c["low"] <= c["value"] <= c["high"]
    (1.5, [3, 2], True)
    """
    import numpy as np

    value = statistic(*samples)
    out = {"value": value, "low": None, "high": None, "n": len(samples[0]), "n_boot": n_boot, "level": level}
    if len(samples) > 1:
        out["sizes"] = [len(s) for s in samples]
    if value is None or not all(len(s) for s in samples):
        return out
    rng = np.random.default_rng(seed)
    drawn = [rng.integers(0, len(s), size=(n_boot, len(s))) for s in samples]
    values = [statistic(*([s[i] for i in d[b]] for s, d in zip(samples, drawn))) for b in range(n_boot)]
    values = [v for v in values if v is not None]
    if values:
        tail = (1 - level) / 2 * 100
        out["low"], out["high"] = (round(float(x), 4) for x in np.percentile(values, [tail, 100 - tail]))
    return out
