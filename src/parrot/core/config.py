"""Typed stage configs: dataclass defaults < YAML file (``--config``) < command line.

Every stage has one ``@dataclass`` config whose fields carry their help text. The command line
accepts each field as a flag (``--max-turns 8``) and as a ``key=value`` override
(``max_turns=8``, ``assistant.temperature=0.2`` for a nested field). Values are coerced to the
field's type; a wrong key or value is an error that names where it came from.

>>> from dataclasses import dataclass
>>> @dataclass
... class Demo:
...     turns: int = opt(10, "maximum turns")
...     names: list = opt(list, "dataset names")
>>> build_config(Demo, overrides=["turns=3", "names=[a, b]"])
Demo(turns=3, names=['a', 'b'])
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from parrot import ParrotError

_MISSING = dataclasses.MISSING


def opt(
    default: Any = _MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    positional: bool = False,
    nargs: str | None = None,
    choices: list | None = None,
    hashed: bool = True,
    selects: bool = False,
    digest: bool = False,
    cli: bool = True,
    passthrough: bool = False,
) -> Any:
    """A config field with its help text.

    ``default`` may be a value or a zero-argument factory (``list``, ``dict``, a dataclass).
    ``flag`` adds a short flag (``"-o"``); ``positional`` makes it a positional argument;
    ``cli=False`` keeps it off the command line (still settable from YAML and ``key=value``);
    ``passthrough=True`` (a dict handed on as is, such as a backend's ``extra``) reads its
    command-line values as YAML: ``extra.top_k=40`` is 40, not "40".

    What :func:`config_hash` (a stage's fingerprint) covers: every field, unless
    ``hashed=False`` (a serving option or a run control: concurrency, timeouts, retries, the
    output path, ``--resume``; it does not change what a stage produces) or ``selects=True`` (it
    chooses *which* items a resumable stage does, not what a record says: ``--limit``, the
    question ids, the answer files to judge; a run that selects more adds to the same output).
    ``digest=True`` (a field naming input files) adds the files' contents: a seed file
    regenerated under the same name is another input.
    """
    meta = {
        "help": help,
        "flag": flag,
        "positional": positional,
        "nargs": nargs,
        "choices": choices,
        "hashed": hashed and not selects,
        "selects": selects,
        "digest": digest,
        "cli": cli,
        "passthrough": passthrough,
    }
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    if callable(default) and not isinstance(default, (str, int, float, bool)):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---------------------------------------------------------------- type coercion


def _origin_args(tp: Any) -> tuple[Any, tuple]:
    origin = typing.get_origin(tp)
    return origin, typing.get_args(tp)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin, args = _origin_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (from YAML or a command line string) to type ``tp``.

    Raises ParrotError naming ``where`` (``"file.yaml: key"`` or ``"command line: key"``).
    """
    tp, optional = _strip_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("null", "none", "~")):
        if optional or tp is Any:
            return None
        raise ParrotError(f"{where}: a value is required, got null")
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, str):  # shorthand: "spec" sets the first field
            first = dataclasses.fields(tp)[0].name
            return build_config(tp, data={first: value}, where=where)
        if isinstance(value, dict):
            return build_config(tp, data=value, where=where)
        raise ParrotError(f"{where}: expected a mapping or a string, found {type(value).__name__}")
    origin, args = _origin_args(tp)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return (
                int(float(value))
                if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.0*)?(e\+?\d+)?", value.strip(), re.I)
                else int(value)
            )
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            if isinstance(value, bool):
                raise ParrotError(
                    f"{where}: expected a string, found {value} (YAML reads an unquoted "
                    "yes/no/on/off/true/false as a boolean: quote it, e.g. 'no')"
                )
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if tp is Path:
            return Path(value)
        if origin in (list, tuple) or tp in (list, tuple):
            if isinstance(value, str):
                parsed = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
                value = parsed
            if not isinstance(value, (list, tuple)):
                value = [value]
            inner = args[0] if args else Any
            return [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        if origin is dict or tp is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
        if origin is typing.Literal:
            if value not in args:
                raise ParrotError(f"{where}: expected one of {list(args)}, found {value!r}")
            return value
    except (ValueError, TypeError, yaml.YAMLError):
        raise ParrotError(f"{where}: expected {_type_name(tp)}, found {value!r}") from None
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


# ---------------------------------------------------------------- building


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def build_config(
    cls: type,
    data: dict | None = None,
    overrides: list[str] | dict | None = None,
    *,
    where: str = "config",
    extra_field: str | None = None,
):
    """Build ``cls`` from a mapping plus ``key=value`` overrides, coercing and validating.

    Unknown keys are an error naming ``where``, unless ``extra_field`` names a dict field that
    collects them (training passes those through to TRL).
    """
    data = dict(data or {})
    if isinstance(overrides, dict):
        overrides = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ParrotError(f"command line: expected key=value, found {item!r}")
        value: Any = raw
        _set_dotted(data, key.strip().replace("-", "_"), value)
    return _construct(cls, data, where, extra_field)


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        cur = node.get(p)
        if isinstance(cur, str):  # shorthand spec string; expand so a nested key can be set
            cur = {"__shorthand__": cur}
        # a copy: the caller's mapping (a YAML file's) stays as it was
        cur = dict(cur) if isinstance(cur, dict) else {}
        node[p] = cur
        node = cur
    old = node.get(parts[-1])
    if isinstance(old, dict) and isinstance(value, str):
        # `model=SPEC` over a YAML mapping: a role keeps its other options (concurrency, ...) and
        # takes the new spec, as `--model SPEC` does. A plain dict field is replaced (see _construct).
        value = {**old, _REPLACES: value}
    node[parts[-1]] = value


_REPLACES = "__replaces_first_field__"


def _construct(cls: type, data: dict, where: str, extra_field: str | None):
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    first = dataclasses.fields(cls)[0].name
    shorthand = data.pop("__shorthand__", None)
    if shorthand is not None:
        data.setdefault(first, shorthand)
    if _REPLACES in data:
        data[first] = data.pop(_REPLACES)
    for key, value in data.items():
        if not isinstance(key, str):
            raise ParrotError(f"{where}: expected setting names as keys, found {key!r}")
        k = key.replace("-", "_")
        if k not in fields or not fields[k].init:
            if extra_field:
                extra[k] = _yaml_scalar(value[_REPLACES] if isinstance(value, dict) and _REPLACES in value else value)
                continue
            known = ", ".join(sorted(fields))
            close = difflib.get_close_matches(k, list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ParrotError(f"{where}: unknown key {key!r} for {cls.__name__}{hint} (known keys: {known})")
        tp = hints[k]
        base, _ = _strip_optional(tp)
        if isinstance(value, dict) and _REPLACES in value and not dataclasses.is_dataclass(base):
            value = value[_REPLACES]  # a string given for a plain dict field replaces it
        if dataclasses.is_dataclass(base) and isinstance(value, dict):
            value = _construct(base, dict(value), f"{where}: {k}", None)
        else:
            value = coerce(value, tp, f"{where}: {k}")
            if fields[k].metadata.get("passthrough") and isinstance(value, dict):
                value = _yaml_leaves(value)
        kwargs[k] = value
    if extra_field:
        merged = dict(kwargs.get(extra_field) or {})
        merged.update(extra)
        kwargs[extra_field] = merged
    missing = [
        f.name
        for f in fields.values()
        if f.init and f.name not in kwargs and f.default is _MISSING and f.default_factory is _MISSING
    ]
    if missing:
        raise ParrotError(f"{where}: missing required setting(s) {', '.join(missing)} for {cls.__name__}")
    try:
        return cls(**kwargs)
    except ParrotError:
        raise
    except (TypeError, ValueError) as e:
        raise ParrotError(f"{where}: {e}") from None


def _yaml_scalar(value: Any) -> Any:
    """Command-line strings for pass-through keys: '3' -> 3, 'true' -> True, '1e-5' -> 1e-05."""
    if not isinstance(value, str):
        return value
    if value.lower() in ("yes", "no", "on", "off", "y", "n"):
        return value  # YAML 1.1 would make these booleans; TRL's `save_strategy=no` means "no"
    try:
        return float(value) if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value) else yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _yaml_leaves(value: Any) -> Any:
    """:func:`_yaml_scalar` on every string inside nested dicts and lists."""
    if isinstance(value, dict):
        return {k: _yaml_leaves(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_leaves(v) for v in value]
    return _yaml_scalar(value)


def load_yaml(path: str | Path) -> dict:
    """Read a YAML config file; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise ParrotError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = f":{mark.line + 1}" if mark else ""
        raise ParrotError(f"{path}{loc}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParrotError(f"{path}: expected a mapping of settings at top level, found {type(data).__name__}")
    return data


def with_yaml_line(message: str, path: str) -> str:
    """``"cfg.yaml: asker: temperature: expected ..."`` → ``"cfg.yaml:4: asker: ..."``: the line of
    the deepest key the message names (unchanged when it names none)."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return message
    rest = message[len(path) + 2 :]
    node, line = root, None
    for seg in rest.split(": "):
        unknown = re.match(r"unknown key '(.+?)'", seg)
        name = unknown.group(1) if unknown else re.sub(r"\[\d+\]$", "", seg)
        match = (
            next(((k, v) for k, v in node.value if str(k.value) == name), None)
            if isinstance(node, yaml.MappingNode)
            else None
        )
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
        if unknown:
            break
    return f"{path}:{line}: {rest}" if line else message


def to_dict(cfg: Any) -> dict:
    """The effective config as plain JSON-able data."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


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


# ---------------------------------------------------------------- command line

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--config``, one flag per field, and ``key=value`` overrides to ``parser``."""
    parser.add_argument("--config", metavar="FILE", help="YAML file with settings (command line wins)")
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not f.init or not meta.get("cli", True):
            continue
        tp, _ = _strip_optional(hints[f.name])
        origin, _ = _origin_args(tp)
        help_ = meta.get("help", "").replace("%", "%%")  # argparse formats help with %
        default = (
            f.default
            if f.default is not _MISSING
            else (f.default_factory() if f.default_factory is not _MISSING else None)
        )
        if dataclasses.is_dataclass(default):
            default = getattr(default, dataclasses.fields(default)[0].name)
        if default not in (None, "", [], {}):
            help_ = f"{help_} (default: {default})"
        kw: dict[str, Any] = {"help": help_, "default": argparse.SUPPRESS, "dest": f.name}
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        if meta.get("positional"):
            kw.pop("dest")
            # Optional for argparse: a YAML file may supply it; build_config reports it if missing.
            parser.add_argument(
                f.name, nargs="*" if origin is list or tp is list else "?", metavar=f.name.upper(), **kw
            )
            continue
        names = [f"--{f.name.replace('_', '-')}"]
        if meta.get("flag"):
            names.insert(0, meta["flag"])
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif origin is list or tp is list:
            kw["nargs"] = meta.get("nargs") or "+"
            kw["metavar"] = "VALUE"
        else:
            kw["metavar"] = "SPEC" if dataclasses.is_dataclass(tp) else f.name.split("_")[-1].upper()
        parser.add_argument(*names, **kw)
    parser.epilog = (
        "Any setting can also be given as KEY=VALUE anywhere on the command line, "
        "nested ones with dots (assistant.temperature=0.2); precedence: defaults < "
        "--config FILE < command line."
    )


def flags_without_value(parser: argparse.ArgumentParser) -> set[str]:
    """Option strings (of ``parser`` and its subcommands) that take no value: ``--rejoin``, ``-v``."""
    out: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= flags_without_value(sub)
        elif action.option_strings and action.nargs == 0:
            out.update(action.option_strings)
    return out


_NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # a flag's value, not a flag


def split_overrides(argv: list[str], no_value: set[str] = frozenset()) -> tuple[list[str], list[str]]:
    """Pull ``key=value`` tokens out of argv so they never clash with positional arguments.

    A token that follows an option expecting a value (``-o a=b.jsonl``) is left alone;
    ``no_value`` names the flags that take none (``--rejoin key=value`` is an override).
    """
    rest: list[str] = []
    overrides: list[str] = []
    prev_takes_value = False
    for tok in argv:
        if not prev_takes_value and _OVERRIDE.match(tok) and not tok.startswith("-"):
            overrides.append(tok)
            continue
        rest.append(tok)
        prev_takes_value = (
            tok.startswith("-")
            and "=" not in tok
            and not tok.startswith("--no-")
            and tok not in no_value
            and not _NEGATIVE_NUMBER.fullmatch(tok)
        )
    return rest, overrides


def config_from_args(cls: type, args: argparse.Namespace, *, extra_field: str | None = None):
    """Defaults < ``--config`` YAML < flags and ``key=value`` overrides (in that order)."""
    data: dict[str, Any] = {}
    where = "command line"
    if getattr(args, "config", None):
        data = load_yaml(args.config)
        where = str(args.config)
    file_cfg = data
    names = {f.name for f in dataclasses.fields(cls)}
    flags = {k: v for k, v in vars(args).items() if k in names}
    # Flags and overrides are validated as "command line"; the file's own keys keep its name.
    merged = dict(file_cfg)
    for k, v in flags.items():
        # --asker SPEC on top of a file's `asker: {spec: ..., concurrency: ...}` keeps the options,
        # as `asker=SPEC` does (see _set_dotted)
        merged[k] = {**merged[k], _REPLACES: v} if isinstance(merged.get(k), dict) and isinstance(v, str) else v
    try:
        return build_config(
            cls, merged, list(getattr(args, "overrides", []) or []), where=where, extra_field=extra_field
        )
    except ParrotError as e:
        # argparse gives a list option every word after it, a positional argument included
        fields = dataclasses.fields(cls)
        lists = [
            f"--{f.name.replace('_', '-')}"
            for f in fields
            if isinstance(flags.get(f.name), list) and not f.metadata.get("positional")
        ]
        required = [f for f in fields if f.default is _MISSING and f.default_factory is _MISSING]
        if lists and any(f.metadata.get("positional") and not merged.get(f.name) for f in required):
            raise ParrotError(
                f"{e} ({', '.join(lists)} takes every word after it: put the positional arguments before it)"
            ) from None
        if where != "command line" and str(e).startswith(f"{where}:"):
            if _error_in_file(cls, file_cfg, where, extra_field) != str(e):
                raise ParrotError("command line" + str(e)[len(where) :]) from None  # the file is fine
            raise ParrotError(with_yaml_line(str(e), where)) from None
        raise


def _error_in_file(cls: type, file_cfg: dict, where: str, extra_field: str | None) -> str | None:
    """The error the YAML file on its own gives, if any (a missing setting does not count: the
    command line may give it). The file is blamed only for the very error it gives alone."""
    try:
        build_config(cls, dict(file_cfg), where=where, extra_field=extra_field)
    except ParrotError as e:
        if str(e).startswith(f"{where}:") and "missing required setting" not in str(e):
            return str(e)
    return None
