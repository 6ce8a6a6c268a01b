"""What a file or directory holds, by content: the digests that say whether an input or an output
is the one a manifest recorded.

"Up to date" is decided by contents and settings, never by where files sit or when they were
touched: a run directory copied elsewhere is as up to date as the original. Hashing is what makes
that cheap enough:

- a file's digest is cached per version (path, inode, size, mtime) within a process;
- across processes, a manifest is the cache: a file whose size and mtime are the ones a
  manifest recorded for it (:func:`record`, in the manifest's ``outputs``) has the digest it recorded,
  so an unchanged workdir is checked by ``stat`` alone;
- a file above :data:`HASH_LIMIT` (a model shard) that no manifest recorded (a model of the
  user's) goes by its size and mtime.

A directory's digest covers the files in it, except what a run leaves beside its product: hidden
files, ``*.tmp`` files, ``checkpoint-N`` folders and TensorBoard's ``runs/``.

A model spec (``hf:PATH``, ``gguf:PATH``, ``vllm:PATH``) names a local path after its prefix:
:func:`local_path` finds it, :func:`contents` digests it and keeps the prefix.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from parrot.backends.spec import read_spec

#: Files above this size (model shards) are identified by size and mtime, not hashed.
HASH_LIMIT = 512 << 20
#: What a directory's digest leaves out (see the module docstring).
SKIPPED_DIRS = ("checkpoint-", "runs")

_FILES: dict[tuple, str] = {}  # (path, inode, size, mtime_ns) -> digest
_MANIFESTS: dict[tuple, dict] = {}  # (manifest path, mtime_ns) -> its contents


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_digest(path: str | Path, st: os.stat_result | None = None, *, full: bool = False) -> str:
    """The sha256 of a file, cached per version of it. A file no manifest recorded goes by
    ``SIZE:MTIME`` above :data:`HASH_LIMIT` (a model of the user's, hashed at every start
    otherwise), unless ``full``; one a manifest recorded is always hashed (once per version:
    the manifest keeps it), so a copy of it counts as the same file."""
    path = Path(path)
    st = st or path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _FILES:
        rec = _record_of(path)
        if rec and rec.get("bytes") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
            _FILES[key] = rec.get("sha256")
        elif rec is None and not full and st.st_size > HASH_LIMIT:
            return f"{st.st_size}:{st.st_mtime_ns}"
        else:
            _FILES[key] = sha256_file(path)
    return _FILES[key]


def record(path: str | Path) -> dict:
    """``{"bytes", "mtime_ns", "sha256"}`` of a file, as a manifest records what it wrote."""
    st = Path(path).stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_digest(path, st, full=True)}


def tree_files(path: str | Path) -> list[Path]:
    """The files a directory's digest covers, sorted (see the module docstring)."""
    root = Path(path)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (Path(dirpath) == root and d.startswith(SKIPPED_DIRS))
        )
        out += [Path(dirpath) / f for f in filenames if not f.startswith(".") and not f.endswith(".tmp")]
    return sorted(out)


def digest(path: str | Path) -> str | None:
    """The digest of a file or a directory (over :func:`tree_files`); None when nothing is there."""
    p = Path(path)
    if p.is_file():
        return file_digest(p)
    if not p.is_dir():
        return None
    h = hashlib.sha256()
    for f in tree_files(p):
        h.update(f"{f.relative_to(p).as_posix()}\0{file_digest(f)}\n".encode())
    return h.hexdigest()


def describe(path: str | Path) -> dict:
    """``{"path", "bytes", "sha256"}`` of an input file; for a directory, a digest over its files
    (``"kind": "directory"``); a name that is no local path (``sharegpt``) says so."""
    p = Path(path)
    if p.is_file():
        return {"path": str(p), "bytes": p.stat().st_size, "sha256": file_digest(p)}
    if p.is_dir():
        total = sum(f.stat().st_size for f in tree_files(p))
        return {"path": str(p), "bytes": total, "sha256": digest(p), "kind": "directory"}
    return {"path": str(p), "note": "not a local path"}


