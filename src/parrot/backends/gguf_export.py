"""Export a trained Llama-family checkpoint to a GGUF file, for the ``gguf:PATH`` backend.

llama.cpp (through ``xllamacpp``) runs SmolLM2-135M about five times faster on a couple of CPU
cores than transformers does in float32, so a model Parrot trained is worth serving that way.
:func:`export_gguf` reads an ordinary checkpoint directory (``config.json``, safetensors
weights, ``tokenizer.json``) and writes one GGUF file with the ``gguf`` package:

- hyperparameters from ``config.json`` (context length, width, blocks, heads, KV heads, head
  size, rope theta, RMS-norm epsilon, vocabulary size);
- the tensors under llama.cpp's names (``token_embd``, ``blk.N.attn_q`` ...), the query and key
  projections permuted for llama.cpp's rope layout (:func:`rope_permute`), ``output`` left out
  when the head is tied to the embeddings (llama.cpp then reuses ``token_embd``);
- the tokenizer: a byte-level BPE (llama.cpp's ``gpt2`` model) with its tokens, token types,
  merges, special token ids, ``add_bos``, the chat template, and the name of llama.cpp's
  pre-tokenizer (:func:`pre_tokenizer_name`).

Matrices are written as float16 (``dtype="f16"``, the default: half the size of float32), as
``q8_0`` (llama.cpp's 8-bit blocks: 32 weights and one float16 scale each; near-lossless, and
generation about 1.2x faster than float16 on a 2-core CPU, ``benchmarks/gguf_dtype.py``) or as
float32; norms always as float32. Only ``LlamaForCausalLM``
with the default rope and a byte-level BPE tokenizer is handled (SmolLM, SmolLM2 and their
fine-tunes); anything else is refused with a ParrotError naming what is not supported.

>>> export_gguf("runs/demo/models/ask", "runs/demo/models/ask/model.gguf")    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from parrot import ParrotError

log = logging.getLogger("parrot.gguf_export")

#: The matrix types :func:`export_gguf` writes, and the file type each declares.
DTYPES = {"f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0", "f32": "ALL_F32"}

#: Architectures this exporter writes (the ``architectures`` entry of ``config.json``).
SUPPORTED = ("LlamaForCausalLM",)

#: HF tensor names → llama.cpp's (``{n}``: the block index).
_BLOCK_TENSORS = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_TOP_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_BLOCK_RE = re.compile(r"model\.layers\.(\d+)\.(.+)")

#: sha256 of SmolLM/SmolLM2's token list (49152 tokens, joined by newlines): see
#: :func:`pre_tokenizer_name`.
SMOLLM_VOCAB_SHA256 = "d1f2ce856b324081b621d9e2e8dbd22879f462329f3fd4aa39fa758dddb2ce55"

#: Llama 3's pre-tokenizer regex (llama.cpp's ``llama-bpe``).
_LLAMA3_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def gguf_tensor_name(hf_name: str) -> str | None:
    """llama.cpp's name for a checkpoint tensor, or None for one it does not take
    (``model.layers.3.self_attn.q_proj.weight`` → ``blk.3.attn_q.weight``)."""
    if hf_name in _TOP_TENSORS:
        return _TOP_TENSORS[hf_name]
    m = _BLOCK_RE.fullmatch(hf_name)
    if m and m.group(2) in _BLOCK_TENSORS:
        return f"blk.{m.group(1)}.{_BLOCK_TENSORS[m.group(2)]}"
    return None


def rope_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a query/key projection from HF's rope layout (each head's first half
    of dimensions, then its second half) to llama.cpp's (the two halves interleaved in pairs)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def rope_unpermute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of :func:`rope_permute` (llama.cpp's layout back to HF's)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


# ---------------------------------------------------------------- reading the checkpoint


def read_config(checkpoint: Path) -> dict:
    path = checkpoint / "config.json"
    if (checkpoint / "adapter_config.json").is_file() and not path.is_file():
        raise ParrotError(
            f"{checkpoint}: holds a LoRA adapter only; GGUF export needs full weights (train with merge=true)"
        )
    if not path.is_file():
        raise ParrotError(f"{checkpoint}: no config.json (not a checkpoint directory)")
    config = json.loads(path.read_text(encoding="utf-8"))
    archs = config.get("architectures") or [config.get("model_type", "unknown")]
    if archs[0] not in SUPPORTED:
        raise ParrotError(
            f"{checkpoint}: architecture {archs[0]} cannot be exported to GGUF (supported: {', '.join(SUPPORTED)})"
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type != "default":
        raise ParrotError(f"{checkpoint}: rope type {rope_type!r} cannot be exported to GGUF (only the default rope)")
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            raise ParrotError(f"{checkpoint}: {flag}=true cannot be exported to GGUF")
    return config


def rope_theta(config: dict) -> float:
    rope = config.get("rope_parameters") or {}
    return float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)


def iter_tensors(checkpoint: Path):
    """``(name, float32 array)`` for every tensor in the checkpoint's safetensors file(s)."""
    from safetensors import safe_open

    from parrot.core.checkpoint import check_weights

    files = sorted(checkpoint.glob("model*.safetensors"))
    if not files:
        raise ParrotError(f"{checkpoint}: no safetensors weights (model.safetensors) to export")
    for file in files:
        check_weights(file)
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name).float().numpy()


