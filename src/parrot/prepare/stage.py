"""``parrot prepare SOURCE... -o OUT.jsonl``: real user–assistant logs -> Dialogue JSONL.

Reads ShareGPT or OpenAI/TRL ``messages`` records from JSON arrays (streamed), JSON Lines,
Parquet or saved ``datasets`` directories (or ``sharegpt``, the embedded ShareGPT V3 file),
cleans them (:mod:`parrot.prepare.cleaning`), and writes ``OUT.jsonl`` plus, with ``--dev-fraction``,
a deterministic dev split ``OUT.dev.jsonl`` chosen by a hash of each id. Every record read is
accounted for: written, or counted under the reason it was dropped, in the summary table and
in each output's manifest.

From Python, ``prepare(PrepareConfig(source=["sharegpt"], output="data/sharegpt.jsonl"))`` does
what ``parrot prepare sharegpt -o data/sharegpt.jsonl`` does; on a small file of one's own:

>>> import json, tempfile
>>> from pathlib import Path
>>> with tempfile.TemporaryDirectory() as d:
...     _ = Path(d, "logs.json").write_text(json.dumps([
...         {"id": "a", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]},
...         {"id": "b", "conversations": [{"from": "gpt", "value": "...and that is all."}]}]))
...     summary = prepare(PrepareConfig(source=[f"{d}/logs.json"], output=f"{d}/out.jsonl", dev_fraction=0))
...     print(Path(d, "out.jsonl").read_text(), end="")                     # doctest: +ELLIPSIS
{"id":"a","messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}],"meta":{...}}
>>> summary["written"], summary["counts"]["dropped"]
(1, {'no_exchange': 1})
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.core.config import check_ranges, opt
from parrot.core.dialogue import dialogue_id
from parrot.core.digest import describe
from parrot.core.jsonl import AtomicWriter
from parrot.core.log import format_table
from parrot.core.manifest import manifest_path, write_manifest
from parrot.core.outputs import ONE_PASS, WritesOutput, writes_output
from parrot.prepare.cleaning import Cleaner, CleanOptions, Conversation, normalize_role, rejoin_pieces
from parrot.prepare.sources import (
    FORMATS,
    RecordError,
    SourceStats,
    conversation_from_record,
    read_source,
    resolve_source,
)

log = logging.getLogger("parrot.prepare")


@dataclass
class _Input:
    """``prepare``'s settings before the cleaning rules' (kept first: the order of ``--help``)."""

    source: list[str] = opt(
        help="input files: JSON array, JSONL, Parquet, a saved `datasets` "
        "directory, or `sharegpt` (the embedded ShareGPT V3 logs)",
        positional=True,
        nargs="*",
        digest=True,
    )
    output: str = opt(help="output Dialogue JSONL (the dev split goes to OUT.dev.jsonl)", flag="-o", hashed=False)
    format: str = opt("auto", "record format: detected per record, or forced", choices=list(FORMATS))
    dev_fraction: float = opt(
        0.01,
        "fraction of sessions, chosen by a hash of the id, written to OUT.dev.jsonl (0: no dev file)",
        min=0,
        below=1,
    )
    strict: bool = opt(False, "a JSON array cut off mid-record is an error instead of a warning")
    on_error: str = opt(
        "raise",
        "bad input (unparsable line, unknown format or role, non-string "
        "content): stop with an error, or skip and count it",
        choices=["raise", "skip"],
    )
    rejoin: bool = opt(False, "stitch split ShareGPT pieces X_0, X_1, ... back into one session")
    rejoin_across_gaps: bool = opt(False, "with --rejoin, also stitch across a missing piece")
    rejoin_window: int = opt(1000, "with --rejoin, how many records apart pieces may be", min=1)


@dataclass
class PrepareConfig(CleanOptions, _Input, WritesOutput):
    """``parrot prepare``'s settings: the input and output, the cleaning rules (declared once, in
    :class:`~parrot.prepare.cleaning.CleanOptions`), and ``limit``."""

    limit: int | None = opt(None, "read at most this many records (a quick look at a big source)", min=1)

    STAGE: ClassVar[str] = "prepare"
    # what a pipeline step names as {NAME:dev}
    side_outputs: ClassVar[dict] = {"dev": lambda output: dev_path(output)}
    RESUMES: ClassVar[str] = ONE_PASS

    def output_files(self) -> list[Path]:
        return [Path(self.output), dev_path(self.output)]  # a dev split of an earlier run too

    def side_files(self) -> list[Path]:
        return [*super().side_files(), manifest_path(dev_path(self.output))]

    def check_inputs(self) -> None:
        for spec in self.source:
            resolve_source(spec)

    def __post_init__(self):
        check_ranges(self)
        if not self.source:
            raise ParrotError("source: expected at least one SOURCE (a file, a directory or `sharegpt`)")


def dev_path(output: str | Path) -> Path:
    """``data/x.jsonl`` -> ``data/x.dev.jsonl``."""
    out = Path(output)
    return out.with_name(out.stem + ".dev" + (out.suffix or ".jsonl"))


def in_dev_split(dialogue_id: str, fraction: float) -> bool:
    """Deterministic: the first 8 bytes of sha256(id) as a fraction of 2**64, below ``fraction``."""
    h = int.from_bytes(hashlib.sha256(dialogue_id.encode("utf-8")).digest()[:8], "big")
    return h < fraction * 2**64


def read_conversations(cfg: PrepareConfig, stats: SourceStats) -> Iterator[Conversation]:
    """Every SOURCE's records as Conversations with normalised roles; bad records raise, or with
    ``on_error=skip`` are counted in ``stats.invalid``."""
    taken = 0
    for spec in cfg.source:
        for raw in read_source(spec, stats, on_error=cfg.on_error, strict=cfg.strict):
            if cfg.limit is not None and taken >= cfg.limit:
                return
            taken += 1
            try:
                fmt, pairs = conversation_from_record(raw.record, cfg.format, raw.where)
                messages = [
                    {"role": normalize_role(r, f"{raw.where}: message {i}"), "content": c}
                    for i, (r, c) in enumerate(pairs)
                ]
            except RecordError as e:
                if cfg.on_error != "skip":
                    raise
                stats.invalid[e.reason] += 1
                continue
            rec = raw.record
            rid = rec.get("id")
            meta = dict(rec["meta"]) if isinstance(rec.get("meta"), dict) else {}
            meta.update(source=spec, format=fmt)
            yield Conversation(str(rid) if rid not in (None, "") else None, messages, meta)


@writes_output
def prepare(cfg: PrepareConfig) -> dict:
    """Run the stage; return the summary (counts by reason, output paths, timings)."""
    t0 = time.time()
    out = Path(cfg.output)
    dev = dev_path(out) if cfg.dev_fraction > 0 else None
    inputs = [describe(resolve_source(s)) for s in cfg.source]
    stats = SourceStats()
    cleaner = Cleaner(cfg)  # the config is the cleaning options too
    convs = read_conversations(cfg, stats)
    if cfg.rejoin:
        convs = rejoin_pieces(convs, cleaner.changes, window=cfg.rejoin_window, across_gaps=cfg.rejoin_across_gaps)
    written = Counter()
    seen_ids: set[str] = set()
    with ExitStack() as stack:
        # Both files commit only if the whole run succeeds; an error leaves neither behind.
        writers = {"train": stack.enter_context(AtomicWriter(out))}
        if dev is not None:
            writers["dev"] = stack.enter_context(AtomicWriter(dev))
        for conv in convs:
            clean = cleaner.clean(conv)
            if clean is None:
                continue
            did = clean.id or dialogue_id(clean.messages)
            if did in seen_ids:  # ShareGPT reuses some ids for different conversations
                n = 2
                while f"{did}#{n}" in seen_ids:
                    n += 1
                clean.meta["source_id"] = did
                did = f"{did}#{n}"
                cleaner.changes["renamed_duplicate_id"] += 1
            seen_ids.add(did)
            split = "dev" if dev is not None and in_dev_split(did, cfg.dev_fraction) else "train"
            writers[split].write({"id": did, "messages": clean.messages, "meta": clean.meta})
            written[split] += 1
        if stats.read == 0 and not stats.invalid:  # raised inside: neither output is written
            raise ParrotError(f"{', '.join(cfg.source)}: no records to read (the input is empty); nothing written")
        if not written:
            raise nothing_kept(cfg, stats, cleaner)
    seconds = time.time() - t0
    summary = _summary(stats, cleaner, written, out, dev, seconds)
    for split, path in summary["outputs"].items():
        write_manifest(
            cfg,
            of=path,
            inputs=inputs,
            counts=summary["counts"],
            timings={"total_s": round(seconds, 2)},
            split=split,
            truncations=stats.truncations,
        )
    print(format_summary(summary), file=sys.stderr)
    return summary


def nothing_kept(cfg: PrepareConfig, stats: SourceStats, cleaner: Cleaner) -> ParrotError:
    """Every record was invalid or dropped: why, and the settings that would change it."""
    hints = {
        "too_few_turns": f"lower min_turns={cfg.min_turns}",
        "too_many_turns": f"raise max_turns={cfg.max_turns}",
        "language": f"widen language={','.join(cfg.language)}",
        "too_long": f"raise max_tokens={cfg.max_tokens}",
    }
    reasons = Counter({f"invalid {k}": v for k, v in stats.invalid.items()}) + cleaner.dropped
    why = ", ".join(f"{k} {v}" for k, v in reasons.most_common())
    fixes = "; ".join(hints[k] for k in cleaner.dropped if k in hints) or "check the input's format"
    return ParrotError(
        f"prepare kept 0 of {stats.read} records of {', '.join(cfg.source)} ({why}): {fixes}; nothing written"
    )


def _summary(
    stats: SourceStats, cleaner: Cleaner, written: Counter, out: Path, dev: Path | None, seconds: float
) -> dict:
    invalid = dict(sorted(stats.invalid.items()))
    dropped = dict(sorted(cleaner.dropped.items()))
    counts = {
        "read": stats.read,
        "invalid": invalid,  # records that could not be read (skipped)
        "dropped": dropped,  # sessions removed by a cleaning rule
        "changes": dict(sorted(cleaner.changes.items())),  # edits inside kept sessions
        "written": sum(written.values()),
        "train": written["train"],
        "dev": written["dev"],
    }
    outputs = {"train": str(out)}
    if dev is not None:
        outputs["dev"] = str(dev)
    return {
        "counts": counts,
        "outputs": outputs,
        "truncations": stats.truncations,
        "written": counts["written"],
        "seconds": round(seconds, 2),
    }


def format_summary(summary: dict) -> str:
    """The table printed at the end: every record read is written or counted under a reason."""
    c = summary["counts"]
    rows = [("records read", c["read"])]
    rows += [(f"  skipped, invalid: {k}", v) for k, v in c["invalid"].items()]
    rows += [(f"  dropped: {k}", v) for k, v in c["dropped"].items()]
    rows += [("written", c["written"]), ("  train", c["train"]), ("  dev", c["dev"])]
    rows += [(f"changed: {k}", v) for k, v in c["changes"].items()]
    lines = [format_table(rows, ("prepare", "count"))]
    for t in summary["truncations"]:
        lines.append(
            f"cut off: {t['file']} at byte {t['byte_offset']:,} ({t['complete_records']:,} complete records before it)"
        )
    lines += [f"{split}: {path}" for split, path in summary["outputs"].items()]
    lines.append(f"{summary['seconds']} s")
    return "\n".join(lines)
