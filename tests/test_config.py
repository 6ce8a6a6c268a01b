"""Typed configs: defaults < YAML (--config) < flags < key=value, nested shorthand, clear errors."""

import argparse
import dataclasses
import re
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

from parrot import ParrotError
from parrot.core.cmdline import add_config_arguments, config_from_args, flags_without_value, split_overrides
from parrot.core.config import build_config, opt, to_dict
from parrot.core.fingerprint import config_hash
from parrot.core.yamlfile import read_yaml


@dataclass
class Role:
    spec: str = opt("smollm2", "model spec")
    concurrency: int = opt(8, "requests in flight")
    temperature: float | None = opt(None, "sampling temperature")


@dataclass
class Demo:
    inputs: list[str] = opt(list, "input files", positional=True, nargs="*")
    output: str = opt("out.jsonl", "output", flag="-o")
    turns: int = opt(10, "maximum turns")
    ratio: float = opt(0.5, "a fraction")
    strict: bool = opt(False, "fail on warnings")
    names: list[str] = opt(list, "names")
    asker: Role = opt(Role, "the asker model")
    resume: bool = opt(False, "continue a run", hashed=False)
    path: Path | None = opt(None, "a path")


def parse(argv, cls=Demo):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, cls)
    rest, overrides = split_overrides(argv, flags_without_value(parser))
    args = parser.parse_args(rest)
    args.overrides = overrides
    return config_from_args(cls, args)


