"""Human-likeness: can a classifier tell the dataset's questions from real users' questions?

A two-sample test. Equal-sized samples of the dataset's questions and of real user questions
(``--real``, e.g. a held-out split of prepared ShareGPT) are described by their sentence
embedding plus a few style features; a logistic regression is scored by stratified k-fold
cross-validated ROC AUC. 0.5 means the classifier cannot separate them (human-like); 1.0
means every question is recognisably synthetic.
"""

from __future__ import annotations

import math
import re

import numpy as np

from parrot.report.bootstrap import bootstrap_cell

STYLE_FEATURES = (
    "log_chars",
    "log_words",
    "has_question_mark",
    "starts_upper",
    "ends_punct",
    "newline_rate",
    "upper_rate",
    "digit_rate",
    "punct_rate",
    "mean_word_len",
    "has_please",
)

_PUNCT = re.compile(r"[^\w\s]")


def style_features(text: str) -> list[float]:
    """Surface features of one question, in the order of :data:`STYLE_FEATURES`.

    >>> dict(zip(STYLE_FEATURES, style_features("Why?")))["has_question_mark"]
    1.0
    """
    n = max(len(text), 1)
    words = text.split()
    stripped = text.strip()
    return [
        math.log1p(len(text)),
        math.log1p(len(words)),
        float("?" in text),
        float(stripped[:1].isupper()),
        float(stripped[-1:] in ".?!"),
        text.count("\n") / n * 100,
        sum(c.isupper() for c in text) / n,
        sum(c.isdigit() for c in text) / n,
        len(_PUNCT.findall(text)) / n,
        (sum(len(w) for w in words) / len(words)) if words else 0.0,
        float("please" in text.lower()),
    ]


def two_sample_auc(
    features_a: np.ndarray, features_b: np.ndarray, *, folds: int = 5, seed: int = 0, n_boot: int = 1000
) -> dict:
    """Cross-validated AUC of a logistic regression separating rows of ``a`` from rows of ``b``.

    The larger sample is cut to the size of the smaller one so the classes are balanced.
    Returns ``{"auc", "auc_std", "folds", "n_per_class", "auc_ci"}``; ``auc`` is None with fewer
    than ``folds`` rows per class. ``auc_ci``: the AUC of the pooled out-of-fold scores (each
    question scored by the classifier that did not see it) with a 95% bootstrap interval over
    questions, each class resampled on its own (:func:`parrot.report.bootstrap.bootstrap_cell`;
    the classifiers are not refitted, so it is cheap, and it leaves out the fitting's own noise).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    n = min(len(features_a), len(features_b))
    if n < folds:
        return {"auc": None, "auc_std": None, "folds": folds, "n_per_class": n}
    a = features_a[rng.permutation(len(features_a))[:n]]
    b = features_b[rng.permutation(len(features_b))[:n]]
    x = np.vstack([a, b])
    y = np.r_[np.ones(n), np.zeros(n)]
    aucs = []
    scores = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        clf.fit(x[train], y[train])
        scores[test] = clf.predict_proba(x[test])[:, 1]
        aucs.append(roc_auc_score(y[test], scores[test]))
    ci = bootstrap_cell(rank_auc, list(scores[y == 1]), list(scores[y == 0]), n_boot=n_boot, seed=seed)
    return {"auc": float(np.mean(aucs)), "auc_std": float(np.std(aucs)), "folds": folds, "n_per_class": n, "auc_ci": ci}


def rank_auc(a: list[float], b: list[float]) -> float | None:
    """The probability that a score of ``a`` exceeds one of ``b`` (ties count half): the ROC AUC of
    telling ``a`` from ``b``, by ranks (Mann-Whitney).

    >>> rank_auc([0.9, 0.8], [0.1, 0.2]), rank_auc([0.5], [0.5]), rank_auc([0.1, 0.9], [0.5, 0.5])
    (1.0, 0.5, 0.5)
    """
    if not len(a) or not len(b):
        return None
    _, where, counts = np.unique(np.r_[a, b], return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[where]  # 1-based, ties share their mean rank
    return float((ranks[: len(a)].sum() - len(a) * (len(a) + 1) / 2) / (len(a) * len(b)))


def question_features(texts: list[str], embeddings: np.ndarray) -> np.ndarray:
    """Embedding columns followed by the style features."""
    if not texts:  # a dataset with no questions in the sample
        return np.zeros((0, embeddings.shape[1] + len(style_features("x"))), dtype=np.float32)
    style = np.array([style_features(t) for t in texts], dtype=np.float32)
    return np.hstack([embeddings, style])
