"""API keys never reach a file or a log: a server whose error body echoes the request's
``Authorization`` header, against synthesize, eval answer and capo; and the redaction of free
text that makes it so."""

from __future__ import annotations

import json
import logging

import pytest
from synth_helpers import write_seeds
from test_capo import S1, S2

from parrot.cli import main
from parrot.core.jsonl import AppendWriter

SECRET = "sk-test-SECRET-4f9a1c2e7b5d"


def synthesize_argv(tmp_path, url):
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    return [
        "synthesize",
        "-o",
        str(tmp_path / "out" / "synth.jsonl"),
        "--seeds",
        str(seeds),
        "--num-sessions",
        "2",
        "--max-turns",
        "1",
        "--asker",
        "openai:sim",
        "--assistant",
        "openai:chat",
        f"asker.base_url={url}",
        f"assistant.base_url={url}",
        "asker.max_retries=0",
        "assistant.max_retries=0",
        "step_retries=0",
        "step_retry_delay=0",
    ]


def answer_argv(tmp_path, url):
    return [
        "eval",
        "answer",
        "--bench",
        "mt-bench",
        "--limit",
        "1",
        "--model",
        "openai:model-a",
        f"model.base_url={url}",
        "model.max_retries=0",
        "-o",
        str(tmp_path / "out" / "answers.jsonl"),
    ]


def capo_argv(tmp_path, url):
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_text("".join(json.dumps({"id": i, "messages": m}) + "\n" for i, m in (("s1", S1), ("s2", S2))))
    return [
        "capo",
        "--dialogues",
        str(sessions),
        "-o",
        str(tmp_path / "out" / "pairs.jsonl"),
        "--generator",
        "openai:gen",
        f"generator.base_url={url}",
        "generator.max_retries=0",
    ]


@pytest.mark.parametrize(
    "stage, fault", [(synthesize_argv, "500_echo"), (answer_argv, "400_echo"), (capo_argv, "500_echo")]
)
def test_a_key_echoed_in_a_servers_error_reaches_no_file_and_no_log(
    stage, fault, tmp_path, fault_server, monkeypatch, capsys, caplog
):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    fault_server.add_faults(*[fault] * 50)  # every request: the error body quotes the headers
    caplog.set_level(logging.DEBUG)
    main(["-v", *stage(tmp_path, fault_server.base_url)])
    assert fault_server.headers[0]["authorization"] == f"Bearer {SECRET}"  # the key was sent, and echoed
    printed = capsys.readouterr()
    for where, text in [("stdout", printed.out), ("stderr", printed.err), ("log", caplog.text)] + [
        (str(p), p.read_text(errors="replace")) for p in tmp_path.rglob("*") if p.is_file()
    ]:
        assert "SECRET" not in text, where
    [failures] = (tmp_path / "out").glob("*.failures.jsonl")
    assert "(Authorization: <redacted>)" in failures.read_text()  # the error is kept, the key is not


@pytest.mark.parametrize(
    "text, clean",
    [
        ("HTTP 500: {'authorization': 'Bearer abc.DEF-123_456'}", "HTTP 500: {'authorization': '<redacted>'}"),
        ('{"x-api-key": "k-12345678", "model": "m"}', '{"x-api-key": "<redacted>", "model": "m"}'),
        ("headers: Authorization: Basic dXNlcjpwYXNzd29yZA==; host: h", "headers: Authorization: <redacted>; host: h"),
        ("echo Bearer abcdefghijklmnop end", "echo Bearer <redacted> end"),
        ("key sk-proj-AbCdEf0123456789 and hf_AbCdEfGhIjKlMnOpQrStUv", "key <redacted> and <redacted>"),
        (
            "at https://bob:hunter2@proxy.example/v1?api-key=s3cr3t&x=1 now",
            "at https://proxy.example/v1?api-key=<redacted>&x=1 now",
        ),
        ("max_tokens: 512, the tokenizer's pad_token=<pad>, a bearer bond", None),  # nothing secret
    ],
)
def test_secrets_in_free_text_are_redacted(text, clean):
    from parrot.core.redact import redact_text

    assert redact_text(text) == (text if clean is None else clean)


def test_the_key_in_use_is_scrubbed_whatever_its_shape(monkeypatch, tmp_path):
    from parrot.core.redact import redact, redact_text, register_secret

    register_secret("plain-words-key-0000")  # what a backend does with the key it reads
    monkeypatch.setenv("MY_SERVICE_TOKEN", "another-key-shape-1111")  # a secret-named variable
    assert redact_text("got plain-words-key-0000 and another-key-shape-1111") == "got <redacted> and <redacted>"
    assert redact({"detail": ["x plain-words-key-0000"]}) == {"detail": ["x <redacted>"]}
    with AppendWriter(tmp_path / "a.jsonl", fsync=False) as w:  # every line any writer writes
        w.write({"text": "echo: plain-words-key-0000"})
    assert json.loads((tmp_path / "a.jsonl").read_text()) == {"text": "echo: <redacted>"}
