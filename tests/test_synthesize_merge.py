"""--shard i/n runs and parrot merge: all shards, one run, no duplicate ids."""

from __future__ import annotations

import json

import pytest
from synth_helpers import Script, make_cfg, read_out, write_seeds

from parrot import ParrotError
from parrot.core.digest import record
from parrot.core.manifest import manifest_path, read_manifest
from parrot.synthesize.merge import MergeConfig, merge
from parrot.synthesize.session import session_id
from parrot.synthesize.stage import synthesize


def vouch_for(shard):
    """A shard edited on purpose, its manifest made to record the edit (as if the run had made it)."""
    doc = read_manifest(shard)
    doc["outputs"] = {shard.name: record(shard)}
    manifest_path(shard).write_text(json.dumps(doc))


@pytest.fixture
def shards(tmp_path, fault_server):
    fault_server.responder = Script()
    seeds = str(write_seeds(tmp_path / "s.jsonl"))
    paths = []
    for i in range(3):
        out = tmp_path / f"shard{i}.jsonl"
        synthesize(make_cfg(out, fault_server.base_url, seeds=seeds, num_sessions=7, max_turns=2, shard=f"{i}/3"))
        paths.append(out)
    return paths


def test_merged_shards_hold_every_session_of_the_run_once(tmp_path, shards):
    out = tmp_path / "all.jsonl"
    counts = merge(MergeConfig(inputs=[str(p) for p in shards], output=str(out)))
    ids = [r["id"] for r in read_out(out)]
    assert sorted(ids) == [session_id("synth", 0, i) for i in range(7)]
    assert counts["sessions"] == 7 and read_manifest(out)["counts"]["turns"] == 14


def test_merge_refuses_a_missing_shard(tmp_path, shards):
    with pytest.raises(ParrotError, match="shards 1/3 missing"):
        merge(MergeConfig(inputs=[str(shards[0]), str(shards[2])], output=str(tmp_path / "all.jsonl")))
    assert not (tmp_path / "all.jsonl").exists()


def test_merge_refuses_an_incomplete_shard(tmp_path, shards):
    man = json.loads(manifest_path(shards[1]).read_text())
    man["complete"] = False
    manifest_path(shards[1]).write_text(json.dumps(man))
    with pytest.raises(ParrotError, match="shard1.jsonl: shard 1/3 is not complete"):
        merge(MergeConfig(inputs=[str(p) for p in shards], output=str(tmp_path / "all.jsonl")))


def test_merge_refuses_duplicate_ids(tmp_path, shards):
    first = shards[0].read_text().splitlines()[0]
    with shards[2].open("a") as fh:
        fh.write(first + "\n")
    vouch_for(shards[2])
    with pytest.raises(ParrotError, match="duplicate session id"):
        merge(MergeConfig(inputs=[str(p) for p in shards], output=str(tmp_path / "all.jsonl")))
    assert not (tmp_path / "all.jsonl").exists()


def test_merge_refuses_shards_of_different_runs(tmp_path, shards, fault_server):
    other = tmp_path / "other.jsonl"
    synthesize(
        make_cfg(
            other,
            fault_server.base_url,
            seeds=str(tmp_path / "s.jsonl"),
            num_sessions=7,
            max_turns=2,
            shard="1/3",
            seed=5,
        )
    )
    with pytest.raises(ParrotError, match="different run"):
        merge(MergeConfig(inputs=[str(shards[0]), str(other), str(shards[2])], output=str(tmp_path / "all.jsonl")))
