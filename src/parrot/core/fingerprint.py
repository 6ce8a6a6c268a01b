"""The one fingerprint of a stage's settings: what its output depends on.

``config_hash(cfg)`` is recorded in every manifest; ``--resume`` (:mod:`parrot.core.outputs`) and
``parrot pipeline`` compare it to tell whether an output was made with the current settings. It
covers every field of the config, recursing into nested configs (a model role) and pass-through
dicts, except the fields marked in their metadata (:func:`parrot.core.config.opt`): serving
options and run controls (``hashed=False``: concurrency, timeouts, retries, base_url, the output
path, --resume) and item selections (``selects=True``: --limit, question ids, the answer files to
judge). A field marked ``digest=True`` adds the contents of the files it names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from parrot.core.config import to_dict


def fingerprint(cfg: Any) -> dict:
    """What a stage's output depends on, flat: ``{"bench": "mt-bench", "model.spec": "...",
    "model.temperature": 0.7, "seeds": "s.jsonl", "seeds (contents)": "<sha256>", ...}``.

    Every field, recursing into nested dataclasses (a role's :class:`BackendConfig`) and dicts
    (pass-through options), except those marked ``hashed=False`` or ``selects=True`` (see
    :func:`opt`); a ``digest=True`` field adds the contents of the files it names. Secrets are
    redacted (a new token does not change what a stage produces). A plain dict is taken whole.
    """
    from parrot.core.redact import redact

    def kept(value: Any) -> Any:
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            return to_dict(value)
        out = {}
        for f in dataclasses.fields(value):
            if f.metadata.get("hashed", True):
                out[f.name] = kept(getattr(value, f.name))
                if f.metadata.get("digest"):
                    out[f"{f.name} (contents)"] = _contents(getattr(value, f.name))
        return out

    flat: dict[str, Any] = {}

    def flatten(value: Any, key: str) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                flatten(v, f"{key}.{k}" if key else str(k))
        else:
            flat[key] = value

    flatten(redact(kept(cfg)), "")  # redacted while the keys still name the secrets
    return json.loads(json.dumps(flat, default=str))  # as a manifest holds it: tuples are lists


def config_hash(cfg: Any) -> str:
    """sha256 of the canonical JSON of :func:`fingerprint`: the one fingerprint of a stage's
    settings, recorded in its manifest and compared by ``--resume`` and ``parrot pipeline``."""
    blob = json.dumps(fingerprint(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


_DIGESTS: dict[tuple, str | int | None] = {}


def _contents(value: Any) -> Any:
    """The sha256 of each file ``value`` names (a path or a list of them), cached per file
    version; a file too large to hash goes by its size, a directory by a digest of its files, a
    name that is no local path (``sharegpt``, ``smollm2``) by nothing."""
    from parrot.core.manifest import describe_input

    if isinstance(value, (list, tuple)):
        return [_contents(v) for v in value]
    if value is None:
        return None
    path = Path(value)
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if path.is_dir() or key not in _DIGESTS:
        described = describe_input(path)
        _DIGESTS[key] = described.get("sha256") or described.get("bytes")
    return _DIGESTS[key]
