"""Calibration of a classifier's probabilities: temperature scaling and the expected
calibration error (numpy only; the evaluate stage fits, predict applies)."""

from __future__ import annotations

import numpy as np

ECE_BINS = 15  # the usual reliability-diagram resolution (Guo et al. 2017)


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by their counts."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.sum() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(total / max(1, len(confidence)))


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(z)), np.asarray(y_true)].mean())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """Temperature scaling: the T > 0 minimising the NLL of softmax(logits / T), by golden-section
    search on log T (the NLL is unimodal in it). Label smoothing and mixup train over- or
    under-confident nets; T fixes the confidence without moving any argmax."""
    y_true = np.asarray(y_true)
    a, b = np.log(lo), np.log(hi)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if nll(logits, y_true, np.exp(c)) < nll(logits, y_true, np.exp(d)):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))
