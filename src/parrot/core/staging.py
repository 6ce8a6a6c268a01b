"""An output folder whose files are put in place together: all of them, or none.

The stages whose output is a folder of files (``parrot report``, ``parrot eval report``,
``parrot stats``: markdown, JSON, HTML and PNG plots) write them through :func:`staged_folder`:
each file is made in a staging folder inside the output folder (same file system), and only
once every one is written and flushed to disk are they moved into place, each with one
``os.replace``. A run that fails on the way (a full disk, a folder that cannot be written,
Ctrl-C) leaves the folder as it was: no partial plot, no temporary file, the previous output
whole, its manifest included. The error names the file it was writing, under its final name,
so the command line prints it as one line (``parrot report: error: OUT/training_loss.png: No
space left on device``).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     with staged_folder(Path(tmp) / "report") as staging:
...         _ = (staging / "report.md").write_text("# Report\\n")
...     print(sorted(p.name for p in (Path(tmp) / "report").iterdir()))
['report.md']
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from parrot.core.jsonl import naming

#: The staging folder's name inside the output folder (ends with ``.tmp``, like every temporary
#: file Parrot writes; a run killed mid-way leaves it, and the next run removes it first).
STAGING = ".parrot-staging.tmp"


@contextmanager
def staged_folder(folder: str | Path, *, unclaim: list[Path] = ()) -> Iterator[Path]:
    """Yield a staging folder to write ``folder``'s files into, by their final names; when the
    block ends without error, each is flushed to disk, then the files of ``unclaim`` (the manifest
    that vouches for the previous output) are removed and the new files moved into ``folder``.
    On any error nothing in ``folder`` changes, the staging folder goes, and so does ``folder``
    itself when this call made it. An OS error about a staged file names its final path."""
    folder = Path(folder)
    made = [d for d in (folder, *folder.parents) if not d.exists()]  # deepest first
    staging = folder / STAGING
    done = False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if staging.exists():  # left by a run that was killed
            shutil.rmtree(staging)
        staging.mkdir()
        yield staging
        files = sorted(p for p in staging.iterdir())
        for path in files:
            with naming(folder / path.name):
                _flush(path)
        for path in unclaim:
            Path(path).unlink(missing_ok=True)
        for path in files:
            os.replace(path, folder / path.name)
        done = True
    except OSError as e:
        raise _final_name(e, staging, folder) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not done:
            for d in made:
                try:
                    d.rmdir()
                except OSError:  # not empty (or never made): kept, with those above it
                    break


def _flush(path: Path) -> None:
    """Make sure ``path``'s bytes are on disk (a full disk may only say so here)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _final_name(e: OSError, staging: Path, folder: Path) -> OSError:
    """``e`` naming the file in ``folder`` that a file of ``staging`` was to become."""
    if e.filename is None:
        return e
    try:
        rel = Path(os.fspath(e.filename)).relative_to(staging)
    except ValueError:
        return e
    return OSError(e.errno, e.strerror or str(e), str(folder / rel))


def save_figure(fig, path: str | Path) -> Path:
    """``fig.savefig(path)`` (the format from the file's suffix), the figure closed whatever
    happens; an OS error that names no file (a full disk) names ``path``."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with naming(path):
            fig.savefig(path)
    finally:
        plt.close(fig)
    return path