def yaml_file(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return str(p)


def test_defaults_then_yaml_then_flags_then_key_value(tmp_path):
    cfg_file = yaml_file(tmp_path, "turns: 3\nratio: 0.25\nnames: [a, b]\noutput: from_file.jsonl\n")
    cfg = parse(["--config", cfg_file, "--turns", "4", "turns=5", "-o", "flag.jsonl"])
    assert cfg.turns == 5  # key=value beats the flag, which beats the file
    assert cfg.ratio == 0.25 and cfg.names == ["a", "b"]  # from the file
    assert cfg.output == "flag.jsonl" and cfg.strict is False  # flag; default


def test_key_value_next_to_positional_arguments():
    cfg = parse(["a.jsonl", "turns=2", "b.jsonl", "--strict", "ratio=0.1", "-o", "x=y.jsonl"])
    assert cfg.inputs == ["a.jsonl", "b.jsonl"] and cfg.turns == 2 and cfg.ratio == 0.1
    assert cfg.strict is True and cfg.output == "x=y.jsonl"  # an option's value is never an override


def test_boolean_and_list_flags():
    cfg = parse(["--no-strict", "--names", "a", "b"])
    assert cfg.strict is False and cfg.names == ["a", "b"]
    assert parse(["names=a,b,c"]).names == ["a", "b", "c"]
    assert parse(["strict=yes"]).strict is True


def test_nested_shorthand_and_dotted_keys(tmp_path):
    cfg = parse(["--asker", "openai:gpt-4", "asker.concurrency=4"])
    assert cfg.asker == Role("openai:gpt-4", 4, None)
    # a file's mapping keeps its options when the flag gives only the spec
    cfg_file = yaml_file(tmp_path, "asker:\n  spec: hf:/m\n  concurrency: 3\n")
    cfg = parse(["--config", cfg_file, "--asker", "gguf:/x.gguf", "asker.temperature=0.2"])
    assert cfg.asker == Role("gguf:/x.gguf", 3, 0.2)
    assert build_config(Demo, {"asker": "openai:m"}).asker.spec == "openai:m"


def test_a_spec_given_as_key_value_keeps_the_files_options_like_the_flag(tmp_path):
    cfg_file = yaml_file(tmp_path, "asker:\n  spec: hf:/m\n  concurrency: 3\n  temperature: 0.2\n")
    assert parse(["--config", cfg_file, "asker=openai:gpt-4o-mini"]).asker == Role("openai:gpt-4o-mini", 3, 0.2)
    assert parse(["--config", cfg_file, "asker=openai:x", "asker.concurrency=9"]).asker == Role("openai:x", 9, 0.2)


def test_backend_extra_values_from_the_command_line_are_typed():
    from parrot.synthesize.stage import SynthesizeConfig

    cfg = build_config(
        SynthesizeConfig,
        {"output": "x", "assistant": {"spec": "openai:m", "extra": {"a": 1}}},
        ["assistant.extra.top_k=40", "assistant.extra.penalty.value=1.5", "assistant.extra.name=abc", "id_prefix=007"],
    )
    assert cfg.assistant.extra == {"a": 1, "top_k": 40, "penalty": {"value": 1.5}, "name": "abc"}
    assert cfg.id_prefix == "007"  # a typed str field stays as written
    replaced = build_config(
        SynthesizeConfig,
        {"output": "x", "assistant": {"spec": "openai:m", "extra": {"a": 1}}},
        ['assistant.extra={"b": 2}'],
    )
    assert replaced.assistant.extra == {"b": 2}  # a whole dict given replaces the file's


def test_a_negative_number_after_a_flag_leaves_the_next_key_value_an_override():
    cfg = parse(["--turns", "-1", "ratio=0.25", "in.jsonl"])
    assert (cfg.turns, cfg.ratio, cfg.inputs) == (-1, 0.25, ["in.jsonl"])


def test_yaml_booleans_in_a_string_list_and_number_keys_are_errors_naming_the_file(tmp_path):
    with pytest.raises(
        ParrotError,
        match=r"cfg\.yaml:1: names\[1\]: expected a string, found False "
        r"\(YAML reads an unquoted yes/no",
    ):
        parse(["--config", yaml_file(tmp_path, "names: [en, no]\n")])
    assert parse(["--config", yaml_file(tmp_path, "names: [en, 'no']\n")]).names == ["en", "no"]
    with pytest.raises(ParrotError, match=r"cfg\.yaml: expected setting names as keys, found 5"):
        parse(["--config", yaml_file(tmp_path, "5: 3\n")])


def test_a_bad_value_from_the_command_line_is_not_blamed_on_the_file(tmp_path):
    cfg_file = yaml_file(tmp_path, "turns: 3\n")
    for argv in (["turns=xyz"], ["--turns", "xyz"]):
        with pytest.raises(ParrotError, match=r"^command line: turns: expected int, found 'xyz'"):
            parse(["--config", cfg_file, *argv])
    with pytest.raises(ParrotError, match=r"cfg\.yaml:1: turns: expected int, found 'abc'"):
        parse(["--config", yaml_file(tmp_path, "turns: abc\n")])
    assert parse(["--config", yaml_file(tmp_path, "turns: abc\n"), "turns=4"]).turns == 4
    with pytest.raises(ParrotError, match=r"^command line: asker: temperature: expected float"):
        parse(["--config", yaml_file(tmp_path, "asker:\n  spec: hf:/m\n"), "asker.temperature=abc"])


def test_a_bad_file_does_not_take_the_blame_for_the_command_lines_error(tmp_path):
    cfg_file = yaml_file(tmp_path, "turns: 3\nasker:\n  spec: hf:/m\n  temprature: 1\n")  # the file's typo
    # turns (the command line's bad value) is checked first: the file's own error is not that one
    with pytest.raises(ParrotError, match=r"^command line: turns: expected int, found 'xyz'"):
        parse(["--config", cfg_file, "turns=xyz"])
    with pytest.raises(ParrotError, match=r"cfg\.yaml:4: asker: unknown key 'temprature'"):
        parse(["--config", cfg_file, "turns=4"])


def test_unknown_key_in_yaml_names_the_file_and_line(tmp_path):
    cfg_file = yaml_file(tmp_path, "turns: 3\ntunrs: 4\n")
    with pytest.raises(
        ParrotError, match=r"cfg\.yaml:2: unknown key 'tunrs' for Demo; did you mean 'turns'\? \(known keys: .*turns"
    ):
        parse(["--config", cfg_file])
    with pytest.raises(ParrotError, match=r"cfg\.yaml:3: asker: unknown key 'speed' for Role"):
        parse(["--config", yaml_file(tmp_path, "turns: 3\nasker:\n  speed: 2\n")])


def test_a_bad_nested_value_in_yaml_names_its_line(tmp_path):
    with pytest.raises(ParrotError, match=r"cfg\.yaml:4: asker: temperature: expected float, found 'hot'"):
        parse(["--config", yaml_file(tmp_path, "turns: 3\nasker:\n  spec: hf:/m\n  temperature: hot\n")])


def test_unknown_key_on_the_command_line():
    with pytest.raises(ParrotError, match=r"command line: unknown key 'bogus' for Demo"):
        parse(["bogus=1"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["turns=many"], r"command line: turns: expected int, found 'many'"),
        (["ratio=half"], r"command line: ratio: expected float, found 'half'"),
        (["strict=maybe"], r"command line: strict: expected bool, found 'maybe'"),
        (["turns=2.5"], r"command line: turns: expected int, found '2.5'"),
        (["asker.concurrency=lots"], r"asker: concurrency: expected int, found 'lots'"),
    ],
)
def test_bad_values_say_what_was_expected_and_found(argv, message):
    with pytest.raises(ParrotError, match=message):
        parse(argv)


