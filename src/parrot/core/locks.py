"""Locks on outputs: one writer at a time, and no writer while a stage reads it.

A stage holds an exclusive lock on ``<output>.lock`` while it runs (:func:`output_lock`): a second
run on the same output stops at once with an error naming it, before it deletes, loads or writes
anything. A stage reading another stage's output holds a shared lock on that output's lock file
while it runs (:func:`reading`), so a run that would rewrite it stops the same way, and a stage
never starts on an input being written. The locks go with the process, however it ends.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parrot import ParrotError
from parrot.core.digest import changed_outputs, describe, manifest_doc, owner_manifest
from parrot.core.jsonl import lock_file

log = logging.getLogger("parrot")


def lock_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".lock")


@contextmanager
def output_lock(output: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<output>.lock`` while the block runs: a second run on the same
    output (``--overwrite`` or ``--resume`` included) stops with an error naming ``output``
    before it deletes, starts or writes anything. The lock goes with the process, however it
    ends; the lock file is removed when the block ends (a run that locks a removed file's
    inode finds out and locks the new file), and so are the directories made for it, if empty.
    Where no file can be made (a read-only directory) nothing can be written either: the stage
    runs unlocked and says so itself, naming the file it could not write."""
    path = lock_path(output)
    made = [d for d in (path.parent, *path.parent.parents) if not d.exists()]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if not _read_only(e):
            raise
    fh = _locked(path, Path(output))
    try:
        yield
    finally:
        if fh is not None:
            path.unlink(missing_ok=True)  # while holding it
            fh.close()
        _remove_empty(made)


def _locked(path: Path, output: Path, *, shared: bool = False):
    """``path`` opened and locked, exclusively (a writer) or shared (a reader); the lock is on the
    file the path names now. None where no lock file can be made (a read-only folder)."""
    while True:
        try:
            fh = path.open("a", encoding="utf-8")
        except OSError as e:
            if _read_only(e):
                return None
            raise
        lock_file(fh, output, shared=shared)  # closes the file and raises when held
        try:
            same = os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fh
        fh.close()  # locked a lock file that its holder removed as it finished: lock the new one


def _read_only(error: OSError) -> bool:
    return isinstance(error, PermissionError) or error.errno == errno.EROFS


def _remove_empty(dirs: list[Path]) -> None:
    for d in dirs:
        try:
            d.rmdir()
        except OSError:  # not empty (the output is in it): kept, with those above it
            break


# ---------------------------------------------------------------- the inputs


def input_owner(path: Path) -> Path | None:
    """The output of a Parrot stage that ``path`` is (or is in: a model's folder), found by its
    manifest or by the lock of a run writing it now; None for a file no stage wrote."""
    manifest = owner_manifest(path)
    if manifest is not None:
        owner = manifest_doc(manifest).get("owner")
        return (
            manifest.parent / owner
            if isinstance(owner, str)
            else manifest.with_name(manifest.name[: -len(".manifest.json")])
        )
    for candidate in (path, *list(path.parents)[:3]):
        if candidate.name and lock_path(candidate).exists():
            return candidate
    return None


@contextmanager
def reading(paths: list[Path], output: str | Path) -> Iterator[list[dict]]:
    """Pin a stage's inputs as it starts: hold a shared lock on each one another stage writes (a
    run that would rewrite it stops at its own lock until this one ends, and one writing it now
    stops this one), check each is still what that stage wrote (:func:`check_input`), and yield
    their descriptions (digests) as read now, for the manifest."""
    own = lock_path(Path(output).resolve())
    held: list[tuple[Path, Any]] = []
    try:
        for path in paths:
            owner = input_owner(path)
            if owner is not None and lock_path(owner.resolve()) != own:
                fh = _locked(lock_path(owner), path, shared=True)
                if fh is not None:
                    held.append((lock_path(owner), fh))
            check_input(path)
        yield [describe(p) for p in paths]
    finally:
        for lock, fh in held:
            _release_shared(lock, fh)


def check_input(path: Path) -> None:
    """An input another stage wrote must be what it wrote: a file changed or missing since is an
    error naming it, before anything of this stage's output is touched."""
    manifest = owner_manifest(path)
    if manifest is None:
        return
    doc = manifest_doc(manifest)
    if problems := changed_outputs(manifest, under=path):
        raise ParrotError(
            f"{path}: changed on disk since {doc.get('stage', 'its stage')} wrote it ({', '.join(problems)}); "
            "make it again first (in a pipeline, its step runs again by itself)"
        )
    if doc and not doc.get("complete", True):
        log.warning("%s: its manifest says it is not complete (an interrupted run?): read as it is", path)


def _release_shared(path: Path, fh) -> None:
    """Let go of a shared lock; the last holder removes the lock file (while holding it alone)."""
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino:
            path.unlink()
    except OSError:  # another reader holds it (BlockingIOError), or it is gone already
        pass
    fh.close()
