"""Members answering one role's calls: the openai router's endpoints and the Ray executor's replicas
are the same thing to their caller, so it is here once. The member with the fewest conversations in
flight takes the next call, ties in turn (idle members share the work); a failing one is set aside,
for a while or until set back; each member's counts go into the usage in one format (:meth:`Pool.usage`):
what names it, ``requests`` (conversations sent to it, each attempt), ``ok``, ``failures`` (not
answered, any reason) and ``set_aside`` (times)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(eq=False)
class Member:
    in_flight: int = 0
    requests: int = 0
    ok: int = 0
    failures: int = 0
    set_aside: int = 0
    until: float = 0.0  # set aside until then, on the pool's clock (math.inf: until set back)

    def label(self) -> dict:
        """What names it in the usage (a url; a replica and its node)."""
        return {}

    def count(self, ok: int = 0, failed: int = 0) -> None:
        self.ok += ok
        self.failures += failed


class Pool:
    def __init__(self, members: list, clock: Callable[[], float] = time.monotonic):
        self.members = members
        self.clock = clock
        self._turn = 0  # where the next tie is broken

    def resting(self, member: Member) -> bool:
        return self.clock() < member.until

    def ready(self) -> list:
        return [m for m in self.members if not self.resting(m)]

    def pick(self, avoid: Member | None = None) -> Member | None:
        """The least busy member not set aside (nor ``avoid``, which just failed this call, while
        another is there), ties in turn; None when every one is set aside."""
        ready = self.ready()
        if len(ready) > 1 and avoid in ready:
            ready.remove(avoid)
        if not ready:
            return None
        n = len(self.members)
        i = min((self.members.index(m) for m in ready), key=lambda i: (self.members[i].in_flight, (i - self._turn) % n))
        self._turn = (i + 1) % n
        return self.members[i]

    def back_first(self) -> Member:
        return min(self.members, key=lambda m: m.until)

    def set_aside(self, member: Member, seconds: float = math.inf) -> None:
        member.set_aside += 1
        member.until = self.clock() + seconds

    def set_back(self, member: Member) -> None:
        member.until = 0.0

    @contextlib.contextmanager
    def sending(self, member: Member, n: int = 1) -> Iterator[Member]:
        """``n`` conversations in flight on ``member`` while the block runs."""
        member.requests += n
        member.in_flight += n
        try:
            yield member
        finally:
            member.in_flight -= n

    def usage(self) -> list[dict]:
        keys = ("requests", "ok", "failures", "set_aside")
        return [{**m.label(), **{k: getattr(m, k) for k in keys}} for m in self.members]