# ---------------------------------------------------------------- the tokenizer


def pre_tokenizer_name(tokenizer_json: dict, tokens: list[str]) -> str:
    """The name llama.cpp gives the tokenizer's pre-tokenizer (the splitting before BPE).

    Recognised: SmolLM's (digits one by one, then GPT-2's byte-level regex: ``smollm``), GPT-2's
    (``gpt-2``) and Llama 3's (``llama-bpe``). A SmolLM vocabulary with a plain byte-level
    pre-tokenizer is ``smollm`` too: transformers' GGUF loader, which makes Parrot's checkpoints
    of the embedded SmolLM2, drops the digit splitting, but the model was pretrained with it.
    """
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        if hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest() == SMOLLM_VOCAB_SHA256:
            return "smollm"
        return "gpt-2"
    if kinds == ["Split", "ByteLevel"] and (steps[0].get("pattern") or {}).get("Regex") == _LLAMA3_REGEX:
        return "llama-bpe"
    raise ParrotError(
        f"tokenizer pre-tokenizer {json.dumps(pre)[:200]} is not one llama.cpp is known to match "
        "(smollm, gpt-2, llama-bpe): give export_gguf's pre_tokenizer= the llama.cpp name"
    )


def tokenizer_metadata(checkpoint: Path, config: dict, pre_tokenizer: str | None = None) -> dict:
    """What the GGUF records about the tokenizer, read from ``tokenizer.json``,
    ``tokenizer_config.json`` (special tokens, ``add_bos_token``), ``chat_template.jinja`` and
    ``config.json`` (special token ids when the tokenizer does not name them)."""
    path = checkpoint / "tokenizer.json"
    if not path.is_file():
        raise ParrotError(f"{checkpoint}: no tokenizer.json (GGUF export needs the fast tokenizer's file)")
    tj = json.loads(path.read_text(encoding="utf-8"))
    model = tj.get("model") or {}
    decoder = tj.get("decoder") or {}
    if model.get("type") != "BPE" or decoder.get("type") != "ByteLevel":
        raise ParrotError(
            f"{checkpoint}: tokenizer {model.get('type')} with decoder {decoder.get('type')}: "
            "GGUF export handles byte-level BPE tokenizers only"
        )
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["id"]: t for t in tj.get("added_tokens", [])}
    for tid, t in added.items():
        vocab[t["content"]] = tid
    size = max(int(config.get("vocab_size") or 0), max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [5] * size  # UNUSED until a token takes the id
    for text, tid in vocab.items():
        tokens[tid] = text
        if tid in added:
            types[tid] = 3 if added[tid].get("special") else 4  # CONTROL / USER_DEFINED
        else:
            types[tid] = 1  # NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]

    tc_path = checkpoint / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text(encoding="utf-8")) if tc_path.is_file() else {}

    def token_id(key: str) -> int | None:
        value = tc.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in vocab:
            return vocab[value]
        cid = config.get(f"{key}_id")
        if isinstance(cid, list):
            cid = cid[0] if cid else None
        return cid if isinstance(cid, int) else None

    template_file = checkpoint / "chat_template.jinja"
    template = template_file.read_text(encoding="utf-8") if template_file.is_file() else tc.get("chat_template")
    add_bos = tc.get("add_bos_token")
    if add_bos is None:  # the post-processor decides: does it put the bos token in front?
        bos = tc.get("bos_token")
        bos = bos.get("content") if isinstance(bos, dict) else bos
        specials = (tj.get("post_processor") or {}).get("special_tokens") or {}
        add_bos = bool(bos) and bos in specials
    return {
        "pre": pre_tokenizer or pre_tokenizer_name(tj, tokens),
        "tokens": tokens,
        "types": types,
        "merges": merges,
        "ids": {key: token_id(key) for key in ("bos_token", "eos_token", "unk_token", "pad_token")},
        "add_bos": bool(add_bos),
        "chat_template": template,
    }


