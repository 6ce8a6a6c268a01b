"""Typed stage configs: dataclass defaults < YAML file (``--config``) < command line (:mod:`parrot.core.cmdline`).

The layers merge as nested mappings whose keys remember where they were given (``cfg.yaml:4``,
``command line``); the dataclass is then built once, each value coerced to its field's type and
checked against the range its field declares (``opt(..., min=1)``), so a bad key or value is an
error that names its place, wherever the config is built: flags, ``key=value``, YAML, a pipeline step.

>>> from dataclasses import dataclass
>>> @dataclass
... class Demo:
...     turns: int = opt(10, "maximum turns", min=1)
...     names: list = opt(list, "dataset names")
>>> build_config(Demo, overrides=["turns=3", "names=[a, b]"])
Demo(turns=3, names=['a', 'b'])
>>> build_config(Demo, overrides=["turns=0"])
Traceback (most recent call last):
parrot.ParrotError: command line: turns: expected at least 1, found 0
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from parrot import ParrotError
from parrot.core.yamlfile import Key, Refused, Word, read_yaml
from parrot.core.yamlfile import load_yaml as load_yaml  # part of this module's interface

_MISSING = dataclasses.MISSING
COMMAND_LINE = "command line"
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


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
    digest: bool | str = False,
    cli: bool = True,
    passthrough: bool = False,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    below: float | None = None,
) -> Any:
    """A config field with its help text.

    ``default`` may be a value or a zero-argument factory (``list``, ``dict``, a dataclass).
    ``flag`` adds a short flag (``"-o"``); ``positional`` makes it a positional argument;
    ``cli=False`` keeps it off the command line (still settable from YAML and ``key=value``);
    ``passthrough=True`` (a dict handed on as is, such as a backend's ``extra``) reads its
    command-line values as YAML: ``extra.top_k=40`` is 40, not "40". What the fingerprint
    (:func:`parrot.core.fingerprint.config_hash`) leaves out: ``hashed=False`` (a serving option or
    a run control) and ``selects=True`` (it chooses which items a resumable stage does);
    ``digest=True``: the field names inputs (files, folders, a model spec's path), which count by
    what they hold (``digest="manifest"``: by their manifest, for an output of another stage). A
    number's range: ``min`` and ``max`` (inclusive), ``above`` and ``below`` (exclusive); the
    builder checks it wherever the config is built (each item of a list of numbers; null, where
    allowed, is not checked) and ``--help`` shows it.
    """
    meta = {name: value for name, value in locals().items() if name != "default"}
    meta["hashed"] = hashed and not selects
    if isinstance(default, (int, float)) and not isinstance(default, bool) and not in_range(default, meta):
        raise ValueError(f"{help!r}: default {default} is not {range_text(meta)}")
    if default is _MISSING:
        return dataclasses.field(metadata=meta)
    if callable(default) and not isinstance(default, (str, int, float, bool)):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class SettingError(ParrotError):
    """A config's own check (``__post_init__``) failing on setting ``key``: the builder names its place."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


def range_text(meta: Any) -> str:
    """A field's declared range in words (``at least 1``, ``in (0, 1]``); "" if it declares none."""
    lo = ("[", meta["min"]) if meta.get("min") is not None else ("(", meta.get("above"))
    hi = ("]", meta["max"]) if meta.get("max") is not None else (")", meta.get("below"))
    if lo[1] is not None and hi[1] is not None:
        return f"in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo[1] is not None:
        return f"{'at least' if lo[0] == '[' else 'more than'} {lo[1]}"
    if hi[1] is not None:
        return f"{'at most' if hi[0] == ']' else 'less than'} {hi[1]}"
    return ""


def in_range(value: float, meta: Any) -> bool:
    """Whether ``value`` is within the range a field's metadata declares."""
    bounds = {name: meta.get(name) for name in ("min", "max", "above", "below")}
    return (
        (bounds["min"] is None or value >= bounds["min"])
        and (bounds["max"] is None or value <= bounds["max"])
        and (bounds["above"] is None or value > bounds["above"])
        and (bounds["below"] is None or value < bounds["below"])
    )


def check_range(value: Any, meta: Any, where: str) -> None:
    """A ParrotError naming ``where`` if a number (or an item of a list of them) is outside its field's range."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_range(item, meta, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and not in_range(value, meta):
        text = range_text(meta)
        raise ParrotError(f"{where}: expected {'a number ' if text.startswith('in ') else ''}{text}, found {value}")


def check_ranges(cfg: Any) -> None:
    """Every field of a config object within its declared range: the builder checks each value as it is
    given (naming its place); a config's ``__post_init__`` calls this for a config made in Python."""
    for f in dataclasses.fields(cfg):
        if range_text(f.metadata):
            check_range(getattr(cfg, f.name), f.metadata, f.name)


_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?", re.I)
_MAX_DIGITS = 4300  # Python's own limit on the digits of an int read from text


def exact_int(value: Any) -> int:
    """An int setting's value, exactly, never through a float: ``"99999999999999999999999"`` as
    written, ``"1e3"`` is 1000 and ``"1.5e1"`` 15 (read as a decimal); a YAML float such as ``1e23``
    by its shortest decimal form. A fraction, or a number of more than 4300 digits, is a ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)  # digits as written ("1_000" too)
    if isinstance(value, float) and math.isfinite(value):
        text = repr(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        text = value.strip()
    else:
        raise ValueError(value)
    number = decimal.Decimal(text)
    if number.adjusted() >= _MAX_DIGITS or number != number.to_integral_value():
        raise ValueError(value)
    return int(number)


def strip_optional(tp: Any) -> tuple[Any, bool]:
    """``(int, True)`` for ``int | None``; ``(tp, False)`` for a type that is not optional."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def required(f: dataclasses.Field) -> bool:
    """Whether a config field has no default."""
    return f.default is _MISSING and f.default_factory is _MISSING


def _role(tp: Any) -> type | None:
    """The config class a field holds (``BackendConfig`` for ``asker: BackendConfig | None``), if any."""
    tp = strip_optional(tp)[0]
    return tp if dataclasses.is_dataclass(tp) else None


def coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` (from YAML or a command-line string) as a ``tp``, else a ParrotError naming ``where``."""
    tp, optional = strip_optional(tp)
    origin, args = typing.get_origin(tp) or tp, typing.get_args(tp)
    value = value.lower() in _TRUE if isinstance(value, Word) else value  # a bare yes/no: YAML's boolean
    if value is None or (optional and isinstance(value, str) and value.lower() in ("null", "none", "~")):
        if optional or tp is Any:
            return None
        raise ParrotError(f"{where}: a value is required, got null")
    if tp is str and isinstance(value, bool):
        raise ParrotError(
            f"{where}: expected a string, found {value} (YAML reads an unquoted "
            "yes/no/on/off/true/false as a boolean: quote it, e.g. 'no')"
        )
    if dataclasses.is_dataclass(tp) and not isinstance(value, tp):
        raise ParrotError(f"{where}: expected a mapping or a string, found {type(value).__name__}")
    if origin is typing.Literal and value not in args:
        raise ParrotError(f"{where}: expected one of {list(args)}, found {value!r}")
    try:
        if tp is bool and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, bool) != (tp is bool) and tp in (bool, int, float, Path):
            raise ValueError
        if tp is int:
            return exact_int(value)
        if tp is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if tp is str and isinstance(value, (dict, list)):
            raise ValueError
        if tp in (str, Path):
            return tp(value)
        if origin in (list, tuple):
            if isinstance(value, str):
                value = read_yaml(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
            items = value if isinstance(value, list) else [value]
            return [coerce(v, args[0] if args else Any, f"{where}[{i}]") for i, v in enumerate(items)]
        if origin is dict:
            value = read_yaml(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except Refused as e:
        raise ParrotError(f"{where}: {e}") from None
    except (ValueError, TypeError, OverflowError, yaml.YAMLError):
        raise ParrotError(f"{where}: expected {getattr(tp, '__name__', tp)}, found {value!r}") from None
    return value


def _merge(cls: type | None, base: dict, over: dict, place: str) -> dict:
    """``over`` on top of ``base``, both settings of ``cls`` (None: not known); ``over``'s keys that do not
    say where they were given were given at ``place``. Mappings merge, other values replace; a string for
    a config-typed field (a model role) sets its first field, ``spec``, and keeps the role's other options
    (``--asker SPEC`` over a file's ``asker: {spec: ..., concurrency: 4}`` keeps concurrency 4)."""
    hints = typing.get_type_hints(cls) if cls else {}
    out = dict(base)
    for key, value in over.items():
        key = Key(key, place) if isinstance(key, str) and not isinstance(key, Key) else key
        tp = hints.get(key.replace("-", "_")) if isinstance(key, str) else None
        if _role(tp) and isinstance(value, str):
            value = {dataclasses.fields(_role(tp))[0].name: value}
        if isinstance(value, dict):  # a pipeline section (a dict) holds the settings of a stage's config
            base_value = out[key] if isinstance(out.get(key), dict) else {}
            of = _role(tp) or _section(cls, key, tp, {**base_value, **value})
            value = _merge(of, base_value, value, getattr(key, "place", place))
        if key in out:  # in its place (the order of a pipeline's steps), the new key knowing where it was given
            out = {(key if k == key else k): (value if k == key else v) for k, v in out.items()}
        else:
            out[key] = value
    return out


def _section(cls: type | None, key: str, tp: Any, value: dict) -> type | None:
    """The config class whose settings a mapping under ``key`` holds, where ``cls`` says (its
    ``section_config(key, value)``: the pipeline's steps, each a stage's settings), else None."""
    if cls is None or not hasattr(cls, "section_config") or tp not in (dict, None):
        return None
    return cls.section_config(key, value)


def build_config(cls, data=None, overrides=None, *, where="config", extra_field=None, within=None):
    """Build ``cls`` from a mapping (or a list of them, lowest first) and command-line ``key=value`` overrides.

    Errors name where each setting was given (``where`` for keys that do not know). An unknown key is an
    error unless ``extra_field`` names a dict field that collects them (training passes those to TRL).
    ``within`` names a pipeline stage's section: errors name it; one about the section as a whole is a
    SettingError, for the pipeline config's builder to place.
    """
    hints = typing.get_type_hints(cls)
    # a config's default (the judge's model, the pipeline's steps) is a layer too: judge.max_tokens=100
    # keeps its spec, and a config's steps merge into the default experiment's
    layered = {
        f.name: to_dict(f.default_factory()) if _role(hints[f.name]) else f.default_factory()
        for f in dataclasses.fields(cls)
        if f.default_factory is not _MISSING
        and (_role(hints[f.name]) or (hints[f.name] is dict and hasattr(cls, "section_config")))
    }
    merged = _merge(cls, {}, layered, "defaults")
    for layer in data if isinstance(data, list) else [data or {}]:
        merged = _merge(cls, merged, layer, where)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParrotError(f"{COMMAND_LINE}: expected key=value, found {item!r}")
        for part in reversed(key.strip().replace("-", "_").split(".")):
            value = {part: value}
        merged = _merge(cls, merged, value, COMMAND_LINE)
    return _build(cls, merged, where, f"{within}: " if within else "", extra_field, within)


def _build(cls: type, data: dict, place: str, path: str, extra_field: str | None, within: str | None):
    """``cls`` from merged settings given at ``place``; ``path`` names them in errors (``"asker: "``)."""

    def error(message: str) -> ParrotError:  # about the mapping as a whole
        top = within and path == f"{within}: "
        return SettingError(f"{path}{message}", within) if top else ParrotError(f"{place}: {path}{message}")

    fields, hints = {f.name: f for f in dataclasses.fields(cls) if f.init}, typing.get_type_hints(cls)
    if bad := [k for k in data if not isinstance(k, str)]:
        raise error(f"expected setting names as keys, found {bad[0]!r}")
    keys = {key.replace("-", "_"): key for key in data}
    if (unknown := [key for name, key in keys.items() if name not in fields]) and not extra_field:
        name = unknown[0].replace("-", "_")
        close = "".join(f"; did you mean {c!r}?" for c in difflib.get_close_matches(name, fields, n=1))
        if hint := getattr(cls, "moved_key_hint", lambda key: None)(name):  # a key that used to exist
            close = f"; {hint}"
        known = ", ".join(sorted(fields))
        raise ParrotError(
            f"{unknown[0].place}: {path}unknown key {unknown[0]!r} for {cls.__name__}{close} (known keys: {known})"
        )
    kwargs = {}
    for name in [n for n in fields if n in keys]:  # in the config's own order, whichever layer gave each
        key, value, role = keys[name], data[keys[name]], _role(hints[name])
        if role and isinstance(value, dict):
            kwargs[name] = _build(role, value, key.place, f"{path}{name}: ", None, within)
        else:
            value = coerce(value, hints[name], f"{key.place}: {path}{name}")
            check_range(value, fields[name].metadata, f"{key.place}: {path}{name}")
            kwargs[name] = (
                _plain(value, prefix=f"{path}{name}: ") if fields[name].metadata.get("passthrough") else value
            )
    if extra_field:
        extra = {Key(key.replace("-", "_"), key.place): data[key] for key in unknown}
        kwargs[extra_field] = _plain({**kwargs.get(extra_field, {}), **extra}, prefix=path)
    if missing := [name for name, f in fields.items() if name not in kwargs and required(f)]:
        raise error(f"missing required setting(s) {', '.join(missing)} for {cls.__name__}")
    try:
        return cls(**kwargs)
    except SettingError as e:
        at = next((key.place for key in data if key == e.key), getattr(e.key, "place", place))
        raise ParrotError(f"{at}: {path}{e}") from None
    except (ParrotError, TypeError, ValueError) as e:
        if within:  # a config in a pipeline section failing its own check: the section's error
            raise SettingError(f"{within}: {e}", within) from None
        if isinstance(e, ParrotError):
            raise
        raise error(str(e)) from None


def _plain(value: Any, from_command_line: bool = False, prefix: str = "") -> Any:
    """Pass-through data: command-line strings read as YAML (``extra.top_k=40`` is 40), bare yes/no words
    kept; ``prefix`` names the value in errors (``assistant: extra: ``)."""
    if from_command_line and type(value) is str:
        try:
            value = read_yaml(value)
        except Refused as e:  # a duplicate key or an alias bomb: an error, not a string
            raise ParrotError(f"{COMMAND_LINE}: {prefix}{e}") from None
        except yaml.YAMLError:
            pass
    if isinstance(value, dict):
        return {k: _plain(v, getattr(k, "place", None) == COMMAND_LINE, f"{prefix}{k}: ") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Word) else value


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
