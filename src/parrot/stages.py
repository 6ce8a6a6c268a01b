"""The stage table: each command of the method, its config class and the function that runs it.

The command line builds one subcommand per row (:mod:`parrot.cli`); the pipeline runs its steps
by these rows (:mod:`parrot.pipeline`). A stage's traits are said on its config class: which dict
field collects unknown keys (``unknown_keys``: training passes them on to TRL), and what it writes.

    prepare -> train-ask -> synthesize (-> merge) -> filter -> stats -> train-chat
            -> capo (capo select) -> train-dpo -> eval answer -> eval judge | eval verify -> eval report -> report
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from parrot.capo.build import CapoConfig, capo
from parrot.capo.select import SelectConfig, capo_select
from parrot.evaluate.answer import AnswerConfig, answer
from parrot.evaluate.judge import JudgeConfig, judge
from parrot.evaluate.scores import ReportConfig, report
from parrot.evaluate.verify import VerifyConfig, verify_answers
from parrot.filter.stage import FilterConfig, filter_sessions
from parrot.prepare.stage import PrepareConfig, prepare
from parrot.report.stage import ExperimentReportConfig, experiment_report
from parrot.stats.stage import StatsConfig, stats
from parrot.synthesize.merge import MergeConfig, merge
from parrot.synthesize.stage import SynthesizeConfig, synthesize
from parrot.train.config import AskTrainConfig, DPOTrainConfig, SFTTrainConfig
from parrot.train.dpo import train_dpo
from parrot.train.sft import train_ask, train_chat


@dataclass(frozen=True)
class Stage:
    config: type  # its config dataclass: flags, YAML keys and defaults come from its fields
    run: Callable  # run(config) does the work
    help: str

    @property
    def name(self) -> str:
        """The command (``prepare``, or ``eval answer`` for a nested one): the config's ``STAGE``,
        the name its manifests record."""
        return self.config.STAGE

    @property
    def unknown_keys(self) -> str | None:
        """The dict field that collects keys the config does not know (None: they are errors)."""
        return getattr(self.config, "unknown_keys", None)


# fmt: off
STAGES: list[Stage] = [
    Stage(PrepareConfig, prepare,
          "clean real user-assistant logs (ShareGPT, messages) into Dialogue JSONL"),
    Stage(AskTrainConfig, train_ask,
          "train the user simulator (Parrot-Ask): loss on user turns by role swap (TRL SFT)"),
    Stage(SynthesizeConfig, synthesize,
          "a user simulator talks with an assistant: long multi-turn sessions, resumable"),
    Stage(MergeConfig, merge,
          "combine the shard outputs of a sharded synthesize run"),
    Stage(FilterConfig, filter_sessions,
          "cut or drop degenerate questions, short and near-duplicate sessions"),
    Stage(StatsConfig, stats,
          "measure datasets side by side: turns, lengths, context dependence, Self-ROUGE, topic diversity, "
          "human-likeness"),
    Stage(SFTTrainConfig, train_chat,
          "SFT a chat model (Parrot-Chat): loss on assistant turns (TRL SFT)"),
    Stage(CapoConfig, capo,
          "CaPO preference pairs: context-dependent turns, three kinds of wrong answer (TRL format, resumable)"),
    Stage(SelectConfig, capo_select,
          "the turns CaPO would build pairs from, with the reasons (JSONL, for inspection)"),
    Stage(DPOTrainConfig, train_dpo,
          "DPO on CaPO preference pairs (TRL DPO; LoRA or full fine-tune)"),
    Stage(AnswerConfig, answer,
          "the model under test answers MT-Bench / MT-Bench++ turn by turn (FastChat schema, resumable)"),
    Stage(JudgeConfig, judge,
          "a judge grades every answered turn 1-10 (FastChat's prompts for MT-Bench; N-turn prompt beyond)"),
    Stage(VerifyConfig, verify_answers,
          "check each answer's instructions by program (IFEval's 25 kinds), strict and loose: accuracy by turn "
          "(retention and kind: parrot report)"),
    Stage(ReportConfig, report,
          "scores per turn, category and overall; judge runs and models side by side; score-by-turn figure"),
    Stage(ExperimentReportConfig, experiment_report,
          "the experiment's one report: data, simulators, training, CaPO pairs, MT-Bench(++) by turn, paired "
          "bootstrap comparisons (report.md + self-contained report.html)"),
]
# fmt: on

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
