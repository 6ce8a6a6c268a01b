"""Logging to stderr and progress bars with rate and ETA.

Stages log through ``logging.getLogger("parrot.<stage>")``; :func:`progress` wraps tqdm so
every long loop shows count, rate and ETA on stderr (quietly, every 30 s, when stderr is not
a terminal, so CI logs stay short).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

from parrot.core.redact import redact_text

log = logging.getLogger("parrot")


class RedactFilter(logging.Filter):
    """Scrub secrets (:func:`parrot.core.redact.redact_text`) from every message the handler prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a caller or test that redirects it sees
    the log), not the stream that was current when the handler was made."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(verbose: int = 0) -> None:
    level = logging.DEBUG if verbose > 0 else logging.INFO
    if os.environ.get("PARROT_LOG_LEVEL"):
        level = getattr(logging, os.environ["PARROT_LOG_LEVEL"].upper(), level)
    root = logging.getLogger("parrot")
    if not any(getattr(h, "_parrot", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
        handler.addFilter(RedactFilter())
        handler._parrot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # Libraries that chatter at INFO on every call.
    for name in ("httpx", "httpx2", "openai", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def progress(
    iterable: Iterable | None = None, *, total: int | float | None = None, desc: str = "", unit: str = "it", **kw: Any
) -> tqdm:
    """A tqdm bar on stderr with rate and ETA; sparse updates when stderr is not a terminal."""
    interactive = sys.stderr.isatty()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5 if interactive else 30.0,
        disable=os.environ.get("PARROT_NO_PROGRESS") == "1",
        **kw,
    )


def format_table(rows: list[tuple], headers: tuple[str, ...], left: tuple[int, ...] = (0,)) -> str:
    """A plain-text table (for summaries printed at the end of a stage); the ``left`` columns are
    aligned left, the others (numbers) right."""
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
