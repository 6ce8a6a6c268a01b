"""Manifests: every field DESIGN.md lists, inputs hashed, secrets never written."""

import hashlib
import json
from dataclasses import dataclass

from parrot.core.config import opt
from parrot.core.digest import describe
from parrot.core.manifest import manifest_path, read_manifest, record_manifest
from parrot.core.redact import is_secret_key


@dataclass
class Role:
    spec: str = opt("openai:gpt-4", "model")
    api_key: str | None = opt(None, "key")
    api_key_env: str = opt("OPENAI_API_KEY", "env var name")
    max_tokens: int = opt(512, "max new tokens")


@dataclass
class Cfg:
    output: str = opt("out.jsonl", "output")
    judge: Role = opt(Role, "judge")
    hf_token: str | None = opt(None, "hub token")
    extra: dict = opt(dict, "pass-through")


def test_manifest_has_every_field(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"a": 1}\n')
    out = tmp_path / "out.jsonl"
    path = record_manifest(
        out,
        stage="prepare",
        config=Cfg(),
        inputs=[src],
        counts={"read": 1, "dropped": {"empty": 0}},
        timings={"total_s": 1.5},
        sampling={"temperature": 0.7},
        split="train",
    )
    assert path == manifest_path(out) == tmp_path / "out.jsonl.manifest.json"
    m = read_manifest(out)
    for key in (
        "stage",
        "output",
        "complete",
        "created",
        "config",
        "config_hash",
        "inputs",
        "versions",
        "platform",
        "sampling",
        "counts",
        "timings",
    ):
        assert key in m, key
    assert m["stage"] == "prepare" and m["split"] == "train" and m["counts"]["read"] == 1
    assert m["inputs"][0]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert m["inputs"][0]["bytes"] == src.stat().st_size
    assert m["versions"]["parrot"] and m["versions"]["python"]
    assert m["sampling"] == {"temperature": 0.7} and len(m["config_hash"]) == 64
    assert not list(tmp_path.glob("*.tmp"))


def test_secrets_are_redacted_everywhere(tmp_path):
    cfg = Cfg(
        judge=Role(api_key="sk-SECRET-1"),
        hf_token="hf_SECRET_2",
        extra={"password": "SECRET-3", "nested": [{"authorization": "Bearer SECRET-4"}]},
    )
    record_manifest(
        tmp_path / "o.jsonl",
        stage="t",
        config=cfg,
        sampling={"api_key": "SECRET-5"},
        backend={"access_token": "SECRET-6", "max_tokens": 99},
    )
    text = manifest_path(tmp_path / "o.jsonl").read_text()
    assert "SECRET" not in text
    m = json.loads(text)
    assert m["config"]["judge"]["api_key"] == "<redacted>" and m["config"]["hf_token"] == "<redacted>"
    # names of secrets and token budgets are not secrets
    assert m["config"]["judge"]["api_key_env"] == "OPENAI_API_KEY"
    assert m["config"]["judge"]["max_tokens"] == 512 and m["backend"]["max_tokens"] == 99


def test_secret_key_names():
    assert all(
        is_secret_key(k)
        for k in (
            "api_key",
            "apikey",
            "hf_token",
            "password",
            "secret",
            "authorization",
            "api-key",
            "x-api-key",
            "hub_token",
            "bearer",
        )
    )
    assert not any(
        is_secret_key(k)
        for k in ("max_tokens", "api_key_env", "num_tokens", "tokenizer", "spec", "pad_token", "eos_token", "bos_token")
    )


def test_credentials_in_urls_never_reach_the_manifest(tmp_path):
    from parrot.backends.base import BackendConfig
    from parrot.synthesize.stage import SynthesizeConfig

    cfg = SynthesizeConfig(
        output=str(tmp_path / "x.jsonl"),
        asker=BackendConfig(spec="openai:m", base_url="https://bob:hunter2@proxy.example/v1"),
        assistant=BackendConfig(spec="openai:m", base_url="https://h.example/v1?api-key=s3cr3t&x=1"),
    )
    record_manifest(tmp_path / "x.jsonl", stage="synthesize", config=cfg)
    text = manifest_path(tmp_path / "x.jsonl").read_text()
    assert "hunter2" not in text and "bob" not in text and "s3cr3t" not in text
    config = read_manifest(tmp_path / "x.jsonl")["config"]
    assert config["asker"]["base_url"] == "https://proxy.example/v1"
    assert config["assistant"]["base_url"] == "https://h.example/v1?api-key=<redacted>&x=1"


def test_directory_input_digest_changes_with_content(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "a.txt").write_text("one")
    first = describe(d)
    (d / "a.txt").write_text("two")
    second = describe(d)
    assert first["kind"] == "directory" and first["sha256"] != second["sha256"]
    assert describe("openai:gpt-4") == {"path": "openai:gpt-4", "note": "not a local path"}


def test_config_hash_is_the_same_for_the_same_config(tmp_path):
    record_manifest(tmp_path / "a.jsonl", stage="t", config=Cfg(output="x"))
    record_manifest(tmp_path / "b.jsonl", stage="t", config=Cfg(output="x"))
    assert read_manifest(tmp_path / "a.jsonl")["config_hash"] == read_manifest(tmp_path / "b.jsonl")["config_hash"]
    assert read_manifest(tmp_path / "missing.jsonl") is None