# ---------------------------------------------------------------- writing


def export_gguf(
    checkpoint_dir: str | Path,
    out_path: str | Path,
    dtype: str = "f16",
    *,
    pre_tokenizer: str | None = None,
    name: str | None = None,
) -> Path:
    """Write ``checkpoint_dir`` (a LlamaForCausalLM checkpoint) as a GGUF file at ``out_path``.

    ``dtype``: ``f16`` (matrices as float16, norms as float32), ``q8_0`` (matrices in llama.cpp's
    8-bit blocks, norms as float32) or ``f32``. ``pre_tokenizer``:
    llama.cpp's name for the tokenizer's pre-tokenizer when it is not recognised (see
    :func:`pre_tokenizer_name`). ``name``: the model's name in the file (default: the one
    ``config.json`` records, else the checkpoint directory's). The file is written under a
    temporary name and renamed, so ``out_path`` is never a partial file. Returns ``out_path``.
    """
    import gguf

    if dtype not in DTYPES:
        raise ParrotError(f"dtype: expected one of {', '.join(DTYPES)}, found {dtype!r}")
    checkpoint, out = Path(checkpoint_dir), Path(out_path)
    config = read_config(checkpoint)
    tok = tokenizer_metadata(checkpoint, config, pre_tokenizer)
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    width = int(config["hidden_size"])
    head_dim = int(config.get("head_dim") or width // n_head)
    n_layer = int(config["num_hidden_layers"])
    tied = bool(config.get("tie_word_embeddings", False))

    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(tmp), arch="llama")
    try:
        writer.add_name(name or config.get("_name_or_path") or config.get("_model_name_or_path") or checkpoint.name)
        writer.add_file_type(getattr(gguf.LlamaFileType, DTYPES[dtype]))
        writer.add_vocab_size(len(tok["tokens"]))
        writer.add_context_length(int(config.get("max_position_embeddings") or 2048))
        writer.add_embedding_length(width)
        writer.add_block_count(n_layer)
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_kv)
        writer.add_rope_dimension_count(head_dim)
        if head_dim != width // n_head:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        writer.add_rope_freq_base(rope_theta(config))
        writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps") or 1e-6))

        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(tok["pre"])
        writer.add_token_list(tok["tokens"])
        writer.add_token_types(tok["types"])
        writer.add_token_merges(tok["merges"])
        ids = tok["ids"]
        for key, add in (
            ("bos_token", writer.add_bos_token_id),
            ("eos_token", writer.add_eos_token_id),
            ("unk_token", writer.add_unk_token_id),
            ("pad_token", writer.add_pad_token_id),
        ):
            if ids[key] is not None:
                add(ids[key])
        writer.add_add_bos_token(tok["add_bos"])
        if tok["chat_template"]:
            writer.add_chat_template(tok["chat_template"])

        seen: set[str] = set()
        for name, array in iter_tensors(checkpoint):
            target = gguf_tensor_name(name)
            if target is None:
                if name.endswith("rotary_emb.inv_freq"):
                    continue
                raise ParrotError(f"{checkpoint}: tensor {name} has no place in a llama GGUF")
            if target == "output.weight" and tied:
                continue
            if target.endswith("attn_q.weight"):
                array = rope_permute(array, n_head)
            elif target.endswith("attn_k.weight"):
                array = rope_permute(array, n_kv)
            if dtype == "q8_0" and array.ndim > 1 and array.shape[-1] % 32 == 0:
                q8 = gguf.GGMLQuantizationType.Q8_0
                writer.add_tensor(target, gguf.quants.quantize(array.astype(np.float32), q8), raw_dtype=q8)
            else:
                if dtype != "f32" and array.ndim > 1:
                    array = array.astype(np.float16)  # q8_0: a matrix whose rows are not whole blocks
                writer.add_tensor(target, np.ascontiguousarray(array))
            seen.add(target)
        expected = {"token_embd.weight", "output_norm.weight"} | {
            f"blk.{i}.{t}" for i in range(n_layer) for t in _BLOCK_TENSORS.values()
        }
        if not tied:
            expected.add("output.weight")
        if missing := sorted(expected - seen):
            raise ParrotError(f"{checkpoint}: the weights lack {', '.join(missing[:3])}{' ...' if missing[3:] else ''}")

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s (%s, %.0f MB)", out, dtype, out.stat().st_size / 1e6)
    return out
