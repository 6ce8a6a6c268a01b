"""Per-session sums that give the data table's compared metrics a standard error over sessions, in
one streaming pass and flat memory: for each session its turns, context-dependent follow-ups,
follow-ups, and user and assistant messages and words; the run keeps their sums, sums of squares
and the cross sums a ratio needs (exact integers).

A mean over sessions (turns per session) has the usual standard error. A ratio over messages
(words per user message, the context-dependent share of follow-ups) is clustered by session: its
standard error is the linearised one (the delta method; the cluster-robust standard error of a
mean over messages with sessions as clusters), so the messages of one session are not counted as
independent.

>>> m = SessionMoments()
>>> for turns, dep in [(3, 1), (4, 2), (2, 0)]:
...     m.add(turns=turns, dependent=dep, followups=turns - 1)
>>> c = estimate(m.to_dict(), "turns")
>>> c["value"], c["n"], round(c["sd"], 4)
(3.0, 3, 1.0)
>>> estimate(m.to_dict(), "context_share")["value"]
0.5
"""

from __future__ import annotations

import math
from fractions import Fraction

#: The per-session values summed.
VALUES = ("turns", "dependent", "followups", "user_messages", "user_words", "assistant_messages", "assistant_words")

#: The compared metrics: a mean over sessions (numerator only) or a ratio of two sums over sessions.
METRICS = {
    "turns": ("turns", None),
    "context_dependent": ("dependent", None),
    "context_share": ("dependent", "followups"),
    "user_words": ("user_words", "user_messages"),
    "assistant_words": ("assistant_words", "assistant_messages"),
}

_PRODUCTS = sorted({(v, v) for v in VALUES} | {(y, x) for y, x in METRICS.values() if x})


class SessionMoments:
    """Sums over sessions of each value, its square, and the ratio metrics' cross products."""

    def __init__(self) -> None:
        self.n = 0
        self.sums = dict.fromkeys(VALUES, 0)
        self.products = dict.fromkeys(_PRODUCTS, 0)

    def add(self, **values: int) -> None:
        """One session's values (a value not given counts 0)."""
        self.n += 1
        for k, v in values.items():
            self.sums[k] += v
        for a, b in self.products:
            self.products[a, b] += values.get(a, 0) * values.get(b, 0)

    def to_dict(self) -> dict:
        """As stats.json holds it: ``{"n", "sums": {value: sum}, "products": {"a*b": sum}}``."""
        return {
            "n": self.n,
            "sums": dict(self.sums),
            "products": {f"{a}*{b}": s for (a, b), s in self.products.items()},
        }


def estimate(moments: dict, metric: str) -> dict:
    """A metric of :data:`METRICS` over the sessions: ``{"value", "se", "sd", "n"}``, ``sd`` the
    per-session standard deviation (of the value, or of a ratio's linearised value ``(y - R x) / mean x``)
    and ``se = sd / sqrt(n)``; None where the sessions cannot give it (fewer than 2, no denominator)."""
    n, sums, prod = moments["n"], moments["sums"], moments["products"]
    y, x = METRICS[metric]
    out = {"value": None, "se": None, "sd": None, "n": n}
    if not n or (x and not sums[x]):
        return out
    # exact rationals: a million sessions of long messages would cancel away a float's digits
    if x is None:
        value = Fraction(sums[y], n)
        squares = prod[f"{y}*{y}"] - value * sums[y]  # the sum of (y_i - mean)^2
        scale = Fraction(1)
    else:
        value = Fraction(sums[y], sums[x])
        squares = prod[f"{y}*{y}"] - 2 * value * prod[f"{y}*{x}"] + value**2 * prod[f"{x}*{x}"]
        scale = Fraction(sums[x], n)  # the mean denominator per session
    out["value"] = float(value)
    if n >= 2:
        sd = math.sqrt(squares / (n - 1)) / float(scale)
        out.update(sd=sd, se=sd / math.sqrt(n))
    return out
