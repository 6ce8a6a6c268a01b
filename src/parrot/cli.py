"""``parrot``: a thin command line over the stage functions.

Each command is a stage's config dataclass plus the function that runs it; flags,
``--config FILE`` and ``key=value`` overrides all come from the dataclass (see
:mod:`parrot.core.config`). A :class:`~parrot.ParrotError` prints as one line and exits with 2; so
does an OS error about a file (a full disk, a read-only directory, a file where a directory
should be), naming the file and the cause.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass

from parrot import ParrotError, __version__
from parrot.core.cmdline import add_config_arguments, config_from_args, flags_without_value, split_overrides
from parrot.core.log import setup_logging
from parrot.core.redact import redact_text


@dataclass(frozen=True)
class Command:
    name: str  # "prepare", or "eval answer" for a nested command
    target: str  # "module:ConfigClass:function"
    help: str
    extra_field: str | None = None  # a dict field collecting unknown keys (passed through to TRL)


GROUP_HELP = {"eval": "MT-Bench and MT-Bench++: answer, judge, report"}

# The pipeline's stages in order, then the tools around them.
COMMANDS: list[Command] = [
    Command(
        "prepare",
        "parrot.prepare.stage:PrepareConfig:prepare",
        "clean real user-assistant logs (ShareGPT, messages) into Dialogue JSONL",
    ),
    Command(
        "train-ask",
        "parrot.train.sft:AskTrainConfig:train_ask",
        "train the user simulator (Parrot-Ask): loss on user turns by role swap (TRL SFT)",
        extra_field="trl_args",
    ),
    Command(
        "synthesize",
        "parrot.synthesize.stage:SynthesizeConfig:synthesize",
        "a user simulator talks with an assistant: long multi-turn sessions, resumable",
    ),
    Command(
        "merge", "parrot.synthesize.merge:MergeConfig:merge", "combine the shard outputs of a sharded synthesize run"
    ),
    Command(
        "filter",
        "parrot.synthesize.filter:FilterConfig:filter_sessions",
        "cut or drop degenerate questions, short and near-duplicate sessions",
    ),
    Command(
        "stats",
        "parrot.stats.stage:StatsConfig:stats",
        "measure datasets side by side: turns, lengths, context dependence, Self-ROUGE, topic diversity, human-likeness",
    ),
    Command(
        "train-chat",
        "parrot.train.sft:SFTTrainConfig:train_chat",
        "SFT a chat model (Parrot-Chat): loss on assistant turns (TRL SFT)",
        extra_field="trl_args",
    ),
    Command(
        "capo",
        "parrot.capo.build:CapoConfig:capo",
        "CaPO preference pairs: context-dependent turns, three kinds of wrong answer (TRL format, resumable)",
    ),
    Command(
        "capo select",
        "parrot.capo.select:SelectConfig:capo_select",
        "the turns CaPO would build pairs from, with the reasons (JSONL, for inspection)",
    ),
    Command(
        "train-dpo",
        "parrot.train.dpo:DPOTrainConfig:train_dpo",
        "DPO on CaPO preference pairs (TRL DPO; LoRA or full fine-tune)",
        extra_field="trl_args",
    ),
    Command(
        "eval answer",
        "parrot.evaluate.answer:AnswerConfig:answer",
        "the model under test answers MT-Bench / MT-Bench++ turn by turn (FastChat schema, resumable)",
    ),
    Command(
        "eval judge",
        "parrot.evaluate.judge:JudgeConfig:judge",
        "a judge grades every answered turn 1-10 (FastChat's prompts for MT-Bench; N-turn prompt beyond)",
    ),
    Command(
        "eval report",
        "parrot.evaluate.report:ReportConfig:report",
        "scores per turn, category and overall; judge runs and models side by side; score-by-turn figure",
    ),
    Command(
        "chat",
        "parrot.chat:ChatConfig:chat",
        "talk to any model backend from the terminal (multi-line input, /reset, /exit)",
    ),
    Command(
        "pipeline",
        "parrot.pipeline:PipelineConfig:pipeline",
        "the whole method in one work directory, stage after stage, resumable (configs/demo.yaml)",
    ),
]


def _resolve(cmd: Command):
    module, cls_name, fn_name = cmd.target.split(":")
    mod = importlib.import_module(module)
    return getattr(mod, cls_name), getattr(mod, fn_name)


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
        cfg_cls, _ = _resolve(cmd)
        if len(parts) == 1 and parts[0] in tops:
            p = tops[parts[0]]
            p.description = cmd.help
        else:
            p = target.add_parser(parts[-1], help=cmd.help, description=cmd.help)
            if len(parts) == 1:
                tops[parts[0]] = p
        add_config_arguments(p, cfg_cls)
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
    cmd: Command = args._command
    cfg_cls, fn = _resolve(cmd)
    try:
        cfg = config_from_args(cfg_cls, args, extra_field=cmd.extra_field)
        fn(cfg)
    except ParrotError as e:
        print(f"parrot {cmd.name}: error: {redact_text(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:
        message = file_error(e)
        if message is None:
            raise
        print(f"parrot {cmd.name}: error: {redact_text(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("parrot").warning("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
