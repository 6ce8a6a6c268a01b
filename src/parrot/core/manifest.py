"""``<output>.manifest.json``: what produced a file, from what, with which settings.

Every stage writes one beside each output: the stage, the full effective config, its
fingerprint (what the output depends on) and the fingerprint's hash (``config_hash``: what
``--resume`` and ``parrot pipeline`` compare), inputs with sha256, package versions, sampling parameters, counts (read / written / dropped by
reason), timings, and anything stage-specific. Secrets never appear: keys that name a secret
are replaced by ``"<redacted>"`` wherever they occur, and secrets in text are scrubbed
(:mod:`parrot.core.redact`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parrot import __version__
from parrot.core.config import to_dict
from parrot.core.digest import SKIPPED_DIRS, describe, record, tree_files
from parrot.core.fingerprint import fingerprint, hash_of, selection
from parrot.core.jsonl import read_json, write_text_atomic
from parrot.core.redact import redact

PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "openai",
    "xllamacpp",
    "vllm",
    "numpy",
    "tokenizers",
)


def package_versions() -> dict[str, str]:
    out = {"parrot": __version__, "python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def manifest_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".manifest.json")


def write_manifest(cfg: Any, *, of: str | Path | None = None, **sections: Any) -> Path:
    """Write the manifest of the stage ``cfg`` configures: its name is ``cfg.STAGE`` and its place
    ``cfg.manifest_of()`` (``of``: a side output with a manifest of its own, such as a dev split);
    ``sections`` as for :func:`record_manifest`."""
    return record_manifest(of or cfg.manifest_of(), stage=cfg.STAGE, config=cfg, **sections)


def record_manifest(
    output: str | Path,
    *,
    stage: str,
    config: Any,
    inputs: list = (),
    counts: dict | None = None,
    timings: dict | None = None,
    sampling: dict | None = None,
    complete: bool = True,
    **extra: Any,
) -> Path:
    """Write ``<output>.manifest.json`` atomically and return its path (:func:`write_manifest` for a
    stage's own; this for any other, such as the pipeline's).

    ``config`` is the stage's dataclass config (or a plain dict); ``inputs`` are paths (hashed
    here) or ready-made dicts; ``extra`` holds stage-specific sections (backend usage, cuts...).
    While the stage runs under :func:`pinned`, the fingerprint and inputs are the ones pinned when
    it started. A complete manifest records its ``outputs`` (path relative to the manifest's
    folder -> size, mtime, sha256), so that a file changed on disk since is noticed
    (:func:`parrot.core.digest.changed_outputs`).
    """
    cfg = to_dict(config) if not isinstance(config, dict) else config
    pin = _PINNED.get(_key(config))
    flat = pin["fingerprint"] if pin else fingerprint(config)
    described = [*(pin["inputs"] if pin else []), *(i if isinstance(i, dict) else describe(i) for i in inputs)]
    doc = {
        "stage": stage,
        "output": str(output),
        "complete": complete,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": redact(cfg),
        "config_hash": hash_of(flat),
        "fingerprint": flat,
        "selection": selection(config),
        "inputs": list({i.get("path", n): i for n, i in enumerate(described)}.values()),
        "versions": package_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "sampling": redact(sampling or {}),
        "counts": counts or {},
        "timings": timings or {},
    }
    doc.update(redact(extra))
    path = manifest_path(output)
    if _key(config):  # the output whose lock guards this file (a dev split's is its prepare output's)
        doc["owner"] = os.path.relpath(Path(config.output), path.parent)
    if complete:
        doc["outputs"] = {os.path.relpath(p, path.parent): record(p) for p in product_files(output, config)}
    # a full disk: no half-written manifest left beside the output
    return write_text_atomic(path, json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


def product_files(output: str | Path, config: Any) -> list[Path]:
    """The files a manifest beside ``output`` vouches for: the stage's output files when it is the
    stage's own manifest (a model's folder: what it saved, not its ``checkpoint-N`` folders), else
    ``output`` itself (a dev split, a selection file)."""
    own = hasattr(config, "manifest_of") and manifest_path(config.manifest_of()) == manifest_path(output)
    paths = config.output_files() if own else [Path(output)]
    files: list[Path] = []
    for p in paths:
        if p.is_dir() and not p.name.startswith(SKIPPED_DIRS):
            files += tree_files(p)
        elif p.is_file():
            files.append(p)
    return files


# ---------------------------------------------------------------- what a running stage pinned

#: The fingerprint and inputs of each stage running in this process, by its output (see :func:`pinned`).
_PINNED: dict[str | None, dict] = {}


def _key(config: Any) -> str | None:
    output = getattr(config, "output", None)
    return str(Path(output).resolve()) if output and not isinstance(config, dict) else None


@contextmanager
def pinned(config: Any, inputs: list[dict]) -> Iterator[dict]:
    """Pin a stage's fingerprint (its settings and what its inputs hold) and its inputs' descriptions
    now, as it starts: every manifest it writes while the block runs records these, so an input
    rewritten while the stage runs cannot pass as the one it read."""
    key = _key(config)
    flat = fingerprint(config)
    _PINNED[key] = {"fingerprint": flat, "config_hash": hash_of(flat), "inputs": inputs}
    try:
        yield _PINNED[key]
    finally:
        _PINNED.pop(key, None)


def read_manifest(output: str | Path) -> dict | None:
    """The manifest beside ``output``, or None; a broken one is an error naming the file and line."""
    path = manifest_path(output)
    if not path.exists():
        return None
    return read_json(path)
