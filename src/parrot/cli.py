"""``parrot``: a thin command line over the stage functions.

Each command is a stage's config dataclass plus the function that runs it; flags,
``--config FILE`` and ``key=value`` overrides all come from the dataclass (see
:mod:`parrot.config`). A :class:`~parrot.ParrotError` prints as one line and exits with 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass

from parrot import ParrotError, __version__
from parrot.config import add_config_arguments, config_from_args, split_overrides
from parrot.log import setup_logging


@dataclass(frozen=True)
class Command:
    name: str            # "prepare", or "eval answer" for a nested command
    target: str          # "module:ConfigClass:function"
    help: str
    extra_field: str | None = None  # a dict field collecting unknown keys (passed through to TRL)


# The pipeline, in order.
COMMANDS: list[Command] = [
    Command("prepare", "parrot.prepare:PrepareConfig:prepare",
            "clean real user-assistant logs (ShareGPT, messages) into Dialogue JSONL"),
]


def _resolve(cmd: Command):
    module, cls_name, fn_name = cmd.target.split(":")
    mod = importlib.import_module(module)
    return getattr(mod, cls_name), getattr(mod, fn_name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parrot", description="Parrot: better multi-turn instruction following for chat models.")
    parser.add_argument("--version", action="version", version=f"parrot {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for cmd in COMMANDS:
        parts = cmd.name.split()
        target = sub
        if len(parts) == 2:
            if parts[0] not in groups:
                gp = sub.add_parser(parts[0], help=f"{parts[0]} commands")
                groups[parts[0]] = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            target = groups[parts[0]]
        cfg_cls, _ = _resolve(cmd)
        p = target.add_parser(parts[-1], help=cmd.help, description=cmd.help)
        add_config_arguments(p, cfg_cls)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest, overrides = split_overrides(argv)
    parser = build_parser()
    args = parser.parse_args(rest)
    args.overrides = list(getattr(args, "overrides", []) or []) + overrides
    setup_logging(args.verbose)
    cmd: Command = args._command
    cfg_cls, fn = _resolve(cmd)
    try:
        cfg = config_from_args(cfg_cls, args, extra_field=cmd.extra_field)
        fn(cfg)
    except ParrotError as e:
        print(f"parrot {cmd.name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("parrot").warning("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