def local_path(value: str) -> Path | None:
    """The local file or directory a setting names, or None: ``data/x.jsonl``, or the path in a
    model spec (``hf:models/ask``, ``gguf:models/ask/model.gguf``); ``sharegpt``, ``smollm2`` and
    ``openai:gpt-4`` name none."""
    if not isinstance(value, str) or not value:
        return None
    spec = read_spec(value)
    candidate = spec.name if spec and spec.in_process else value
    return Path(candidate) if candidate and Path(candidate).exists() else None


def contents(value: Any, by_manifest: bool = False) -> Any:
    """``value`` with each local path it names replaced by what the path holds: a path by its
    digest, a model spec by its prefix and the digest (``hf:sha256:...``), a list item by item;
    what names no local path stays as it is. This is what a fingerprint records of an input.
    ``by_manifest``: an output another stage made counts by its manifest (what a report reads of a
    model's folder is its losses, not its weights)."""
    if isinstance(value, (list, tuple)):
        return [contents(v, by_manifest) for v in value]
    path = local_path(value) if isinstance(value, str) else None
    if path is None:
        return value
    spec = read_spec(value)
    prefix = f"{spec.kind}:" if spec and spec.in_process and not Path(value).exists() else ""
    manifest = path.with_name(path.name + ".manifest.json")
    if by_manifest and manifest.is_file():
        path = manifest
    return f"{prefix}sha256:{digest(path)}"


# ---------------------------------------------------------------- the manifest as a cache


def owner_manifest(path: Path) -> Path | None:
    """The manifest that records ``path`` as (part of) its output: ``PATH.manifest.json``, or that
    of a directory above it (a model's folder) within three levels."""
    for candidate in (path, *list(path.parents)[:3]):
        if candidate.name and (m := candidate.with_name(candidate.name + ".manifest.json")).is_file():
            return m
    return None


def manifest_doc(manifest: Path) -> dict:
    """A manifest's contents, read once per version of it; empty when it cannot be read."""
    try:
        key = (str(manifest), manifest.stat().st_mtime_ns)
    except OSError:
        return {}
    if key not in _MANIFESTS:
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = {}
        _MANIFESTS[key] = doc if isinstance(doc, dict) else {}
    return _MANIFESTS[key]


def recorded_outputs(manifest: Path) -> dict[Path, dict]:
    """``{absolute path: record}`` of the outputs a manifest recorded (paths in it are relative to
    its folder); empty when it recorded none or cannot be read."""
    outputs = manifest_doc(manifest).get("outputs")
    return {
        (manifest.parent / rel).resolve(): rec
        for rel, rec in (outputs.items() if isinstance(outputs, dict) else [])
        if isinstance(rec, dict)
    }


def _record_of(path: Path) -> dict | None:
    """What a manifest recorded of ``path`` as one of its outputs (size, mtime, sha256), if any."""
    manifest = owner_manifest(path)
    return recorded_outputs(manifest).get(path.resolve()) if manifest else None


def changed_outputs(manifest: Path, under: Path | None = None) -> list[str]:
    """The outputs a manifest recorded (those in ``under``, if given) that are no longer what it
    recorded, each as ``"PATH (missing)"`` or ``"PATH (changed)"``. A file with the recorded size
    and mtime is taken as it is; any other is hashed, so a copied run (new mtimes, same bytes)
    passes."""
    root = under.resolve() if under is not None else None
    problems = []
    for path, rec in recorded_outputs(manifest).items():
        if root is not None and path != root and root not in path.parents:
            continue
        shown = str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
        try:
            st = path.stat()
        except OSError:
            problems.append(f"{shown} (missing)")
            continue
        if st.st_size != rec.get("bytes") or (
            st.st_mtime_ns != rec.get("mtime_ns") and file_digest(path, st) != rec.get("sha256")
        ):
            problems.append(f"{shown} (changed)")
    return problems
