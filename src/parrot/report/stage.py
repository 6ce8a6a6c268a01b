"""``parrot report``: the experiment's one report, from whatever outputs the experiment has.

    parrot report --stats stats/data --judgments eval/judge_mtb.jsonl eval/judge_pp.jsonl \\
        --compare "sft_parrot vs sft_selfchat" "capo_dpo vs sft_parrot" -o report/experiment

Writes into its output directory ``report.md``, a self-contained ``report.html`` (CSS inline,
every plot a base64 PNG data URI: it opens from a laptop with no server), ``report.json`` (every
number), the PNGs and ``report.manifest.json``. Sections, always in this order and always
present (one with no inputs says it was not run): Data, Simulators, Training, CaPO pairs,
MT-Bench, MT-Bench++, Verified instruction following, Comparisons, What the numbers support. Every input is optional.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.core.config import opt
from parrot.core.outputs import WritesFolder, writes_output
from parrot.stats.files import PLOTS

#: The files a report directory holds (the plots of a custom bench aside: score_by_turn_<bench>.png,
#: verified_<bench>_by_turn.png).
REPORT_FILES = (
    *("report.md", "report.html", "report.json", *(f"data_{name}" for name in PLOTS), "simulators_session_lengths.png"),
    *("training_loss.png", "capo_pairs_by_turn.png", "score_by_turn_mt-bench.png", "score_by_turn_mt-bench-pp.png"),
    *("verified_verified-mt_by_turn.png", "verified_verified-mt_retention.png"),
)

_VS = re.compile(r"\s+vs\.?\s+", re.I)


def parse_comparison(text: str) -> tuple[str, str]:
    """``"sft_parrot vs sft_selfchat"`` → ``("sft_parrot", "sft_selfchat")``.

    >>> parse_comparison("capo_dpo  vs.  sft_parrot")
    ('capo_dpo', 'sft_parrot')
    """
    parts = [p.strip() for p in _VS.split(text.strip())]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ParrotError(f"compare: expected 'MODEL_A vs MODEL_B' (two different model ids), found {text!r}")
    return parts[0], parts[1]


@dataclass
class ExperimentReportConfig(WritesFolder):
    output: str = opt(help="directory for report.md, report.html, report.json and the plots", flag="-o", hashed=False)
    title: str = opt("Parrot experiment report", "the report's title")
    stats: str | None = opt(None, "a `parrot stats` output directory (its stats.json): the data table", digest=True)
    simulators: list[str] = opt(list, "raw synthesize outputs, one per asker arm", digest=True)
    simulator_names: list[str] = opt(list, "a name per asker arm (default: the file names)")
    filtered: list[str] = opt(list, "the filter output of each asker arm, in the same order", digest=True)
    real: str | None = opt(None, "real user sessions (Dialogue JSONL) the asker arms are measured against", digest=True)
    asker_models: list[str | None] = opt(
        list,
        "the train-ask output of each asker arm (null for a prompted one): its held-out loss against the base model's",
        digest="manifest",  # what the report reads of a model is its manifest (losses), not its weights
    )
    embeddings: bool = opt(True, "simulators: first-question diversity by sentence embeddings (topic-seeded arms)")
    training: list[str] = opt(
        list, "training output directories (train-ask, train-chat, train-dpo): loss curves", digest="manifest"
    )
    capo: list[str] = opt(list, "CaPO pair files: counts by strategy and by turn", digest=True)
    judgments: list[str] = opt(list, "eval judge outputs; the bench of each from its manifest", digest=True)
    verified: list[str] = opt(
        list, "eval verify outputs (instructions checked by program); the bench of each from its manifest", digest=True
    )
    compare: list[str] = opt(list, "model pairs to compare, as 'MODEL_A vs MODEL_B': paired bootstrap intervals")
    estimate: str | None = opt(
        None,
        "a pipeline's estimate.json (`parrot pipeline` writes it): tokens and seconds, estimate against actual",
        hashed=False,  # rewritten by every run with the actual numbers so far: not what the report is made of
    )
    n_boot: int = opt(2000, "bootstrap resamples per comparison", min=1)
    seed: int = opt(0, "bootstrap and sampling seed", min=0, max=2**32 - 1)
    min_questions: int = opt(
        10, "a score-by-turn point with fewer scored questions is marked as such in the plot's legend", min=0
    )
    small_judges: list[str] = opt(
        list,
        "judge specs (or parts of them) too small to rank models, besides those under ~1B parameters (smollm2)",
    )

    STAGE: ClassVar[str] = "report"
    PLACE: ClassVar[str] = "{}"
    FILES: ClassVar[tuple[str, ...]] = REPORT_FILES
    RECORDS: ClassVar[str] = "report"

    def __post_init__(self) -> None:
        n = len(self.simulators)
        for name in ("simulator_names", "filtered", "asker_models"):
            given = getattr(self, name)
            if given and len(given) != n:
                raise ParrotError(f"{name}: expected {n} entries (one per simulator), found {len(given)}")
        for text in self.compare:
            parse_comparison(text)
        if self.n_boot < 1:
            raise ParrotError(f"n_boot: expected at least 1, found {self.n_boot}")

    def check_inputs(self) -> None:
        paths = [*self.simulators, *self.filtered, *self.capo, *self.judgments, *self.verified, *self.training]
        paths += [p for p in [self.real, *self.asker_models] if p]
        for path in paths:
            if not Path(path).exists():
                raise ParrotError(f"{path}: not found")
        if self.stats and not (Path(self.stats) / "stats.json").is_file():
            raise ParrotError(f"{self.stats}: no stats.json in it (expected a `parrot stats` output directory)")
        if self.simulators and not self.real:
            raise ParrotError("simulators: give `real` (real user sessions) to measure the asker arms against")


@writes_output
def experiment_report(cfg: ExperimentReportConfig) -> dict:
    """Run ``parrot report``; return the document written to report.json."""
    from parrot.report.build import build_report

    return build_report(cfg)
