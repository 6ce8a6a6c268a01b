"""The one fingerprint of a stage's settings: what its output depends on.

``config_hash(cfg)`` is recorded in every manifest; ``--resume`` (:mod:`parrot.core.outputs`) and
``parrot pipeline`` compare it to tell whether an output was made with the current settings. It
covers every field of the config, recursing into nested configs (a model role) and pass-through
dicts, except the fields marked in their metadata (:func:`parrot.core.config.opt`): serving
options and run controls (``hashed=False``: concurrency, timeouts, retries, base_url, the output
path, --resume) and item selections (``selects=True``: --limit, question ids, the answer files to
judge). A field marked ``digest=True`` names inputs (files, directories, model specs with a local
path): the fingerprint holds what they contain, not where they are (:func:`parrot.core.digest.contents`),
so a run directory moved elsewhere keeps its fingerprints, and an input rewritten changes them;
``digest="manifest"``: what another stage's output holds, as its manifest says (a model's losses).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from parrot.core.config import to_dict
from parrot.core.digest import contents, local_path


def fingerprint(cfg: Any) -> dict:
    """What a stage's output depends on, flat: ``{"bench": "mt-bench", "model.spec":
    "hf:sha256:...", "model.temperature": 0.7, "seeds": "sha256:...", ...}``.

    Every field, recursing into nested dataclasses (a role's :class:`BackendConfig`) and dicts
    (pass-through options), except those marked ``hashed=False`` or ``selects=True`` (see
    :func:`opt`); a ``digest=True`` field by the contents of the inputs it names. Secrets are
    redacted (a new token does not change what a stage produces). A plain dict is taken whole.
    """
    from parrot.core.redact import redact

    def kept(value: Any) -> Any:
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            return to_dict(value)
        out = {}
        for f in dataclasses.fields(value):
            if f.metadata.get("hashed", True):
                field_value = getattr(value, f.name)
                how = f.metadata.get("digest")
                out[f.name] = contents(to_dict(field_value), how == "manifest") if how else kept(field_value)
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
    return hash_of(fingerprint(cfg))


def hash_of(flat: dict) -> str:
    """The hash of a fingerprint (:func:`config_hash` of the config it was taken from)."""
    blob = json.dumps(flat, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def named_inputs(cfg: Any) -> Iterator[str]:
    """Every input a config names in its ``digest=True`` fields (a path, a model spec), a list's
    items one by one, nested roles included (``asker.spec``)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        return
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("digest"):
            items = to_dict(value)
            yield from (i for i in (items if isinstance(items, list) else [items]) if isinstance(i, str) and i)
        elif dataclasses.is_dataclass(value):
            yield from named_inputs(value)


def input_paths(cfg: Any) -> list[Path]:
    """The local files and directories a stage's config names as its inputs, each once, in order."""
    return list({str(p): p for p in map(local_path, named_inputs(cfg)) if p is not None}.values())


def selection(cfg: Any) -> dict:
    """The fields that choose which items a resumable stage does (``selects=True``), as a manifest
    records them: a field that names files (the answer files a judge grades) by what they hold."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        return {}
    out = {}
    for f in dataclasses.fields(cfg):
        if f.metadata.get("selects"):
            value = to_dict(getattr(cfg, f.name))
            out[f.name] = contents(value) if f.metadata.get("digest") else value
    return json.loads(json.dumps(out, default=str))


def widened(old: Any, new: Any) -> bool:
    """Whether a selection ``new`` holds every item ``old`` held (so what was done stays valid):
    a list that keeps every old item (an empty list selects everything), a limit raised or lifted
    (None: no limit), or the same value.

    >>> widened([1, 2], [1, 2, 3]), widened([1, 2], [2]), widened([1], []), widened(2, None), widened(None, 2)
    (True, False, True, True, False)
    """
    if isinstance(old, list) and isinstance(new, list):
        return not new or (bool(old) and all(item in new for item in old))
    if isinstance(old, int) and (new is None or (isinstance(new, int) and new >= old)):
        return not isinstance(old, bool)
    return old == new
