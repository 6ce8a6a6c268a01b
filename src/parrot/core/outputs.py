"""One rule for a stage's existing output, and the guarantees that come with writing one.

Every stage that writes an output (prepare, merge, filter, stats, train-*, synthesize, capo,
capo select, eval answer, eval judge, eval report) has a config that inherits
:class:`WritesOutput` and a function decorated with :func:`writes_output`. On an output that
already exists:

- ``--overwrite`` starts over: the files that belong to the output (the config says which:
  :meth:`WritesOutput.output_files` and :meth:`WritesOutput.side_files`) are removed, exactly
  those, and the stage runs (a one-pass output's files are removed only once the new run has
  succeeded, those it did not write again: a run that fails leaves the previous output);
- ``--resume`` continues it. What that means depends on the stage (:attr:`WritesOutput.RESUMES`):
  a stage that adds records item by item (synthesize, capo, eval answer...) skips what is done
  and does the rest; a training stage goes on from the latest ``checkpoint-N``; a stage that
  writes its output in one pass (prepare, filter, stats...) has nothing partial to continue: a
  complete output made with the same settings is up to date (the run does nothing and returns
  the counts its manifest recorded), any other is made again. Settings that differ from those
  the output was made with (its manifest's :func:`~parrot.core.fingerprint.config_hash`) are an
  error naming what changed, unless ``--force``;
- neither is an error naming both, and nothing is touched.

The decorator takes the output's lock first (:func:`output_lock`: a second run on the same output
stops before it removes, loads or writes anything), then applies the rule, then runs the stage.
The failures file (``<output>.failures.jsonl``) always matches the output (:func:`settle_failures`).

>>> @dataclass                                                        # doctest: +SKIP
... class ThingConfig(WritesOutput):
...     output: str = opt(help="out.jsonl", hashed=False)
...     STAGE: ClassVar[str] = "thing"
>>> @writes_output                                                    # doctest: +SKIP
... def thing(cfg: ThingConfig) -> dict: ...
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from parrot import ParrotError
from parrot.core.config import check_ranges, opt
from parrot.core.digest import changed_outputs
from parrot.core.fingerprint import config_hash, fingerprint, input_paths, selection, widened
from parrot.core.jsonl import AppendWriter, AtomicWriter, read_jsonl
from parrot.core.locks import output_lock, reading
from parrot.core.manifest import manifest_path, pinned, read_manifest, write_manifest

log = logging.getLogger("parrot")

#: What ``--resume`` does (:attr:`WritesOutput.RESUMES`).
CONTINUES = "continues"  # items already in the output are skipped, the rest is done
CHECKPOINT = "checkpoint"  # training goes on from the latest checkpoint-N
ONE_PASS = "one pass"  # nothing partial to continue: up to date, or made again

# Set while a stage runs holding its output's lock: a process it starts (the workers of
# `accelerate launch`) runs the same stage on the same output under that lock.
_HELD = "PARROT_OUTPUT_LOCK_HELD"


# ---------------------------------------------------------------- what a stage declares


@dataclass(kw_only=True)
class WritesOutput:
    """The settings and the files of a stage that writes an output (``cfg.output``).

    A subclass names its stage (:attr:`STAGE`), says what ``--resume`` does (:attr:`RESUMES`)
    and, when its output is more than ``cfg.output``, which files belong to it.
    """

    resume: bool = opt(
        False,
        "continue an existing output: skip what is done (training: from the latest checkpoint-N); a "
        "complete one-pass output made with the same settings is left as it is",
        hashed=False,
    )
    overwrite: bool = opt(False, "start an existing output over: its files are removed first", hashed=False)
    force: bool = opt(False, "with --resume: continue although the settings changed", hashed=False)

    STAGE: ClassVar[str] = ""  # the stage's name: its command, and what its manifests record
    PLACE: ClassVar[str] = "data/{}.jsonl"  # where a pipeline step's output goes in the work directory
    RESUMES: ClassVar[str] = CONTINUES
    RECORDS: ClassVar[str] = "records"  # what the output holds, for messages

    def output_files(self) -> list[Path]:
        """The files (or directories) that make up the output: the output exists when one of
        them does, and ``--overwrite`` removes them."""
        return [Path(self.output)]

    def manifest_of(self) -> Path:
        """The file whose manifest (``<file>.manifest.json``) records how the output was made."""
        return Path(self.output)

    def side_files(self) -> list[Path]:
        """What goes with the output, removed with it: its manifest and its failures file."""
        return [manifest_path(self.manifest_of()), failures_path(self.output)]

    def kept_until_replaced(self) -> list[Path]:
        """The output files ``--overwrite`` leaves in place until the new run replaces them (a
        trained model, kept until the new one is saved); by default none."""
        return []

    def input_paths(self) -> list[Path]:
        """The local files and directories the stage reads (its ``digest=True`` settings): pinned,
        locked and checked as it starts (:func:`writes_output`)."""
        return input_paths(self)

    def manifest_sections(self) -> dict:
        """What every manifest of the output records beside the counts, the one written as the run
        starts included (a shard's place in its run); by default nothing."""
        return {}

    def check_inputs(self) -> None:
        """Raise a ParrotError naming an input that cannot be read: called under the lock, before
        ``--overwrite`` removes anything (a mistyped input path costs no finished output)."""

    def check_existing(self) -> None:
        """Raise a ParrotError when the existing output cannot be continued although the
        settings are the same (an answer file of another model): called before ``--resume``
        continues it."""


class WritesFolder(WritesOutput):
    """An output that is a folder of files made in one pass (stats, the reports): ``FILES`` are the
    files the stage writes in it (any other file there is the user's), ``MANIFESTS`` those with a
    manifest beside them, the first saying how the folder was made."""

    FILES: ClassVar[tuple[str, ...]] = ()
    MANIFESTS: ClassVar[tuple[str, ...]] = ("report",)
    RESUMES: ClassVar[str] = ONE_PASS

    def output_files(self) -> list[Path]:
        return [Path(self.output) / name for name in self.FILES]

    def manifest_of(self) -> Path:
        return Path(self.output) / self.MANIFESTS[0]

    def side_files(self) -> list[Path]:
        return [manifest_path(Path(self.output) / name) for name in self.MANIFESTS]


# ---------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Start:
    """How a run begins: ``"start"`` (a new output), ``"continue"`` or ``"up to date"``.
    ``replaces``: the files of a one-pass output made again, kept until the new run succeeds;
    ``aside``: the files of an item-by-item output started over, set aside until the new run has
    written something (:func:`settle_aside`)."""

    how: str
    manifest: dict | None = None
    replaces: tuple[Path, ...] = ()
    aside: tuple[Path, ...] = ()


def begin(cfg: WritesOutput, *, remove: bool = True) -> Start:
    """Apply the ``--resume`` / ``--overwrite`` / ``--force`` rule to ``cfg``'s output (see the
    module docstring). ``remove=False`` only decides (a distributed worker beside the main one)."""
    out = Path(cfg.output)
    files = cfg.output_files()
    if cfg.overwrite or not any(p.exists() for p in files):
        return _start_over(cfg, remove)  # with --overwrite, or what a run that wrote nothing left
    if not cfg.resume:
        raise ParrotError(f"{out}: already exists; pass --resume to continue it or --overwrite to start over")
    manifest = read_manifest(cfg.manifest_of())
    changed = settings_changed(cfg, manifest)
    complete = bool(manifest and manifest.get("complete"))
    on_disk = changed_outputs(manifest_path(cfg.manifest_of())) if complete else []
    if cfg.RESUMES == ONE_PASS:
        if complete and not changed and not on_disk:
            return Start("up to date", manifest)
        log.info(
            "%s: %s: made again",
            out,
            changed or ("changed on disk: " + ", ".join(on_disk) if on_disk else "not complete"),
        )
        return _start_over(cfg, remove)
    if changed and not cfg.force:
        raise ParrotError(
            f"{out}: holds {cfg.STAGE} {cfg.RECORDS} made with other settings ({changed}); pass --overwrite "
            "to start over; to continue under different settings anyway (the config differs), pass --force"
        )
    if changed:
        log.warning("%s: made with other settings (%s); continued anyway (--force)", out, changed)
    if manifest is None:
        log.warning("%s: no manifest beside it: the settings it was made with cannot be checked", out)
    if on_disk:
        log.warning("%s: changed on disk since it was written (%s); continued as it is now", out, ", ".join(on_disk))
    if cfg.RESUMES == CHECKPOINT and complete and not changed and not on_disk:
        return Start("up to date", manifest)
    cfg.check_existing()
    return Start("continue", manifest)


def _start_over(cfg: WritesOutput, remove: bool) -> Start:
    """Start the output over. Nothing finished goes before the new run has something to put in
    its place: a one-pass output writes each file whole (atomically), so the old ones stay until
    the new run has succeeded (:func:`remove_stale` then removes what it did not write again); the
    files of any other are set aside (:func:`settle_aside`), but for those the new run replaces
    itself (:meth:`WritesOutput.kept_until_replaced`: a training output's model, kept in place
    until the new one is saved)."""
    old = [p for p in (*cfg.output_files(), *cfg.side_files()) if p.exists()]
    if cfg.RESUMES == ONE_PASS and any(p.exists() for p in cfg.output_files()):
        return Start("start", replaces=tuple(old))
    if not remove:
        return Start("start")
    if cfg.RESUMES == ONE_PASS:  # no output, a manifest left alone by a run that failed
        remove_files(old)
        return Start("start")
    kept = set(cfg.kept_until_replaced())
    aside = [p for p in old if p not in kept]
    for p in aside:
        os.replace(p, aside_path(p))
    return Start("start", aside=tuple(aside))


def aside_path(path: Path) -> Path:
    """Where a file of an output started over waits (hidden, beside it) until the new run has written something."""
    return path.with_name(f".{path.name}.replaced")


def wrote_nothing(cfg: WritesOutput) -> bool:
    """Whether the run wrote nothing: no output file of its own holds anything (a run that failed
    before its first record, or before its first checkpoint), and the files it replaces itself (a
    model) are still those the set-aside manifest recorded."""
    kept = cfg.kept_until_replaced()
    for p in cfg.output_files():
        if p not in kept and (p.is_file() and p.stat().st_size > 0 or p.is_dir() and any(p.iterdir())):
            return False
    old_manifest = aside_path(manifest_path(cfg.manifest_of()))
    return not (old_manifest.exists() and any(changed_outputs(old_manifest, under=p) for p in kept))


def settle_aside(cfg: WritesOutput, paths: tuple[Path, ...] | list[Path], succeeded: bool) -> None:
    """The previous output set aside by :func:`_start_over`: dropped once the new run succeeded or
    wrote something (a partial new output is what ``--resume`` continues), put back otherwise (a
    run that failed before its first record leaves the previous output as it was)."""
    aside = [p for p in paths if aside_path(p).exists()]
    if not aside:
        return
    if succeeded or not wrote_nothing(cfg):
        remove_files([aside_path(p) for p in aside])
        return
    kept = cfg.kept_until_replaced()
    remove_files([p for p in cfg.output_files() if p.exists() and p not in kept])  # empty files the failed run made
    for p in aside:
        os.replace(aside_path(p), p)
    log.info("%s: the new run wrote nothing: the previous output is back in place", cfg.output)


def clean_leftovers(cfg: WritesOutput) -> None:
    """What a killed run left beside the output: its set-aside files (put back when the killed run
    wrote nothing, else dropped) and one-pass temporary files (``OUT.tmp``)."""
    files = [*cfg.output_files(), *cfg.side_files()]
    out = Path(cfg.output)
    if out.is_dir():  # a folder's own files set aside (a training run's old checkpoints)
        files += [p.with_name(p.name[1 : -len(".replaced")]) for p in out.glob(".*.replaced")]
    settle_aside(cfg, files, succeeded=False)
    remove_files([p.with_name(p.name + ".tmp") for p in files if p.with_name(p.name + ".tmp").exists()])


def remove_stale(before: dict[Path, tuple[int, int]]) -> None:
    """Remove the files of ``before`` (path -> (inode, mtime)) that a run did not write again."""
    remove_files([p for p, seen in before.items() if _identity(p) == seen])


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def settings_changed(cfg: Any, manifest: dict | None) -> str | None:
    """How ``cfg``'s fingerprint differs from the one ``manifest`` records (``"max_tokens 1024 →
    64"``), or None when they are the same, or when there is no manifest to tell (a file written
    elsewhere, such as FastChat's answers)."""
    if manifest is None:
        return None
    stage = getattr(cfg, "STAGE", "")
    if stage and manifest.get("stage") not in (None, stage):
        return f"written by {manifest.get('stage')}, not {stage}"
    new_hash = config_hash(cfg)
    if manifest.get("config_hash") == new_hash:
        return None
    hashes = f"config hash {str(manifest.get('config_hash'))[:12]} → {new_hash[:12]}"
    old, new = manifest.get("fingerprint"), fingerprint(cfg)
    if old is None:  # the manifest of an earlier Parrot
        return hashes
    keys = [*new, *(k for k in old if k not in new)]
    return "; ".join(f"{k} {_shown(old, k)} → {_shown(new, k)}" for k in keys if _differs(old, new, k)) or hashes


def _differs(old: dict, new: dict, key: str) -> bool:
    return (key in old) != (key in new) or old.get(key) != new.get(key)


def _shown(values: dict, key: str) -> str:
    if key not in values:
        return "(unset)"
    text = repr(values[key])
    return text if len(text) <= 60 else text[:57] + "..."


def selection_state(cfg: Any, manifest: dict) -> str:
    """How the items a stage is asked for (its ``selects=True`` fields: ``--limit``, question ids,
    the answer files and what they hold) compare with what ``manifest`` recorded: ``"same"``,
    ``"more"`` (every item done before is still asked for: ``--resume`` adds the rest) or
    ``"other"`` (some item done before is no longer asked for, or has changed: start over)."""
    recorded = manifest.get("selection")
    if recorded is None:  # a manifest of an earlier Parrot: its config holds the selection as given
        recorded = {k: (manifest.get("config") or {}).get(k) for k in selection(cfg)}
    now = selection(cfg)
    if all(recorded.get(k) == v for k, v in now.items()):
        return "same"
    return "more" if all(widened(recorded.get(k), v) for k, v in now.items()) else "other"


def remove_files(paths: list[Path]) -> None:
    """Remove each file (a directory with what is in it) that exists."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------- the decorator


def writes_output(stage: Callable) -> Callable:
    """Decorate a stage function ``stage(cfg, ...)``: it runs holding :func:`output_lock` on
    ``cfg.output``, after the rule (:func:`begin`) said how. An up-to-date output returns the
    counts its manifest recorded, and the stage does not run. A stage that can be continued
    leaves an incomplete manifest from its start on (``parrot pipeline`` resumes it)."""

    @functools.wraps(stage)
    def run(cfg: WritesOutput, *args, **kwargs):
        check_ranges(cfg)  # a config made in Python is held to its declared ranges too
        if not getattr(cfg, "output", None):  # `eval report` without -o prints and writes nothing
            return stage(cfg, *args, **kwargs)
        out = str(Path(cfg.output).resolve())
        if os.environ.get(_HELD) == out:  # started by the run holding the lock: it applied the rule
            return stage(cfg, *args, **kwargs)
        if process_rank()[0] != 0:  # a distributed worker: the main process locks and removes
            start = begin(cfg, remove=False)
            return _up_to_date(cfg, start) if start.how == "up to date" else stage(cfg, *args, **kwargs)
        with output_lock(cfg.output):
            clean_leftovers(cfg)
            cfg.check_inputs()
            with reading(cfg.input_paths(), cfg.output) as inputs, pinned(cfg, inputs):
                start = begin(cfg)
                if start.how == "up to date":
                    return _up_to_date(cfg, start)
                before = {p: _identity(p) for p in start.replaces}
                os.environ[_HELD] = out
                try:
                    if cfg.RESUMES != ONE_PASS:
                        write_manifest(cfg, complete=False, **cfg.manifest_sections())
                    result = stage(cfg, *args, **kwargs)
                except BaseException:
                    settle_aside(cfg, start.aside, succeeded=False)
                    raise
                finally:
                    os.environ.pop(_HELD, None)
                settle_aside(cfg, start.aside, succeeded=True)
                remove_stale(before)  # reached only when the stage succeeded
                return result

    run.writes_output = True  # type: ignore[attr-defined]
    return run


def _up_to_date(cfg: WritesOutput, start: Start) -> Any:
    log.info("%s: up to date (complete, made with the same settings): nothing to do", cfg.output)
    return (start.manifest or {}).get("counts", {})


def process_rank() -> tuple[int, int]:
    """This process's rank and the number of processes, as ``accelerate launch`` and torchrun set
    them (``0, 1`` outside a distributed launch). Rank 0 is the one that removes and moves files."""
    rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
    world = os.environ.get("WORLD_SIZE", os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return int(rank), int(world)


# ---------------------------------------------------------------- the failures file


def failures_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".failures.jsonl")


def failures_writer(output: str | Path) -> AppendWriter:
    """The appender of ``<output>.failures.jsonl``: its records are redacted (a server's error
    text can echo the request's key)."""
    return AppendWriter(failures_path(output), fsync=False, redact=True, keep_empty=False)


def failure_key(key: Any) -> str:
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
        last[lineno if k is None else failure_key(k)] = (lineno, rec)  # no key: each record stands alone
    standing = [rec for _, rec in sorted(last.values(), key=lambda x: x[0]) if not settled(rec)]
    if not standing:
        path.unlink()
    elif len(standing) != lines:
        with AtomicWriter(path) as out:
            for rec in standing:
                out.write(rec)
    return len(standing)
