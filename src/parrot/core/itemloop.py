"""The shared loop: items -> model calls -> records, durable and resumable.

Stages that call a model once or a few times per item (answering a benchmark, judging, writing
CaPO negatives) describe the work for one item as a coroutine and hand it to :func:`run_items`.
It keeps a bounded number of items in flight (local backends coalesce concurrent calls into
batches, HTTP backends get concurrent requests), appends each finished record to the output
with a flush, and records failures in ``<output>.failures.jsonl`` with the reason. A failed item
is not in the output, so ``--resume`` retries it; an item whose id is already in the output is
skipped, so nothing is done twice. At the end the failures file holds exactly the failures that
still stand (:func:`settle_failures`). A stage that appends to an output runs holding its lock
(:func:`locks_output`): a second run on it stops before it deletes, loads or writes anything.

The work for an item usually awaits a backend (``await backend.agenerate(...)``); here it is
plain Python:

>>> import tempfile
>>> async def work(item):
...     if not item["question"]:
...         raise ItemFailed("empty_question")
...     return {"id": item["id"], "answer": item["question"].upper()}
>>> items = [{"id": 1, "question": "why?"}, {"id": 2, "question": ""}]
>>> with tempfile.TemporaryDirectory() as d:
...     counts = run_items(items, work, output=f"{d}/out.jsonl", key=lambda item: item["id"])
...     print(open(f"{d}/out.jsonl").read(), end="")
...     print(open(f"{d}/out.jsonl.failures.jsonl").read().count("empty_question"))
{"id":1,"answer":"WHY?"}
1
>>> counts["written"], counts["failed:empty_question"]
(1, 1)
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parrot import ParrotError
from parrot.core.jsonl import AppendWriter, AtomicWriter, lock_file, read_jsonl
from parrot.core.log import progress
from parrot.core.manifest import manifest_path, read_manifest
from parrot.core.redact import redact


class ItemFailed(Exception):
    """Raised by a work coroutine: the item is recorded as failed with ``reason`` (a short key
    counted in the manifest) and ``detail`` (kept in the failures file)."""

    def __init__(self, reason: str, detail: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def failures_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".failures.jsonl")


def failures_writer(output: str | Path) -> AppendWriter:
    """The appender of ``<output>.failures.jsonl``: its records are redacted (a server's error
    text can echo the request's key)."""
    return AppendWriter(failures_path(output), fsync=False, redact=True)


def _same_key(key: Any) -> str:
    """A failure's key as the file holds it and as a run holds it (tuples read back as lists)."""
    return json.dumps(key, sort_keys=True, default=str)


def settle_failures(output: str | Path, settled: Callable[[dict], bool], key: str = "key") -> int:
    """Rewrite ``<output>.failures.jsonl`` to hold the failures that still stand, so that it
    always matches the output; return how many stand.

    Per ``record[key]`` the last record stands (a retry that failed again replaces the one
    before it), unless ``settled(record)`` says the item is done now (it is in the output). With
    none left the file is removed.
    """
    path = failures_path(output)
    if not path.exists():
        return 0
    last: dict = {}
    lines = 0
    for lineno, rec in read_jsonl(path, on_error="skip"):
        lines += 1
        k = rec.get(key)
        last[lineno if k is None else _same_key(k)] = (lineno, rec)  # no key: each record stands alone
    standing = [rec for _, rec in sorted(last.values(), key=lambda x: x[0]) if not settled(rec)]
    if not standing:
        path.unlink()
    elif len(standing) != lines:
        with AtomicWriter(path) as out:
            for rec in standing:
                out.write(rec)
    return len(standing)


def lock_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".lock")