def test_bad_value_in_yaml_names_the_file(tmp_path):
    with pytest.raises(ParrotError, match=r"cfg\.yaml:1: turns: expected int, found 'ten'"):
        parse(["--config", yaml_file(tmp_path, "turns: ten\n")])


def test_invalid_yaml_names_file_and_line(tmp_path):
    with pytest.raises(ParrotError, match=r"cfg\.yaml:\d+: invalid YAML"):
        parse(["--config", yaml_file(tmp_path, "turns: 3\nnames: [a, b\n")])
    with pytest.raises(ParrotError, match="config file not found"):
        parse(["--config", str(tmp_path / "missing.yaml")])


def test_missing_required_setting():
    @dataclass
    class Needs:
        output: str = opt(help="where")

    with pytest.raises(ParrotError, match="missing required setting"):
        build_config(Needs, {})


def test_config_hash_ignores_unhashed_fields_and_tracks_the_rest():
    a = build_config(Demo, {"turns": 3})
    assert config_hash(a) == config_hash(build_config(Demo, {"turns": 3, "resume": True}))
    assert config_hash(a) != config_hash(build_config(Demo, {"turns": 4}))


def test_to_dict_is_plain_json_data():
    d = to_dict(build_config(Demo, {"path": "/tmp/x", "asker": "openai:m"}))
    assert d["path"] == "/tmp/x" and d["asker"] == {"spec": "openai:m", "concurrency": 8, "temperature": None}


def test_prepare_command_line_parses_sources_flags_and_overrides():
    from parrot.cli import build_parser
    from parrot.prepare.stage import PrepareConfig

    parser = build_parser()
    argv = [
        "prepare",
        "sharegpt",
        "more.jsonl",
        "dev_fraction=0.1",
        "--rejoin",
        "max_turns=8",
        "-o",
        "data/out.jsonl",
        "--language",
        "en",
        "fr",
    ]
    rest, overrides = split_overrides(argv, flags_without_value(parser))
    args = parser.parse_args(rest)
    args.overrides = overrides
    cfg = config_from_args(PrepareConfig, args)
    assert cfg.source == ["sharegpt", "more.jsonl"] and cfg.output == "data/out.jsonl"
    assert cfg.dev_fraction == 0.1 and cfg.rejoin and cfg.max_turns == 8 and cfg.language == ["en", "fr"]


