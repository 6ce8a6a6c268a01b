"""YAML as settings are read from it: each key of a file remembers its line (a :class:`Key`), a bare
yes/no/on/off stays a word (a :class:`Word`) and 1e-5 is a number, as 1.0e-5 is.

What parses but cannot be meant as settings is refused (:class:`Refused`, naming its lines): a key
given twice in one mapping (YAML would keep the last silently), values nested deeper than
:data:`MAX_DEPTH`, and aliases that bring in more than :data:`MAX_ALIASED` values all together (a
few anchors shared by sections are fine; a "billion laughs" alias bomb is not) or that refer to a
value holding them."""

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


MAX_DEPTH = 64  # levels of nested mappings and lists, aliases expanded
MAX_ALIASED = 100_000  # values (scalars, lists, mappings) the aliases of one document bring in


class Refused(yaml.YAMLError):
    """YAML that parses but is refused as settings; ``lines`` (1-based) say where."""

    def __init__(self, message: str, *lines: int):
        super().__init__(message)
        self.lines = lines


class _Loader(yaml.SafeLoader):
    source: str | None = None  # the file's name

    def compose_document(self):
        self._depth, self._aliased, self._open, self._shape = 0, 0, set(), {}
        return super().compose_document()

    def compose_node(self, parent, index):
        """The composer's node, refused where the nesting or the aliases go too far (see the module)."""
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise Refused(f"alias *{event.anchor} refers to a value that holds it", line)
            node = super().compose_node(parent, index)
            size, height = self._measure(node)
            self._aliased += size
            if self._depth + height > MAX_DEPTH:
                raise Refused(f"values nested more than {MAX_DEPTH} levels deep (aliases expanded)", line)
            if self._aliased > MAX_ALIASED:
                raise Refused(f"aliases expand to more than {MAX_ALIASED} values (an alias bomb?)", line)
            return node
        if self._depth >= MAX_DEPTH:
            raise Refused(f"values nested more than {MAX_DEPTH} levels deep", line)
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if anchor:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor)

    def _measure(self, node) -> tuple[int, int]:
        """``(values, levels)`` of ``node`` with its aliases expanded (each node measured once)."""
        if id(node) not in self._shape:
            if isinstance(node, yaml.ScalarNode):
                children = []
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                children = [n for pair in node.value for n in pair]
            shapes = [self._measure(child) for child in children]
            self._shape[id(node)] = (1 + sum(s for s, _ in shapes), 1 + max((h for _, h in shapes), default=0))
        return self._shape[id(node)]

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):  # a key given twice; a merged (<<) one may be given again
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                try:
                    earlier = first.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the constructor's own error
                    continue
                if earlier is not key_node:
                    lines = (earlier.start_mark.line + 1, key_node.start_mark.line + 1)
                    raise Refused(f"duplicate key {key!r}", *lines)
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
    """``text`` read as YAML; with a ``source`` (a file's name) its mappings' keys know their lines.
    What cannot be settings is a :class:`Refused` (see the module)."""
    return yaml.load(text, type("Loader", (_Loader,), {"source": source}))  # a SafeLoader


def load_yaml(path: str | Path) -> dict:
    """A YAML config file's settings, each key knowing its line; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ParrotError(f"{path}: config file not found")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ParrotError(f"{path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ParrotError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}): save the file as UTF-8"
        ) from None
    try:
        data = read_yaml(text, str(path))
    except Refused as e:
        raise ParrotError(f"{' and '.join(f'{path}:{line}' for line in e.lines)}: {e}") from None
    except yaml.YAMLError as e:
        line = f":{e.problem_mark.line + 1}" if getattr(e, "problem_mark", None) else ""
        raise ParrotError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict | None):
        raise ParrotError(f"{path}: expected a mapping of settings at top level, found {type(data).__name__}")
    if bad := [k for k in data or {} if not isinstance(k, str)]:
        raise ParrotError(f"{path}: expected setting names as keys, found {bad[0]!r}")
    return data or {}
