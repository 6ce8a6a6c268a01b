"""``parrot merge SHARD.jsonl... -o OUT``: combine the outputs of a sharded ``synthesize`` run.

Each shard was run with ``--shard i/n`` on its own machine. Before writing anything, the merge
checks every shard's manifest: the shard finished (``complete``), all shards belong to one run
(the same config hash: the same settings apart from the shard), each ``i`` of ``0..n-1`` appears
exactly once, and each file holds exactly the sessions its manifest counted. While copying it
checks that no session id appears twice. Any violation is an error naming the file.

From Python (``a.jsonl`` and ``b.jsonl`` being the shards, each with its manifest)::

    merge(MergeConfig(inputs=["a.jsonl", "b.jsonl"], output="all.jsonl"))
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from parrot import ParrotError
from parrot.core.config import opt
from parrot.core.dialogue import answered_turns
from parrot.core.jsonl import AtomicWriter, read_jsonl
from parrot.core.log import progress
from parrot.core.manifest import read_manifest, write_manifest
from parrot.core.outputs import ONE_PASS, WritesOutput, writes_output

log = logging.getLogger("parrot.merge")


@dataclass
class MergeConfig(WritesOutput):
    inputs: list[str] = opt(
        list, "shard outputs of one synthesize run (each with its manifest)", positional=True, digest=True
    )
    output: str = opt("merged.jsonl", "merged Dialogue JSONL", flag="-o", hashed=False)

    STAGE: ClassVar[str] = "merge"
    RESUMES: ClassVar[str] = ONE_PASS

    def check_inputs(self) -> None:
        check_shards([Path(p) for p in self.inputs])


def check_shards(paths: list[Path]) -> list[dict]:
    """The shards' manifests, after checking they form one complete run."""
    if not paths:
        raise ParrotError("merge: no input files given")
    manifests = []
    for p in paths:
        if not p.is_file():
            raise ParrotError(f"{p}: file not found")
        man = read_manifest(p)
        if man is None:
            raise ParrotError(f"{p}: no manifest ({p.name}.manifest.json): not a synthesize output")
        if man.get("stage") != "synthesize" or "shard" not in man:
            raise ParrotError(f"{p}: expected a synthesize output's manifest, found stage {man.get('stage')!r}")
        if not man.get("complete"):
            raise ParrotError(
                f"{p}: shard {man['shard']['index']}/{man['shard']['of']} is not complete "
                f"({man.get('counts', {}).get('sessions', 0)} of {man.get('expected_sessions')} "
                f"sessions): finish it with --resume first"
            )
        manifests.append(man)
    first = manifests[0]
    for p, man in zip(paths, manifests):
        if man.get("config_hash") != first.get("config_hash"):
            raise ParrotError(
                f"{p}: belongs to a different run than {paths[0]} (config hash "
                f"{str(man.get('config_hash'))[:12]} vs {str(first.get('config_hash'))[:12]})"
            )
    n = first["shard"]["of"]
    seen: dict[int, Path] = {}
    for p, man in zip(paths, manifests):
        i = man["shard"]["index"]
        if i in seen:
            raise ParrotError(f"{p}: shard {i}/{n} given twice (also {seen[i]})")
        seen[i] = p
    missing = sorted(set(range(n)) - set(seen))
    if missing:
        raise ParrotError(f"merge: shards {', '.join(f'{i}/{n}' for i in missing)} missing: expected all {n} shards")
    return manifests


@writes_output
def merge(cfg: MergeConfig) -> dict:
    paths = [Path(p) for p in cfg.inputs]
    t0 = time.monotonic()
    manifests = check_shards(paths)
    out = Path(cfg.output)
    ids: set[str] = set()
    counts = {"sessions": 0, "turns": 0}
    expected = sum(m["expected_sessions"] for m in manifests)
    with AtomicWriter(out) as writer, progress(total=expected, desc="merge", unit="session") as bar:
        for p, man in zip(paths, manifests):
            n_file = 0
            for lineno, rec in read_jsonl(p):
                rid = rec.get("id")
                if rid in ids:
                    raise ParrotError(
                        f"{p}:{lineno}: duplicate session id {rid!r} (already in an earlier shard or line)"
                    )
                ids.add(rid)
                writer.write(rec)
                n_file += 1
                counts["turns"] += answered_turns(rec.get("messages") or [])  # what meta.turns says, counted
                bar.update(1)
            if n_file != man["counts"].get("sessions"):
                raise ParrotError(
                    f"{p}: holds {n_file} sessions, its manifest counts "
                    f"{man['counts'].get('sessions')}: the file changed after the run"
                )
            counts["sessions"] += n_file
    counts["shards"] = len(paths)
    write_manifest(
        cfg,
        counts=counts,
        timings={"seconds": round(time.monotonic() - t0, 3)},
        shards_config_hash=manifests[0]["config_hash"],
        shards=len(paths),
    )
    print(f"parrot merge: {counts['sessions']} sessions ({counts['turns']} turns) from {len(paths)} shards -> {out}")
    return counts
