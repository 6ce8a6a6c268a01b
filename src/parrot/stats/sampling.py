"""Bounded, seeded samples of a stream: what keeps ``stats`` memory flat as the input grows.

>>> r = Reservoir(3, seed=0)
>>> for i in range(1000):
...     r.add(i)
>>> len(r.items), r.seen
(3, 1000)
"""

from __future__ import annotations

import bisect
import math
import random
from typing import Any


class Reservoir:
    """Algorithm R: a uniform sample of at most ``size`` items from a stream of unknown length."""

    def __init__(self, size: int, seed: int = 0):
        self.size = max(0, int(size))
        self.items: list[Any] = []
        self.seen = 0
        self._rng = random.Random(seed)

    def add(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            return
        j = self._rng.randrange(self.seen)
        if j < self.size:
            self.items[j] = item

    @property
    def sampled(self) -> bool:
        """True when the sample holds fewer items than the stream had."""
        return self.seen > len(self.items)


class LogHistogram:
    """Counts of non-negative integers in log-spaced bins (exact mean, approximate quantiles).

    Bin edges are 0, 1, 2, ... 15, then grow by ~12% each: about 100 bins cover 0..10^6
    whatever the stream length.

    >>> h = LogHistogram()
    >>> for v in [1, 2, 3, 100]:
    ...     h.add(v)
    >>> h.count, h.mean
    (4, 26.5)
    """

    EDGES: list[int] = []

    def __init__(self) -> None:
        if not LogHistogram.EDGES:
            edges = list(range(16))
            while edges[-1] < 10_000_000:
                edges.append(max(edges[-1] + 1, int(math.ceil(edges[-1] * 1.12))))
            LogHistogram.EDGES = edges
        self.counts = [0] * (len(self.EDGES) + 1)
        self.count = 0
        self.total = 0
        self.max = 0

    def add(self, value: int) -> None:
        self.counts[bisect.bisect_right(self.EDGES, value) - 1] += 1
        self.count += 1
        self.total += value
        self.max = max(self.max, value)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """The lower edge of the bin holding the q-quantile (exact below 16)."""
        if not self.count:
            return 0.0
        target = q * (self.count - 1)
        run = 0
        for i, c in enumerate(self.counts):
            run += c
            if run > target:
                return float(self.EDGES[min(i, len(self.EDGES) - 1)])
        return float(self.max)

    def to_dict(self) -> dict:
        """Non-empty bins as ``{"edges": [lower...], "counts": [...]}`` (for plots and JSON)."""
        pairs = [(self.EDGES[i], c) for i, c in enumerate(self.counts[:-1]) if c]
        return {"edges": [p[0] for p in pairs], "counts": [p[1] for p in pairs]}
