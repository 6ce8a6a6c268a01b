"""``parrot chat``: the terminal loop against a real OpenAI-compatible server on 127.0.0.1."""

import subprocess
import sys

from parrot.backends import SamplingParams, load_backend
from parrot.chat import chat_session

PARAMS = SamplingParams(temperature=0.0, max_tokens=32)


def run_chat(server, lines, system=None):
    feed = iter(lines)
    out = []

    def read(prompt):
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    backend = load_backend("openai:m", base_url=server.base_url, max_retries=0)
    history = chat_session(backend, PARAMS, system, read=read, write=out.append)
    return history, out


def test_history_system_prompt_and_multiline_input(fault_server):
    history, out = run_chat(fault_server, ["first line\\", "second line", "again"], system="Be terse.")
    assert fault_server.requests[0]["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "first line\nsecond line"},
    ]
    assert fault_server.requests[1]["messages"][1:] == [
        {"role": "user", "content": "first line\nsecond line"},
        {"role": "assistant", "content": "echo: first line\nsecond line"},
        {"role": "user", "content": "again"},
    ]
    assert "m> echo: again" in out
    assert len(history) == 5


def test_reset_forgets_the_conversation_and_exit_stops(fault_server):
    history, _ = run_chat(fault_server, ["one", "/reset", "two", "/exit", "never sent"], system="S")
    assert fault_server.requests[1]["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "two"},
    ]
    assert len(fault_server.requests) == 2 and history[-1]["content"] == "echo: two"


def test_a_failed_turn_is_dropped_and_can_be_sent_again(fault_server):
    fault_server.add_faults("500")
    history, out = run_chat(fault_server, ["hello", "hello"])
    assert any(line.startswith("(no reply: server_error") for line in out)
    assert fault_server.requests[1]["messages"] == [{"role": "user", "content": "hello"}]
    assert [m["role"] for m in history] == ["user", "assistant"]


def test_parrot_chat_command_reads_stdin(fault_server):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "parrot",
            "chat",
            "--model",
            "openai:m",
            f"model.base_url={fault_server.base_url}",
            "--system",
            "Be kind.",
            "--temperature",
            "0",
        ],
        input="hi there\n/exit\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "m> echo: hi there" in proc.stdout
    assert fault_server.requests[0]["temperature"] == 0.0
    assert fault_server.requests[0]["messages"][0] == {"role": "system", "content": "Be kind."}
