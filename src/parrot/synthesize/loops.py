"""The two ways a run takes its sessions through their calls, by the same rules
(:class:`~parrot.synthesize.session.SessionRules`) into the same writer
(:class:`~parrot.synthesize.writer.SessionWriter`). ``models`` maps each role to its backend."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from parrot.backends import Backend
from parrot.synthesize.session import Session, SessionRules
from parrot.synthesize.writer import SessionWriter


async def run_batched(
    sessions: Iterable[Session], window: int, rules: SessionRules, writer: SessionWriter, models: dict[str, Backend]
) -> None:
    """Turn-synchronous (local backends): of ``window`` live sessions, all that must ask are sent
    to the asker in one batch, then all that must be answered to the assistant in one; ended
    sessions are written and replaced from ``sessions``."""
    live: list[Session] = []
    pending = iter(sessions)
    while True:
        for s in pending:
            live.append(s)
            if len(live) >= window:
                break
        if not live:
            return
        for role in ("asker", "assistant"):
            todo = [s for s in live if not rules.is_over(s) and s.next_role == role]
            if not todo:
                continue
            calls = [rules.next_call(s) for s in todo]
            completions = await models[role].agenerate([c.messages for c in calls], [c.params for c in calls])
            for s, c in zip(todo, completions):
                writer.add_call(s, role, c, rules.apply(s, role, c))
        still = []
        for s in live:
            if rules.is_over(s):
                writer.add_session(s, rules.record(s))
            else:
                still.append(s)
        live = still


async def run_concurrent(
    sessions: Iterable[Session], window: int, rules: SessionRules, writer: SessionWriter, models: dict[str, Backend]
) -> None:
    """One coroutine per session, ``window`` sessions at a time (HTTP backends); a failed call
    waits :meth:`~parrot.synthesize.session.SessionRules.retry_delay`, then is tried again."""
    pending = iter(sessions)

    async def worker():
        for s in pending:  # a shared iterator: each session is taken by exactly one worker
            while not rules.is_over(s):
                call = rules.next_call(s)
                [c] = await models[call.role].agenerate([call.messages], call.params)
                writer.add_call(s, call.role, c, rules.apply(s, call.role, c))
                if not c.ok and not rules.is_over(s):  # the backend gave up: wait, then again
                    await asyncio.sleep(rules.retry_delay(s))
            writer.add_session(s, rules.record(s))

    await asyncio.gather(*(worker() for _ in range(max(1, window))))
