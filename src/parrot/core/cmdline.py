"""A stage config on the command line: ``--config FILE``, one flag per field (``--max-turns 8``) and
``key=value`` overrides anywhere (``max_turns=8``, ``assistant.temperature=0.2`` for a nested field);
precedence: defaults < ``--config`` file < flags < overrides (see :mod:`parrot.core.config`)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from typing import Any

from parrot import ParrotError
from parrot.core.config import COMMAND_LINE, build_config, range_text, required, strip_optional
from parrot.core.yamlfile import load_yaml

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=")
_NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # a flag's value, not a flag


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--config``, one flag per field, and ``key=value`` overrides to ``parser``."""
    shown = getattr(cls, "CONFIG_HELP", "YAML file with settings (command line wins)")
    parser.add_argument("--config", metavar="FILE", help=shown)
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("cli", True)]
    for f in sorted(fields, key=lambda f: f.kw_only is True):  # the stage's own settings first, then --resume...
        meta, tp = f.metadata, strip_optional(hints[f.name])[0]
        is_list = typing.get_origin(tp) is list or tp is list
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            default = getattr(default, dataclasses.fields(default)[0].name)
        shown = [range_text(meta)] if range_text(meta) else []
        shown += [f"default: {default}"] if default not in (None, dataclasses.MISSING, "", [], {}) else []
        shown = f" ({'; '.join(shown)})" if shown else ""
        kw: dict[str, Any] = {"help": meta.get("help", "").replace("%", "%%") + shown, "default": argparse.SUPPRESS}
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        if meta.get("positional"):  # optional for argparse: a YAML file may give it (build_config checks)
            parser.add_argument(f.name, nargs="*" if is_list else "?", metavar=f.name.upper(), **kw)
            continue
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif is_list:
            kw.update(nargs=meta.get("nargs") or "+", metavar="VALUE")
        else:
            kw["metavar"] = "SPEC" if dataclasses.is_dataclass(tp) else f.name.split("_")[-1].upper()
        names = [meta["flag"]] if meta.get("flag") else []
        parser.add_argument(*names, f"--{f.name.replace('_', '-')}", dest=f.name, **kw)
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
    """Defaults < ``--config`` YAML < flags < ``key=value`` overrides (in that order)."""
    fields = dataclasses.fields(cls)
    flags = {f.name: getattr(args, f.name) for f in fields if hasattr(args, f.name)}
    given = getattr(args, "config", None)
    # a config that ships named files (the pipeline's demo, paper...) says which file a name means
    file = load_yaml(cls.config_file(given) if hasattr(cls, "config_file") else given) if given else {}
    overrides = getattr(args, "overrides", None)
    try:
        return build_config(cls, [file, flags], overrides, where=COMMAND_LINE, extra_field=extra_field)
    except ParrotError as e:
        # argparse gives a list option every word after it, a positional argument included
        lists = [
            f"--{f.name.replace('_', '-')}"
            for f in fields
            if isinstance(flags.get(f.name), list) and not f.metadata.get("positional")
        ]
        unset = [f for f in fields if f.metadata.get("positional") and required(f) and not flags.get(f.name)]
        if lists and [f for f in unset if not file.get(f.name)]:
            hint = f"{', '.join(lists)} takes every word after it: put the positional arguments before it"
            raise ParrotError(f"{e} ({hint})") from None
        raise
