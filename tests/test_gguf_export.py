"""GGUF export of Llama checkpoints: tensors, tokenizer metadata, and llama.cpp generating exactly
what transformers generates from the same weights."""

import json
import shutil

import numpy as np
import pytest

from parrot import ParrotError
from parrot.backends import SamplingParams, load_backend
from parrot.backends.gguf_export import export_gguf, gguf_tensor_name, rope_permute, rope_unpermute

GREEDY = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=16, seed=0)
PROMPTS = [
    [{"role": "user", "content": "Tell me about parrots."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}],
]


def tiny_llama(out, tokenizer_dir, seed=0, **overrides):
    """A 2-layer random Llama saved with the SmolLM2 tokenizer. Weights drawn wider than the usual
    0.02 (``initializer_range=0.2``), so greedy decoding does not hang on near-ties."""
    import torch
    from fixtures.models import tiny_llama_config
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    settings = {"initializer_range": 0.2, "max_position_embeddings": 2048, **overrides}
    model = LlamaForCausalLM(tiny_llama_config(tok, **settings))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, smollm2_tokenizer_dir):
    """Untied: the head is exported as ``output`` (a tied one is left out: see the SmolLM2 test)."""
    return tiny_llama(tmp_path_factory.mktemp("tiny-gguf") / "model", smollm2_tokenizer_dir, tie_word_embeddings=False)


@pytest.fixture(scope="module")
def exported(tiny_dir, tmp_path_factory):
    """The tiny model exported as f16, read back (``gguf.GGUFReader``: ~3 s for the vocabulary)."""
    import gguf

    return gguf.GGUFReader(export_gguf(tiny_dir, tmp_path_factory.mktemp("f16") / "tiny.gguf"))


def gguf_tensors(path) -> dict:
    import gguf

    return {t.name: t for t in gguf.GGUFReader(path).tensors}


def test_rope_permutation_is_undone_by_its_inverse():
    w = np.arange(4 * 8 * 3, dtype=np.float32).reshape(4 * 8, 3)  # 4 heads of 8 rows
    p = rope_permute(w, 4)
    assert not np.array_equal(p, w) and np.array_equal(rope_unpermute(p, 4), w)
    # head 0's rows: the first half and second half of its dimensions, interleaved in pairs
    assert p[:8, 0].tolist() == [0, 12, 3, 15, 6, 18, 9, 21]


def test_tensor_names():
    assert gguf_tensor_name("model.layers.3.self_attn.q_proj.weight") == "blk.3.attn_q.weight"
    assert gguf_tensor_name("model.layers.0.post_attention_layernorm.weight") == "blk.0.ffn_norm.weight"
    assert gguf_tensor_name("lm_head.weight") == "output.weight"
    assert gguf_tensor_name("model.layers.0.self_attn.rotary_emb.inv_freq") is None


@pytest.mark.slow
def test_round_trip_through_transformers_gguf_loader(tiny_dir, tmp_path):
    """Exported, then loaded back by transformers' own GGUF reader (which undoes llama.cpp's
    names and rope permutation): every tensor equals the checkpoint's, the untied head included.
    (Slow only for reading the vocabulary: ~15 s.)"""
    import torch
    from transformers import AutoModelForCausalLM

    path = export_gguf(tiny_dir, tmp_path / "untied.gguf", "f32")
    names = set(gguf_tensors(path))
    assert "output.weight" in names and "blk.1.attn_q.weight" in names and len(names) == 2 * 9 + 3
    before = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32).state_dict()
    assert set(after) == set(before)
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name


def test_tokenizer_metadata_matches_the_embedded_smollm2_gguf(exported):
    """The tokenizer read from the checkpoint's files is the one llama.cpp's own converter wrote
    for SmolLM2: tokens, types, merges, special ids, chat template, pre-tokenizer ``smollm``."""
    import gguf

    from parrot.core.assets import smollm2_gguf_path

    ours = exported.fields
    ref = gguf.GGUFReader(smollm2_gguf_path()).fields
    keys = [k for k in ref if k.startswith("tokenizer.") and k != "tokenizer.ggml.add_space_prefix"]
    for key in keys:
        assert ours[key].contents() == ref[key].contents(), key
    assert ours["tokenizer.ggml.pre"].contents() == "smollm"
    assert ours["llama.attention.head_count_kv"].contents() == 2
    assert ours["llama.rope.dimension_count"].contents() == 8