@dataclass
class _PassThrough:
    name: str = opt("x", "a setting; 100% of it is documented")
    extra: dict = opt(dict, "unknown keys land here", cli=False)


def test_pass_through_keeps_yes_no_words_as_strings():
    cfg = build_config(
        _PassThrough,
        overrides=["save_strategy=no", "bf16=false", "max_steps=3", "learning_rate=1e-5"],
        extra_field="extra",
    )
    assert cfg.extra == {"save_strategy": "no", "bf16": False, "max_steps": 3, "learning_rate": 1e-5}


def test_a_percent_sign_in_help_text_does_not_break_help():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, _PassThrough)
    assert "100% of it" in parser.format_help()


def test_a_positional_setting_may_come_from_the_yaml_file(tmp_path):
    cfg = parse(["--config", yaml_file(tmp_path, "inputs: [a.jsonl, b.jsonl]\n")])
    assert cfg.inputs == ["a.jsonl", "b.jsonl"]


def test_a_list_option_that_swallowed_the_positional_arguments_says_so():
    @dataclass
    class NeedsInputs:
        inputs: list[str] = opt(help="input files", positional=True, nargs="*")
        names: list[str] = opt(list, "names")

    with pytest.raises(
        ParrotError,
        match=r"missing required setting\(s\) inputs .*--names takes every word "
        r"after it: put the positional arguments before it",
    ):
        parse(["--names", "a", "in.jsonl"], NeedsInputs)
    cfg = parse(["in.jsonl", "--names", "a", "b"], NeedsInputs)
    assert cfg.inputs == ["in.jsonl"] and cfg.names == ["a", "b"]
    with pytest.raises(ParrotError) as e:  # nothing swallowed: no hint
        parse([], NeedsInputs)
    assert "takes every word" not in str(e.value)


# ---------------------------------------------------------------- YAML that cannot be settings


def test_a_config_file_that_is_not_utf8_names_the_file_line_and_byte(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"turns: 3\nnames: [caf\xe9]\n")  # Latin-1
    with pytest.raises(ParrotError, match=r"cfg\.yaml:2: not UTF-8 text \(byte 0xe9 at offset 20\)"):
        parse(["--config", str(path)])


