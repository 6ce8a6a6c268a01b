"""JSON Lines in and out: the format every stage reads and writes.

- :func:`read_jsonl` streams records with their line numbers; a bad line is an error naming the
  file and line (or, with ``on_error="skip"``, is counted and skipped).
- :class:`AtomicWriter` writes ``OUT.tmp`` and renames it to ``OUT`` only on success, so a failed
  run never leaves a partial file that looks complete; :func:`write_text_atomic` does the same
  for a whole text (a manifest, a report). Every file Parrot writes whole goes through it.
- :class:`AppendWriter` appends and flushes record by record, for resumable jobs; it repairs a
  torn last line left by a crash before appending.

Both scrub the secrets in use (API keys, :func:`parrot.core.redact.scrub`) from every line they
write, and an OS error they raise names the file (a full disk at a write or an fsync names none
by itself), so the CLI can print it on one line.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parrot import ParrotError
from parrot.core.redact import Scrubber, redact

log = logging.getLogger("parrot")


def read_jsonl(
    path: str | Path, *, on_error: str = "raise", counts: dict | None = None, bad_bytes: str | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each non-empty line of ``path``.

    Every record must be a JSON object. With ``on_error="skip"`` bad lines are counted in
    ``counts["invalid_json"]`` and skipped; otherwise the first one raises a ParrotError.
    ``bad_bytes`` (default: as ``on_error``) does the same for a line that is not UTF-8:
    ``"raise"`` while skipping bad records stops at a file in another encoding.
    """
    path = Path(path)
    if not path.is_file():
        raise ParrotError(f"{path}: file not found")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:  # a BOM (as Windows editors write) on the first line is not part of the record
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                if (bad_bytes or on_error) == "skip":
                    if counts is not None:
                        counts["invalid_utf8"] = counts.get("invalid_utf8", 0) + 1
                    continue
                raise ParrotError(
                    f"{path}:{lineno}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                    "JSONL files must be UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                if on_error == "skip":
                    if counts is not None:
                        counts["invalid_json"] = counts.get("invalid_json", 0) + 1
                    continue
                raise ParrotError(
                    f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.pos + 1}); found {line.strip()[:80]!r}"
                ) from None
            if not isinstance(rec, dict):
                if on_error == "skip":
                    if counts is not None:
                        counts["not_an_object"] = counts.get("not_an_object", 0) + 1
                    continue
                raise ParrotError(f"{path}:{lineno}: expected a JSON object, found {type(rec).__name__}")
            yield lineno, rec


def read_json(path: str | Path) -> Any:
    """One JSON document (a stats.json, a trainer_state.json); a broken one is an error naming the
    file and line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ParrotError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None


def dumps(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


@contextmanager
def naming(path: str | Path):
    """Give an OSError raised inside that names no file (``write``, ``flush``, ``fsync`` on a full
    disk) the name ``path``."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


class AtomicWriter:
    """Write JSONL (or any text) to ``path`` through ``path.tmp``; renamed into place by :meth:`commit`.

    Used as a context manager, it commits on success and deletes the temporary file on error
    (a failed commit too: a full disk at the final flush leaves no ``.tmp`` behind).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        # the directories made here, deepest first: an aborted write removes them again
        self._made = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self._fh = self.tmp.open("w", encoding="utf-8")
        self._scrub = Scrubber()
        self.count = 0

    def write(self, record: Any) -> None:
        with naming(self.path):
            self._fh.write(self._scrub(dumps(record)) + "\n")
        self.count += 1

    def write_text(self, text: str) -> None:
        """Write ``text`` as it is (not a record: :attr:`count` is unchanged)."""
        with naming(self.path):
            self._fh.write(self._scrub(text))

    def commit(self) -> None:
        try:
            with naming(self.path):
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
                os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if not self._fh.closed:
            try:
                self._fh.close()
            except OSError:  # its buffer could not be flushed (a full disk): the file goes anyway
                pass
        self.tmp.unlink(missing_ok=True)
        for d in self._made:
            try:
                d.rmdir()
            except OSError:  # not empty (another writer's file): kept, with those above it
                break

    def __enter__(self) -> "AtomicWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through :class:`AtomicWriter`: all of it or, on any error,
    nothing (no ``.tmp`` left, the previous file untouched); return the path."""
    with AtomicWriter(path) as writer:
        writer.write_text(text)
    return writer.path


