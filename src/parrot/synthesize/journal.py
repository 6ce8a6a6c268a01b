"""``<output>.inflight.jsonl``: every accepted message of the sessions in flight, so that a
resumed run rebuilds them (a crash loses at most the calls being generated)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from parrot.core.jsonl import AtomicWriter, read_jsonl

if TYPE_CHECKING:
    from parrot.synthesize.session import Session


def journal_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".inflight.jsonl")


def restore_journal(path: Path, done: set[int]) -> dict[int, list[tuple[int, dict]]]:
    """Per session index, the messages appended so far as ``(position, message)``."""
    states: dict[int, list[tuple[int, dict]]] = {}
    if not path.exists():
        return states
    for _, rec in read_jsonl(path, on_error="skip"):
        i = rec.get("i")
        if not isinstance(i, int) or i in done:
            continue
        if rec.get("reset"):
            states.pop(i, None)
        elif isinstance(rec.get("n"), int) and isinstance(rec.get("m"), dict):
            states.setdefault(i, []).append((rec["n"], rec["m"]))
    return states


def apply_journal(s: Session, entries: list[tuple[int, dict]]) -> None:
    for pos, msg in entries:
        if pos <= len(s.messages):  # a position beyond the end would be a gap: ignore it
            del s.messages[pos:]
            s.messages.append(msg)
            s.restored = True


def compact_journal(path: Path, sessions: list[Session]) -> None:
    """Rewrite the journal with only the sessions still in flight (it would grow without end)."""
    with AtomicWriter(path) as w:
        for s in sessions:
            if s.restored:
                for pos, msg in enumerate(s.messages):
                    w.write({"i": s.index, "n": pos, "m": msg})
