"""``<output>.manifest.json``: what produced a file, from what, with which settings.

Every stage writes one beside each output: the stage, the full effective config, its
fingerprint (what the output depends on) and the fingerprint's hash (``config_hash``: what
``--resume`` and ``parrot pipeline`` compare), inputs with sha256, package versions, sampling parameters, counts (read / written / dropped by
reason), timings, and anything stage-specific. Secrets never appear: keys that name a secret
are replaced by ``"<redacted>"`` wherever they occur, and secrets in text are scrubbed
(:mod:`parrot.core.redact`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from parrot import __version__
from parrot.core.config import to_dict
from parrot.core.fingerprint import config_hash, fingerprint
from parrot.core.jsonl import write_text_atomic
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


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# Files above this size (model shards) are identified by size and mtime, not hashed.
_HASH_LIMIT = 512 << 20


def describe_input(path: str | Path) -> dict:
    """``{"path", "sha256", "bytes"}`` for a file; for a directory, a digest over its files."""
    p = Path(path)
    if p.is_file():
        size = p.stat().st_size
        if size <= _HASH_LIMIT:
            return {"path": str(p), "bytes": size, "sha256": sha256_file(p)}
        return {
            "path": str(p),
            "bytes": size,
            "mtime": p.stat().st_mtime,
            "sha256": None,
            "note": "large file: identified by size and mtime",
        }
    if p.is_dir():
        h = hashlib.sha256()
        total = 0
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            st = f.stat()
            total += st.st_size
            digest = sha256_file(f) if st.st_size <= _HASH_LIMIT else f"{st.st_size}:{st.st_mtime}"
            h.update(f"{f.relative_to(p)}\0{digest}\n".encode())
        return {"path": str(p), "bytes": total, "sha256": h.hexdigest(), "kind": "directory"}
    return {"path": str(p), "note": "not a local path"}


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


def write_manifest(
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
    """Write ``<output>.manifest.json`` atomically and return its path.

    ``config`` is the stage's dataclass config (or a plain dict); ``inputs`` are paths (hashed
    here) or ready-made dicts; ``extra`` holds stage-specific sections (backend usage, cuts...).
    """
    cfg = to_dict(config) if not isinstance(config, dict) else config
    doc = {
        "stage": stage,
        "output": str(output),
        "complete": complete,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": redact(cfg),
        "config_hash": config_hash(config),
        "fingerprint": fingerprint(config),
        "inputs": [i if isinstance(i, dict) else describe_input(i) for i in inputs],
        "versions": package_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "sampling": redact(sampling or {}),
        "counts": counts or {},
        "timings": timings or {},
    }
    doc.update(redact(extra))
    # a full disk: no half-written manifest left beside the output
    return write_text_atomic(manifest_path(output), json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


def read_manifest(output: str | Path) -> dict | None:
    path = manifest_path(output)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))
