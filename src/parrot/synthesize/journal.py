"""``<output>.inflight.jsonl``: every accepted message of the sessions in flight, so that a
resumed run rebuilds them (a crash loses at most the calls being generated). The writer
(:class:`~parrot.synthesize.writer.SessionWriter`) appends ``{"i": index, "n": position, "m":
message}`` for each message, and ``{"i": index, "reset": true}`` for a session to start afresh."""

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
    them; the journal is rewritten to hold only those (it would grow without end)."""
    entries: dict[int, list[tuple[int, dict]]] = {}  # index -> (position, message), in order
    wanted = set(to_run)
    for _, rec in read_jsonl(path, on_error="skip") if path.exists() else ():
        i = rec.get("i")
        if not isinstance(i, int) or i not in wanted:
            continue
        if rec.get("reset"):
            entries.pop(i, None)
        elif isinstance(rec.get("n"), int) and isinstance(rec.get("m"), dict):
            entries.setdefault(i, []).append((rec["n"], rec["m"]))
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
    return sessions
