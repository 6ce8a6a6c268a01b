"""YAML as settings are read from it: each key of a file remembers its line (a :class:`Key`), a bare
yes/no/on/off stays a word (a :class:`Word`) and 1e-5 is a number, as 1.0e-5 is."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from parrot import ParrotError


class Key(str):
    """A setting's name that remembers where it was given: ``cfg.yaml:4`` or ``command line``."""

    def __new__(cls, name: str, place: str = ""):
        key = super().__new__(cls, name)
        key.place = place
        return key


class Word(str):
    """A bare yes/no/on/off: YAML 1.1's boolean wherever a typed setting takes it (see config.coerce),
    the word itself where anything goes (pass-through options: TRL's ``save_strategy: no``)."""


class _Loader(yaml.SafeLoader):
    source: str | None = None  # the file's name

    def construct_mapping(self, node, deep=False):
        mapping = super().construct_mapping(node, deep)
        lines = {self.construct_object(k): f"{self.source}:{k.start_mark.line + 1}" for k, _ in node.value}
        return {Key(k, lines[k]) if self.source and isinstance(k, str) else k: v for k, v in mapping.items()}

    def construct_yaml_bool(self, node):
        word = self.construct_scalar(node)
        return word.lower() == "true" if word.lower() in ("true", "false") else Word(word)


_Loader.add_constructor("tag:yaml.org,2002:bool", _Loader.construct_yaml_bool)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+.0123456789")
)


def read_yaml(text: str, source: str | None = None) -> Any:
    """``text`` read as YAML; with a ``source`` (a file's name) its mappings' keys know their lines."""
    return yaml.load(text, type("Loader", (_Loader,), {"source": source}))  # a SafeLoader


def load_yaml(path: str | Path) -> dict:
    """A YAML config file's settings, each key knowing its line; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ParrotError(f"{path}: config file not found")
    try:
        data = read_yaml(path.read_text(encoding="utf-8"), str(path))
    except yaml.YAMLError as e:
        line = f":{e.problem_mark.line + 1}" if getattr(e, "problem_mark", None) else ""
        raise ParrotError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict | None):
        raise ParrotError(f"{path}: expected a mapping of settings at top level, found {type(data).__name__}")
    if bad := [k for k in data or {} if not isinstance(k, str)]:
        raise ParrotError(f"{path}: expected setting names as keys, found {bad[0]!r}")
    return data or {}