def test_f16_keeps_norms_in_f32(exported, tiny_dir):
    from safetensors.numpy import load_file

    tensors = {t.name: t for t in exported.tensors}
    assert tensors["blk.0.ffn_up.weight"].tensor_type.name == "F16"
    assert tensors["output.weight"].tensor_type.name == "F16"
    assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    ref = load_file(tiny_dir / "model.safetensors")["model.layers.0.mlp.up_proj.weight"]
    assert np.allclose(np.asarray(tensors["blk.0.ffn_up.weight"].data, dtype=np.float32), ref, atol=1e-3)


def test_llama_cpp_generates_what_transformers_generates(tiny_dir, tmp_path):
    """The same random weights, greedy: the hf backend (transformers, float32) and the gguf
    backend (llama.cpp on the f32 export) give the same prompt token counts and the same text.
    (Without the rope permutation, or with a tensor misnamed, the texts differ from the first
    tokens.)"""
    path = export_gguf(tiny_dir, tmp_path / "tiny.gguf", "f32")
    with load_backend(f"hf:{tiny_dir}") as hf:
        expected = hf.generate(PROMPTS, GREEDY)
    with load_backend(f"gguf:{path}", slots=2, ctx_size=1024) as llama:
        got = llama.generate(PROMPTS, GREEDY)
    assert all(c.ok and c.completion_tokens == 16 for c in expected)
    assert [c.prompt_tokens for c in got] == [c.prompt_tokens for c in expected]
    assert [c.text for c in got] == [c.text for c in expected]


def test_other_architectures_are_refused_by_name(tiny_dir, tmp_path):
    other = shutil.copytree(tiny_dir, tmp_path / "qwen")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "architectures": ["Qwen2ForCausalLM"]}))
    with pytest.raises(ParrotError, match="Qwen2ForCausalLM cannot be exported"):
        export_gguf(other, tmp_path / "q.gguf")
    assert not list(tmp_path.glob("q.gguf*"))


def test_an_adapter_only_directory_is_refused(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ParrotError, match="LoRA adapter only"):
        export_gguf(tmp_path / "adapter", tmp_path / "a.gguf")


def test_q8_0_quantizes_matrices_within_half_a_step_and_llama_cpp_serves_it(tiny_dir, tmp_path):
    """q8_0: every matrix in 8-bit blocks of 32 (one scale each), each weight within half a
    quantization step (its block's largest magnitude / 127 / 2, plus the scale's float16 rounding)
    of the original; norms stay float32; llama.cpp loads the file and generates."""
    import gguf
    from safetensors.numpy import load_file

    path = export_gguf(tiny_dir, tmp_path / "q8.gguf", "q8_0")
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_Q8_0
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["blk.0.ffn_up.weight"].tensor_type.name == "Q8_0"
    assert tensors["token_embd.weight"].tensor_type.name == "Q8_0"
    assert tensors["blk.0.attn_norm.weight"].tensor_type.name == "F32"
    ref = load_file(tiny_dir / "model.safetensors")["model.layers.0.mlp.up_proj.weight"]
    got = gguf.quants.dequantize(tensors["blk.0.ffn_up.weight"].data, gguf.GGMLQuantizationType.Q8_0)
    step = np.abs(ref.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
    assert got.shape == ref.shape
    assert (np.abs(got.reshape(-1, 32) - ref.reshape(-1, 32)) <= step * 0.5 + step * 127 * 1e-3).all()
    with load_backend(f"gguf:{path}", slots=2, ctx_size=1024) as llama:
        got = llama.generate(PROMPTS, GREEDY)
    assert all(c.ok and c.completion_tokens == 16 for c in got)


def test_bad_dtype_is_refused(tiny_dir, tmp_path):
    with pytest.raises(ParrotError, match="f16, q8_0, f32"):
        export_gguf(tiny_dir, tmp_path / "x.gguf", "q4")


@pytest.mark.slow
def test_embedded_smollm2_round_trip(tmp_path):
    """The embedded SmolLM2 GGUF (Q4_1), loaded by transformers, saved as a checkpoint and
    exported as f32: every tensor equals the original's dequantized one, bit for bit (the tied
    head left out, as in the original)."""
    import gguf

    from parrot.core.assets import smollm2_gguf_path
    from parrot.core.checkpoint import smollm2_checkpoint

    ours = gguf_tensors(export_gguf(smollm2_checkpoint(), tmp_path / "smollm2.gguf", "f32"))
    ref = gguf_tensors(smollm2_gguf_path())
    assert set(ours) == set(ref)
    for name, t in ref.items():
        original = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        assert np.array_equal(np.asarray(ours[name].data, dtype=np.float32), original), name
