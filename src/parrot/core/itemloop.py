"""The shared loop: items -> model calls -> records, durable and resumable.

Stages that call a model once or a few times per item (answering a benchmark, judging, writing
CaPO negatives) describe the work for one item as a coroutine and hand it to :func:`run_items`.
It keeps a bounded number of items in flight (local backends coalesce concurrent calls into
batches, HTTP backends get concurrent requests), appends each finished record to the output
with a flush, and records failures in ``<output>.failures.jsonl`` with the reason. A failed item
is not in the output, so ``--resume`` retries it; an item whose id is already in the output is
skipped, so nothing is done twice. At the end the failures file holds exactly the failures that
still stand (:func:`~parrot.core.outputs.settle_failures`). The stage around the loop runs
holding its output's lock, after the rule for an existing output (:mod:`parrot.core.outputs`).

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
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from parrot.core.jsonl import AppendWriter, read_jsonl
from parrot.core.log import progress
from parrot.core.outputs import failure_key, failures_writer, settle_failures


class ItemFailed(Exception):
    """Raised by a work coroutine: the item is recorded as failed with ``reason`` (a short key
    counted in the manifest) and ``detail`` (kept in the failures file)."""

    def __init__(self, reason: str, detail: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


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
                    written.add(failure_key(key(item)))
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
    in_output = {failure_key(k) for k in done}
    settle_failures(
        output,
        lambda r: (
            failure_key(r.get("key")) in written
            or (failure_key(r.get("key")) in in_output and r.get("reason") not in final_reasons)
        ),
    )
    counts["seconds"] = round(time.monotonic() - started, 3)  # type: ignore[assignment]
    return counts


def summary(counts: dict) -> str:
    """``"12 written, 3 skipped (done), 1 failed"``: a run's counts in a log line."""
    return (
        f"{counts.get('written', 0)} written, {counts.get('skipped_done', 0)} skipped (done), "
        f"{counts.get('failed', 0)} failed"
    )


def _jsonable(x: Any) -> Any:
    """``x`` as JSON data: anything JSON cannot hold, at any depth, as its ``str``."""
    return json.loads(json.dumps(x, default=str))