def billion_laughs(levels: int = 8, width: int = 9) -> str:
    """Each level a list of ``width`` aliases of the one before: width**levels values once expanded."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_the_alias_that_goes_too_far(tmp_path):
    # 9 + 9*10 + 9*91 + ... values: the first alias of a5 (line 6) takes the count past 100,000
    with pytest.raises(ParrotError, match=r"cfg\.yaml:6: aliases expand to more than 100000 values"):
        parse(["--config", yaml_file(tmp_path, billion_laughs())])


def test_a_few_anchors_and_aliases_still_load(tmp_path):
    text = "names: &n [a, b]\nasker: &role {spec: hf:/m, concurrency: 3}\n"
    assert read_yaml(text + "more: *n\nother: *role\n")["other"] == {"spec": "hf:/m", "concurrency": 3}
    assert read_yaml(billion_laughs(levels=3))["a3"][8][8][8] == ["lol"] * 9  # 7380 values


def test_values_nested_too_deep_are_refused_naming_the_line(tmp_path):
    with pytest.raises(ParrotError, match=r"cfg\.yaml:2: values nested more than 64 levels deep"):
        parse(["--config", yaml_file(tmp_path, "turns: 3\nnames: " + "[" * 500 + "]" * 500 + "\n")])


def test_aliases_that_nest_too_deep_together_are_refused(tmp_path):
    lines = ["a0: &a0 " + "[" * 40 + "]" * 40] + [f"a{i}: &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]" for i in range(1, 4)]
    with pytest.raises(ParrotError, match=r"cfg\.yaml:4: values nested more than 64 levels deep \(aliases"):
        parse(["--config", yaml_file(tmp_path, "\n".join(lines) + "\n")])


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    with pytest.raises(ParrotError, match=r"cfg\.yaml:1: alias \*n refers to a value that holds it"):
        parse(["--config", yaml_file(tmp_path, "names: &n [a, *n]\n")])


def test_a_key_given_twice_names_both_lines(tmp_path):
    path = yaml_file(tmp_path, "turns: 3\nratio: 0.5\nturns: 4\n")
    with pytest.raises(ParrotError, match=rf"^{re.escape(f'{path}:1 and {path}:3')}: duplicate key 'turns'$"):
        parse(["--config", path])


def test_a_key_given_twice_in_a_nested_mapping_names_both_lines(tmp_path):
    with pytest.raises(ParrotError, match=r"cfg\.yaml:3 and \S*cfg\.yaml:4: duplicate key 'concurrency'$"):
        parse(["--config", yaml_file(tmp_path, "asker:\n  spec: hf:/m\n  concurrency: 3\n  concurrency: 4\n")])


def test_a_merged_key_given_again_is_not_a_duplicate():
    data = read_yaml("base: &b {spec: hf:/m, concurrency: 3}\nasker:\n  <<: *b\n  concurrency: 5\n")
    assert data["asker"] == {"spec": "hf:/m", "concurrency": 5}


def test_a_key_given_twice_in_a_mapping_on_the_command_line_is_an_error():
    from parrot.synthesize.stage import SynthesizeConfig

    with pytest.raises(ParrotError, match=r"^command line: assistant: extra: duplicate key 'a'$"):
        build_config(SynthesizeConfig, {"output": "x"}, ['assistant.extra={"a": 1, "a": 2}'])


# ---------------------------------------------------------------- ranges, said where a setting is declared


def synth(*overrides, data=None):
    from parrot.synthesize.stage import SynthesizeConfig

    return build_config(SynthesizeConfig, {"output": "x", **(data or {})}, list(overrides))


def test_a_count_below_its_range_on_the_command_line_says_so():
    with pytest.raises(ParrotError, match=r"^command line: num_sessions: expected at least 1, found -3$"):
        synth("num_sessions=-3")


def test_a_flag_below_its_range_names_the_command_line():
    from parrot.synthesize.stage import SynthesizeConfig

    with pytest.raises(ParrotError, match=r"^command line: max_turns: expected at least 1, found 0$"):
        parse(["-o", "x", "--max-turns", "0"], SynthesizeConfig)


def test_a_number_out_of_range_in_yaml_names_the_file_and_line(tmp_path):
    from parrot.synthesize.stage import SynthesizeConfig

    with pytest.raises(ParrotError, match=r"cfg\.yaml:2: num_sessions: expected at least 1, found 0$"):
        parse(["--config", yaml_file(tmp_path, "output: x\nnum_sessions: 0\n")], SynthesizeConfig)


def test_a_model_roles_setting_out_of_range_names_the_role():
    with pytest.raises(ParrotError, match=r"^command line: asker: concurrency: expected at least 1, found 0$"):
        synth("asker.concurrency=0")


def test_an_optional_limit_may_be_null_but_not_below_one():
    from parrot.evaluate.answer import AnswerConfig

    assert build_config(AnswerConfig, {"output": "a.jsonl", "limit": None}).limit is None
    with pytest.raises(ParrotError, match=r"^command line: limit: expected at least 1, found 0$"):
        build_config(AnswerConfig, {"output": "a.jsonl"}, ["limit=0"])


def test_an_open_bound_refuses_the_bound_itself():
    assert synth("assistant.top_p=1").assistant.top_p == 1.0
    for bad in ("0", "1.5"):
        with pytest.raises(ParrotError, match=r"^command line: assistant: top_p: expected a number in \(0, 1\], found"):
            synth(f"assistant.top_p={bad}")


def test_each_item_of_a_list_of_numbers_is_range_checked():
    from parrot.evaluate.judge import JudgeConfig

    with pytest.raises(ParrotError, match=r"^command line: turns\[1\]: expected at least 1, found 0$"):
        build_config(JudgeConfig, {"answers": ["a.jsonl"], "output": "j.jsonl"}, ["turns=[2, 0]"])


def test_a_range_checked_by_its_declaration_is_checked_in_a_pipeline_step():
    from parrot.pipeline import PipelineConfig

    with pytest.raises(
        ParrotError, match=r"^command line: synth_selfchat: num_sessions: expected at least 1, found -3$"
    ):
        build_config(PipelineConfig, {}, ["steps.synth_selfchat.num_sessions=-3"])


def test_the_range_shows_in_the_help():
    from parrot.synthesize.stage import SynthesizeConfig

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, SynthesizeConfig)
    text = " ".join(parser.format_help().split())
    assert "(all shards together) (at least 1; default: 100)" in text


def test_a_default_outside_its_declared_range_is_a_mistake_at_declaration():
    with pytest.raises(ValueError, match="default 0 is not at least 1"):
        opt(0, "sessions", min=1)


def test_a_config_made_in_python_is_held_to_its_declared_ranges():
    from parrot.filter.stage import FilterConfig

    with pytest.raises(ParrotError, match=r"^ngram: expected at least 1, found 0$"):
        FilterConfig(input="in.jsonl", output="out.jsonl", ngram=0)


def numeric_fields():
    """Every int or float setting (lists of them too) of every stage config, a model role's and chat's."""
    from parrot.backends import BackendConfig
    from parrot.chat import ChatConfig
    from parrot.core.config import strip_optional
    from parrot.stages import STAGES

    for cls in dict.fromkeys([*(s.config for s in STAGES), BackendConfig, ChatConfig]):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = strip_optional(hints[f.name])[0]
            if tp in (int, float) or typing.get_args(tp) in ((int,), (float,)):
                yield cls, f


def test_every_numeric_setting_declares_its_range():
    undeclared = [
        f"{cls.__name__}.{f.name}"
        for cls, f in numeric_fields()
        if all(f.metadata.get(bound) is None for bound in ("min", "max", "above", "below"))
    ]
    assert not undeclared


# ---------------------------------------------------------------- integers never go through a float


def test_a_big_integer_stays_exact(tmp_path):
    big = 99999999999999999999999
    assert parse([f"turns={big}"]).turns == big
    assert parse(["--turns", str(big)]).turns == big
    assert parse(["--config", yaml_file(tmp_path, f"turns: {big}\n")]).turns == big


def test_an_integer_in_scientific_notation_is_read_exactly(tmp_path):
    assert parse(["turns=1e3"]).turns == 1000
    assert parse(["turns=1e23"]).turns == 10**23
    assert parse(["turns=1.5e1"]).turns == 15
    assert parse(["--config", yaml_file(tmp_path, "turns: 1e23\n")]).turns == 10**23
    for bad in ("2.5", "1e-3", "1.25e1"):
        with pytest.raises(ParrotError, match=rf"^command line: turns: expected int, found '{re.escape(bad)}'$"):
            parse([f"turns={bad}"])


def test_an_exponent_too_large_to_write_out_is_refused_at_once():
    with pytest.raises(ParrotError, match=r"^command line: turns: expected int, found '1e999999999'$"):
        parse(["turns=1e999999999"])


def test_a_float_setting_refuses_nan_and_infinity(tmp_path):
    for bad in ("nan", "inf", "-inf"):
        with pytest.raises(ParrotError, match=rf"^command line: ratio: expected float, found '{bad}'$"):
            parse([f"ratio={bad}"])
    with pytest.raises(ParrotError, match=r"cfg\.yaml:1: ratio: expected float, found inf$"):
        parse(["--config", yaml_file(tmp_path, "ratio: .inf\n")])
