"""What a comparison of its size can detect: the minimum detectable effect (MDE) at 80% power, two-sided
α = 0.05, and how many items a reference effect would need, estimated from the run's own variance.

Normal approximation throughout, the same one the bootstrap intervals rest on: a comparison whose
difference has standard error ``se`` detects a true difference of ``Z80 * se`` four times in five,
``Z80 = z(0.975) + z(0.80) ≈ 2.80``. Paired comparisons (:func:`paired_power`) take the per-cluster
paired differences as their unit (a question's or a conversation's mean difference, the unit the
bootstrap resamples), so the clustering is in the variance already and no design effect is applied on top.
Two datasets (:func:`two_sample`) are independent samples of sessions. With few units the normal
approximation is optimistic, as the percentile bootstrap is (a t-based MDE is larger: ×1.34 at 5
pairs, ×1.03 at 30).

>>> round(Z80, 4)
2.8016
>>> paired_power(1.0, 100, 0.3)  # sd of the paired differences 1 point, 100 questions
{'mde': 0.2802, 'effect': 0.3, 'needed': 88}
"""

from __future__ import annotations

import math
from statistics import NormalDist

ALPHA, POWER = 0.05, 0.80
Z_LEVEL = NormalDist().inv_cdf(1 - ALPHA / 2)  # 1.96: the half-width of a 95% interval, in standard errors
Z80 = Z_LEVEL + NormalDist().inv_cdf(POWER)

#: The reference effect for which the report says how many items it would need, by what is compared
#: (docs/experiment.md, "What a comparison can detect", says why each).
REFERENCE_EFFECTS = {
    "judged": 0.3,  # points of a 1-10 judge score: the paper's CaPO gain on MT-Bench++ (6.85 - 6.56)
    "verified": 0.05,  # 5 percentage points of instructions followed
    "heldout_loss": 0.05,  # nats per token of held-out real user turns
    "human_likeness": 0.05,  # AUC of telling a simulator's questions from real users' (0.5 to 1)
    "turns": 0.5,  # turns per session
    "context_dependent": 0.5,  # context-dependent follow-ups per session
    "context_share": 0.05,  # share of follow-ups that are context-dependent
    "user_words": 5.0,  # words per user message
    "assistant_words": 20.0,  # words per assistant message
}

#: Under this many units (on either side), an interval and what the comparison can detect are said to
#: be rough: the normal approximation, like the percentile bootstrap, is optimistic there.
ROUGH_UNDER = 30


def mde(se: float | None) -> float | None:
    """The smallest true difference detected with 80% power by a two-sided 5% test whose estimate
    has standard error ``se``.

    >>> round(mde(0.1), 4), mde(None)
    (0.2802, None)
    """
    return None if se is None else Z80 * se


def needed(unit_variance: float, effect: float) -> int | None:
    """How many units (pairs; or sessions per dataset, ``unit_variance`` then the two datasets'
    per-session variances summed) detect ``effect`` with 80% power: ``(Z80 * sd / effect)²``, rounded up.
    None when the variance is 0 (the run cannot say).

    >>> needed(1.0, 0.3), needed(0.0, 0.3)
    (88, None)
    """
    if not unit_variance or not effect:
        return None
    return math.ceil((Z80 / effect) ** 2 * unit_variance)


def paired_power(sd: float | None, n: int, effect: float) -> dict:
    """The MDE of a paired comparison over ``n`` clusters whose paired differences have sample
    standard deviation ``sd``, and the clusters ``effect`` needs. No MDE without a spread to
    estimate it from (fewer than 2 clusters, or every difference the same).

    >>> paired_power(0.0, 5, 0.05)
    {'mde': None, 'effect': 0.05, 'needed': None}
    """
    if not sd or n < 2:
        return {"mde": None, "effect": effect, "needed": None}
    return {"mde": round(mde(sd / math.sqrt(n)), 4), "effect": effect, "needed": needed(sd**2, effect)}


def two_sample(a: dict, b: dict, effect: float) -> dict:
    """The difference ``a - b`` of two independent estimates (``{"value", "se", "n", "sd"}``: ``sd``
    per unit, ``se`` of the estimate), its normal 95% interval, MDE, and the units per side that
    ``effect`` needs (at equal sizes).

    >>> r = two_sample({"value": 3.0, "se": 0.1, "n": 100, "sd": 1.0}, {"value": 2.5, "se": 0.1, "n": 100, "sd": 1.0}, 0.5)
    >>> r["diff"], r["low"], r["high"], r["excludes_zero"], r["mde"], r["needed"]
    (0.5, 0.2228, 0.7772, True, 0.3962, 63)
    """
    out = {"n": [a.get("n"), b.get("n")], "effect": effect}
    if a.get("value") is None or b.get("value") is None or a.get("se") is None or b.get("se") is None:
        return {**out, "diff": None, "low": None, "high": None, "excludes_zero": False, "mde": None, "needed": None}
    diff, se = a["value"] - b["value"], math.hypot(a["se"], b["se"])
    low, high = diff - Z_LEVEL * se, diff + Z_LEVEL * se
    return {
        **out,
        "diff": round(diff, 4),
        "low": round(low, 4),
        "high": round(high, 4),
        "excludes_zero": bool(low > 0 or high < 0),
        "mde": round(mde(se), 4) if se else None,
        "needed": needed(a["sd"] ** 2 + b["sd"] ** 2, effect),
    }