def repair_tail(path: Path) -> int:
    """Cut a torn last line (a crash mid-write) off ``path``; return the bytes removed. A last
    line that is a whole record and only lacks its newline (a hand-edited file) is kept."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        fh.seek(max(0, size - 1))
        if fh.read(1) == b"\n":
            return 0
        # Walk back to the last newline; everything after it is the last line.
        pos, keep = size, 0
        chunk = 65536
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            buf = fh.read(pos - start)
            i = buf.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        fh.seek(keep)
        if _is_record(fh.read(size - keep)):
            fh.seek(size)
            fh.write(b"\n")
            return 0
        fh.truncate(keep)
        return size - keep


def _is_record(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw.decode("utf-8-sig")), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


def lock_file(fh, path: Path, *, shared: bool = False) -> None:
    """An exclusive lock on the open file ``fh``, held until it is closed: a second run on the
    same output (launched twice by mistake) stops at once instead of duplicating records or
    deleting the first run's work. ``shared``: a reader's lock, which only a writer's excludes.
    ``path`` is the file the error names (the output, or the input)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        return
    try:
        fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        if shared:
            raise ParrotError(
                f"{path}: another process is writing it; wait for it to finish (or stop it), then run this again"
            ) from None
        raise ParrotError(
            f"{path}: another process is writing it, or reading it as an input (the same command running twice?); wait for it to finish or stop it"
        ) from None
    except OSError as e:  # a file system without locks (some NFS/Lustre mounts): go on unlocked
        if not shared:
            log.warning("%s: cannot lock it (%s); a second run on it would not be stopped", path, e)


class AppendWriter:
    """Append records to ``path`` with a flush (and fsync) after each one, for resumable jobs.

    ``redact``: records pass through :func:`parrot.core.redact.redact` first (failures files, whose
    records carry servers' error text). ``keep_empty=False``: a file left empty when the writer
    closes is removed (a failures file of a run that ended, or was stopped, with no failure).
    """

    def __init__(self, path: str | Path, *, fsync: bool = True, redact: bool = False, keep_empty: bool = True):
        self.path = Path(path)
        self._keep_empty = keep_empty
        self._redact = redact
        self._scrub = Scrubber()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        lock_file(self._fh, self.path)
        self.repaired_bytes = repair_tail(self.path)
        if self.repaired_bytes:
            log.warning(
                "%s: cut a torn last line (%d bytes, a record cut short by a crash) before appending",
                self.path,
                self.repaired_bytes,
            )
        self._fsync = fsync
        self.count = 0

    def write(self, record: Any) -> None:
        self.write_many([record])

    def write_many(self, records: list) -> None:
        """Append ``records`` in a single write (then flush, fsync): a killed process leaves all of
        them or none (a line torn by a power cut is cut off on the next open)."""
        if not records:
            return
        if self._redact:
            records = [redact(r) for r in records]
        with naming(self.path):
            self._fh.write("".join(self._scrub(dumps(r)) + "\n" for r in records))
            self._fh.flush()
            if self._fsync:
                os.fsync(self._fh.fileno())
        self.count += len(records)

    def close(self) -> None:
        if not self._fh.closed:
            with naming(self.path):
                if not self._keep_empty and self._fh.tell() == 0:
                    self.path.unlink(missing_ok=True)  # while the lock still holds it
                self._fh.close()

    def __enter__(self) -> "AppendWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.close()
        except OSError:
            if exc_type is None:
                raise
            # the error on the way out is the one to report (a full disk fails the close again)
