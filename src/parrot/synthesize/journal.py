"""``<output>.inflight.jsonl``: every accepted message of the sessions in flight, so that a
resumed run rebuilds them (a crash loses at most the calls being generated). The writer
(:class:`~parrot.synthesize.writer.SessionWriter`) appends ``{"i": index, "n": position, "m":
message}`` for each message, ``{"i": index, "n": position, "again": k, "redraws": {reason: n}}``
for a question drawn again (the ``k``-th time at that position; the session's redraws so far), and
``{"i": index, "reset": true}`` for a session to start afresh."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from parrot.core.jsonl import AtomicWriter, read_jsonl

if TYPE_CHECKING:
    from parrot.synthesize.session import Session


def journal_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".inflight.jsonl")


def restore_sessions(path: Path, to_run: list[int], open_session: Callable[[int], Session]) -> dict[int, Session]:
    """The sessions of ``to_run`` that the journal holds messages of, opened and rebuilt from
    them, with their redraws (the next draw at a position is the one after the last journaled);
    the journal is rewritten to hold only those (it would grow without end)."""
    entries: dict[int, list[tuple[int, dict]]] = {}  # index -> (position, message), in order
    redrawn: dict[int, dict] = {}  # index -> the last redraw entry
    wanted = set(to_run)
    for _, rec in read_jsonl(path, on_error="skip") if path.exists() else ():
        i = rec.get("i")
        if not isinstance(i, int) or i not in wanted:
            continue
        if rec.get("reset"):
            entries.pop(i, None)
            redrawn.pop(i, None)
        elif isinstance(rec.get("n"), int) and isinstance(rec.get("m"), dict):
            entries.setdefault(i, []).append((rec["n"], rec["m"]))
        elif (
            isinstance(rec.get("n"), int) and isinstance(rec.get("again"), int) and isinstance(rec.get("redraws"), dict)
        ):
            redrawn[i] = rec
            entries.setdefault(i, [])
    sessions = {i: open_session(i) for i in to_run if i in entries}
    with AtomicWriter(path) as journal:
        for s in sessions.values():
            rebuilt = False
            for pos, msg in entries[s.index]:
                if pos <= len(s.messages):  # a position beyond the end would be a gap: ignore it
                    s.messages[pos:] = [msg]
                    rebuilt = True
            for pos, msg in enumerate(s.messages if rebuilt else []):
                journal.write({"i": s.index, "n": pos, "m": msg})
            last = redrawn.get(s.index)
            if last is not None and last["n"] <= len(s.messages):
                s.redraws = dict(last["redraws"])
                s.drawn_again = last["again"] if last["n"] == len(s.messages) else 0
                journal.write(last)
    return sessions
