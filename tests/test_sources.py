"""Reading SOURCE formats: streamed JSON arrays (cut-off ones too), JSONL, Parquet, saved datasets."""

import json
import logging

import pytest

from parrot import ParrotError
from parrot.prepare.sources import (
    RecordError,
    SourceStats,
    conversation_from_record,
    iter_json_array,
    read_source,
    source_kind,
)


def sharegpt(i, text="hello"):
    return {
        "id": f"r{i}",
        "conversations": [{"from": "human", "value": f"{text} {i}"}, {"from": "gpt", "value": f"answer {i}"}],
    }


def write_array(path, records, indent=2):
    path.write_text(json.dumps(records, indent=indent, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_json_array_streams_every_record_across_chunk_boundaries(tmp_path, chunk):
    records = [sharegpt(i, "héllo wörld ✓ " * (i % 5)) for i in range(40)]
    path = write_array(tmp_path / "a.json", records)
    got = [rec for _, _, rec in iter_json_array(path, chunk_bytes=chunk)]
    assert got == records


def test_json_array_byte_offsets_point_at_each_record_in_utf8_bytes(tmp_path):
    records = [sharegpt(i, "日本語 " * i) for i in range(5)]
    path = write_array(tmp_path / "a.json", records)
    data = path.read_bytes()
    for _, offset, rec in iter_json_array(path, chunk_bytes=16):
        assert json.JSONDecoder().raw_decode(data[offset:].decode("utf-8"))[0] == rec


def test_json_array_with_bom_and_compact_layout(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([sharegpt(0), sharegpt(1)], separators=(",", ":")).encode())
    assert [r["id"] for _, _, r in iter_json_array(path)] == ["r0", "r1"]


def test_truncated_array_keeps_complete_records_and_warns_with_byte_offset(tmp_path, caplog):
    records = [sharegpt(i) for i in range(10)]
    full = json.dumps(records, indent=2)
    cut_at = full.index('"r7"') + 2  # inside record 7
    path = tmp_path / "cut.json"
    path.write_text(full[:cut_at])
    start_of_7 = full.rindex("{", 0, full.index('"r7"'))
    stats = SourceStats()
    with caplog.at_level(logging.WARNING, logger="parrot"):
        got = [r for _, _, r in iter_json_array(path, stats, chunk_bytes=32)]
    assert got == records[:7]
    assert stats.truncations[0]["byte_offset"] == start_of_7
    assert stats.truncations[0]["complete_records"] == 7
    assert stats.invalid["truncated_record"] == 1
    assert str(path) in caplog.text and f"{start_of_7:,}" in caplog.text


def test_array_missing_its_closing_bracket_keeps_everything(tmp_path):
    path = tmp_path / "open.json"
    path.write_text(json.dumps([sharegpt(0), sharegpt(1)])[:-1] + ",\n")
    stats = SourceStats()
    assert len(list(iter_json_array(path, stats))) == 2
    assert stats.truncations and not stats.invalid


def test_truncated_array_is_an_error_with_strict(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps([sharegpt(0), sharegpt(1)])[:-20])
    with pytest.raises(ParrotError, match=r"cut\.json: the JSON array is cut off at byte \d+"):
        list(iter_json_array(path, strict=True))


def test_broken_json_mid_array_names_record_and_byte(tmp_path):
    text = json.dumps([sharegpt(0), sharegpt(1), sharegpt(2)])
    bad = text.replace('"answer 1"', '"answer 1" oops', 1)
    path = tmp_path / "bad.json"
    path.write_text(bad)
    with pytest.raises(ParrotError, match=r"bad\.json: record 1 \(byte \d+\): expected valid JSON"):
        list(iter_json_array(path))
    stats = SourceStats()
    assert [r["id"] for _, _, r in iter_json_array(path, stats, on_error="skip")] == ["r0"]
    assert stats.invalid["invalid_json"] == 1


def test_source_kind_sniffs_content_not_extension(tmp_path):
    (tmp_path / "x.data").write_text("[]")
    (tmp_path / "y.json").write_text('{"a": 1}\n')
    assert source_kind(tmp_path / "x.data") == "json-array"
    assert source_kind(tmp_path / "y.json") == "jsonl"
    (tmp_path / "z.txt").write_text("hello")
    with pytest.raises(ParrotError, match="expected a JSON array, JSON Lines, Parquet"):
        source_kind(tmp_path / "z.txt")


def test_missing_source_names_it():
    with pytest.raises(ParrotError, match="nope.json: no such file"):
        list(read_source("nope.json", SourceStats()))


def test_jsonl_source_reports_file_and_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(sharegpt(0)) + "\n{not json\n")
    stats = SourceStats()
    with pytest.raises(ParrotError, match=r"a\.jsonl:2: invalid JSON"):
        list(read_source(str(path), stats))
    stats = SourceStats()
    got = list(read_source(str(path), stats, on_error="skip"))
    assert [r.where for r in got] == [f"{path}:1"] and stats.invalid["invalid_json"] == 1


def test_parquet_source_yields_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]} for i in range(600)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    got = [r.record for r in read_source(str(tmp_path / "t.parquet"), SourceStats())]
    assert got == rows


def test_saved_datasets_directory_yields_rows_of_every_split(tmp_path):
    import datasets

    rows = [sharegpt(i) for i in range(3)]
    dd = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows[:2]), "test": datasets.Dataset.from_list(rows[2:])}
    )
    dd.save_to_disk(str(tmp_path / "ds"))
    got = list(read_source(str(tmp_path / "ds"), SourceStats()))
    assert [r.record["id"] for r in got] == ["r0", "r1", "r2"]
    assert "[test]" in got[2].where


def test_detects_sharegpt_and_messages_records():
    assert conversation_from_record(sharegpt(0), "auto", "w") == (
        "sharegpt",
        [("human", "hello 0"), ("gpt", "answer 0")],
    )
    msg = {"messages": [{"role": "user", "content": "hi"}]}
    assert conversation_from_record(msg, "auto", "w") == ("messages", [("user", "hi")])


def test_forced_format_rejects_the_other_one():
    with pytest.raises(RecordError, match="expected a messages record"):
        conversation_from_record(sharegpt(0), "messages", "f.json record 3")


@pytest.mark.parametrize(
    "record, reason, found",
    [
        ({"text": "hi"}, "unknown_format", "keys ['text']"),
        ([1, 2], "unknown_format", "list"),
        ({"messages": [{"role": "user", "content": ["a", "b"]}]}, "non_string_content", "list"),
        ({"messages": [{"role": "user", "content": None}]}, "non_string_content", "NoneType"),
        ({"conversations": [{"from": "human"}]}, "non_string_content", "no such key"),
        ({"conversations": ["hi"]}, "bad_message", "str"),
        ({"messages": [{"role": 3, "content": "x"}]}, "unknown_role", "int"),
    ],
)
def test_bad_records_name_the_place_expected_and_found(record, reason, found):
    with pytest.raises(RecordError) as err:
        conversation_from_record(record, "auto", "data.json record 5")
    assert err.value.reason == reason
    msg = str(err.value)
    assert msg.startswith("data.json record 5") and "expected" in msg and found in msg
