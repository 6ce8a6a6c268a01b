"""``parrot``: a thin command line over the stage table (:mod:`parrot.stages`).

Each command is a stage's config dataclass plus the function that runs it; flags,
``--config FILE`` and ``key=value`` overrides all come from the dataclass (see
:mod:`parrot.core.config`). A :class:`~parrot.ParrotError` prints as one line and exits with 2; so
does an OS error about a file (a full disk, a read-only directory, a file where a directory
should be), naming the file and the cause.
"""

from __future__ import annotations

import argparse
import logging
import sys

from parrot import ParrotError, __version__
from parrot.chat import ChatConfig, chat
from parrot.core.cmdline import add_config_arguments, config_from_args, flags_without_value, split_overrides
from parrot.core.log import setup_logging
from parrot.core.redact import redact_text
from parrot.pipeline import PipelineConfig, pipeline
from parrot.stages import STAGES, Stage
from parrot.train.launch import report_rank_failure

GROUP_HELP = {"eval": "MT-Bench and MT-Bench++: answer, judge, report"}

# The stages of the method, in pipeline order, then the tools around them.
COMMANDS: list[Stage] = [
    *STAGES,
    Stage(ChatConfig, chat, "talk to any model backend from the terminal (multi-line input, /reset, /exit)"),
    Stage(
        PipelineConfig,
        pipeline,
        "the paper's experiment in one work directory: named steps, every arm, one report; resumable "
        "(--config demo; --list-configs; docs/experiment.md)",
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parrot", description="Parrot: better multi-turn instruction following for chat models."
    )
    parser.add_argument("--version", action="version", version=f"parrot {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    tops: dict[str, argparse.ArgumentParser] = {}
    # A name that is both a command and a group ("capo" and "capo select") runs its own command
    # when no subcommand follows; the subcommand's settings win when one does.
    leaves = {c.name for c in COMMANDS}
    for cmd in COMMANDS:
        parts = cmd.name.split()
        target = sub
        if len(parts) == 2:
            if parts[0] not in groups:
                if parts[0] not in tops:
                    tops[parts[0]] = sub.add_parser(parts[0], help=GROUP_HELP.get(parts[0], f"{parts[0]} commands"))
                optional = parts[0] in leaves
                groups[parts[0]] = tops[parts[0]].add_subparsers(
                    dest="subcommand", metavar="[SUBCOMMAND]" if optional else "SUBCOMMAND", required=not optional
                )
            target = groups[parts[0]]
        if len(parts) == 1 and parts[0] in tops:
            p = tops[parts[0]]
            p.description = cmd.help
        else:
            p = target.add_parser(parts[-1], help=cmd.help, description=cmd.help)
            if len(parts) == 1:
                tops[parts[0]] = p
        add_config_arguments(p, cmd.config)
        p.set_defaults(_command=cmd)
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line, ``key=value`` overrides gathered in ``args.overrides`` (argparse exits
    with 2 on a bad flag)."""
    parser = build_parser()
    rest, overrides = split_overrides(argv, flags_without_value(parser))
    args = parser.parse_args(rest)
    args.overrides = list(getattr(args, "overrides", []) or []) + overrides
    return args


def file_error(e: OSError) -> str | None:
    """An OS error about a file as one line, ``PATH: cause``; None when it names no file."""
    if not e.filename:
        return None
    where = f"{e.filename} -> {e.filename2}" if e.filename2 else str(e.filename)
    # mkdir(exist_ok=True) raises it only when a file stands where a directory should be
    cause = "exists and is not a directory" if isinstance(e, FileExistsError) else (e.strerror or str(e))
    return f"{where}: {cause}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    setup_logging(args.verbose)
    cmd: Stage = args._command
    try:
        cfg = config_from_args(cmd.config, args, extra_field=cmd.unknown_keys)
        cmd.run(cfg)
    except KeyboardInterrupt:
        logging.getLogger("parrot").warning("interrupted")
        return 130
    except Exception as e:
        message = str(e) if isinstance(e, ParrotError) else file_error(e) if isinstance(e, OSError) else None
        if report_rank_failure(e, message):
            return 1  # a rank of a launch: the parent reports the first failure, once
        if message is None:
            raise
        print(f"parrot {cmd.name}: error: {redact_text(message)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