@contextmanager
def output_lock(output: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<output>.lock`` while the block runs: a second run on the same
    output (``--overwrite`` or ``--resume`` included) stops with an error naming ``output``
    before it deletes, starts or writes anything. The lock file is never deleted, so every run
    locks the same file; the lock goes with the process, however it ends."""
    output = Path(output)
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        lock_file(fh, output)
        yield


def locks_output(stage: Callable) -> Callable:
    """Decorate a stage function ``stage(cfg, ...)``: it runs holding :func:`output_lock` on
    ``cfg.output`` from its first line to its last."""

    @functools.wraps(stage)
    def run(cfg, *args, **kwargs):
        with output_lock(cfg.output):
            return stage(cfg, *args, **kwargs)

    return run


def remove_output(output: str | Path) -> None:
    """Start over: delete ``output`` with its failures file and manifest (those that exist)."""
    output = Path(output)
    for path in (output, failures_path(output), manifest_path(output)):
        path.unlink(missing_ok=True)


def start_output(
    output: str | Path,
    *,
    resume: bool,
    overwrite: bool,
    force: bool,
    settings_changed: Callable[[], str | None],
    also: tuple[Path, ...] = (),
) -> bool:
    """The ``--resume`` / ``--overwrite`` / ``--force`` rules for an output that a run appends to;
    True when resuming onto it.

    ``also``: files that belong to the output (a journal). ``settings_changed()`` says how the
    existing output's settings differ, or None when they are the same.
    """
    output = Path(output)
    if not any(p.exists() for p in (output, *also)) or overwrite:
        remove_output(output)  # with --overwrite, or a stale failures file or manifest
        for path in also:
            path.unlink(missing_ok=True)
        return False
    if not resume:
        raise ParrotError(f"{output}: already exists; pass --resume to continue it or --overwrite to start over")
    why = settings_changed()
    if why and not force:
        raise ParrotError(
            f"{output}: was written with different settings ({why}); --resume needs the same "
            "settings: pass --overwrite to start over, or --force to continue anyway"
        )
    return True


def check_record_settings(output: str | Path, settings: dict, stage: str) -> None:
    """For outputs that runs add to (``eval answer``, ``eval judge``): refuse to add records made
    with other ``settings`` (the ones that change what a record says) than those already there."""
    output = Path(output)
    old = (read_manifest(output) or {}).get("record_settings")
    if not output.exists() or old is None:
        return
    settings = redact(json.loads(json.dumps(settings)))  # as the manifest holds them (tuples → lists)
    diff = [f"{k} {old.get(k)!r} → {v!r}" for k, v in settings.items() if old.get(k) != v]
    if diff:
        raise ParrotError(
            f"{output}: holds {stage} records made with other settings ({'; '.join(diff)}); "
            "pass --overwrite to start over, or write to another file"
        )


def done_keys(output: str | Path, key: str | Callable[[dict], Any] = "id") -> set:
    """Keys of the records already in ``output`` (empty if it does not exist)."""
    output = Path(output)
    if not output.exists():
        return set()
    get = key if callable(key) else (lambda r: r.get(key))
    return {get(r) for _, r in read_jsonl(output, on_error="skip")}


def run_items(
    items: Iterable[Any],
    work: Callable[[Any], Awaitable[dict | list[dict]]],
    *,
    output: str | Path,
    key: Callable[[Any], Any] | None = None,
    done: set | None = None,
    concurrency: int = 8,
    desc: str = "",
    total: int | None = None,
    unit: str = "item",
    final_reasons: tuple[str, ...] = (),
) -> Counter:
    """Run ``work`` over ``items`` and append its records to ``output``; return counts.

    ``key(item)`` identifies an item; items whose key is in ``done`` are skipped (count
    ``skipped_done``). ``work`` returns one record or a list of records. Counts: ``written``,
    ``failed``, ``failed:<reason>``, ``skipped_done``.

    At the end the failures file holds the failures that still stand (:func:`settle_failures`):
    an item written in this run, or in ``done`` (in the output), has none; ``final_reasons``
    are failures that put an item in ``done`` for good (they stay).
    """
    return asyncio.run(
        arun_items(
            items,
            work,
            output=output,
            key=key,
            done=done,
            concurrency=concurrency,
            desc=desc,
            total=total,
            unit=unit,
            final_reasons=final_reasons,
        )
    )


async def arun_items(
    items, work, *, output, key=None, done=None, concurrency=8, desc="", total=None, unit="item", final_reasons=()
) -> Counter:
    counts: Counter = Counter()
    done = done or set()
    written: set[str] = set()  # keys of the items written in this run
    bar = progress(total=total, desc=desc, unit=unit)
    started = time.monotonic()
    with AppendWriter(output) as writer, failures_writer(output) as failures:
        in_flight: set[asyncio.Task] = set()

        async def one(item):
            try:
                result = await work(item)
            except ItemFailed as e:
                failures.write(
                    {
                        "key": key(item) if key else None,
                        "reason": e.reason,
                        "detail": _jsonable(e.detail),
                        "time": time.time(),
                    }
                )
                counts["failed"] += 1
                counts[f"failed:{e.reason}"] += 1
            else:
                records = result if isinstance(result, list) else [result]
                writer.write_many(records)  # one write: a killed run never keeps half an item's records
                counts["written"] += len(records)
                if key is not None:
                    written.add(_same_key(key(item)))
            bar.update(1)
            if counts["failed"]:
                bar.set_postfix(failed=counts["failed"], refresh=False)

        try:
            for item in items:
                if key is not None and key(item) in done:
                    counts["skipped_done"] += 1
                    bar.update(1)
                    continue
                while len(in_flight) >= max(1, concurrency):
                    finished, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    for t in finished:
                        t.result()  # re-raise anything that is not ItemFailed
                in_flight.add(asyncio.ensure_future(one(item)))
            if in_flight:
                for t in asyncio.as_completed(list(in_flight)):
                    await t
                in_flight = set()
        finally:
            for t in in_flight:
                t.cancel()
            bar.close()
    in_output = {_same_key(k) for k in done}
    settle_failures(
        output,
        lambda r: (
            _same_key(r.get("key")) in written
            or (_same_key(r.get("key")) in in_output and r.get("reason") not in final_reasons)
        ),
    )
    counts["seconds"] = round(time.monotonic() - started, 3)  # type: ignore[assignment]
    return counts


def _jsonable(x: Any) -> Any:
    """``x`` as JSON data: anything JSON cannot hold, at any depth, as its ``str``."""
    return json.loads(json.dumps(x, default=str))
