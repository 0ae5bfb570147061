"""Classification metrics from integer labels and probabilities (numpy only)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts; rows are true classes, columns predictions."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    iou = _safe_div(tp, tp + fp + fn)
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou, "support": cm.sum(axis=1)}


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y_true[:, None], axis=1)))


def classification_report(
    y_true: np.ndarray, probs: np.ndarray, classes: list[str], top_k: int = 3
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Headline metrics (DESIGN.md `test` keys) and per-class scores.

    Macro averages are over classes present in the test labels, so a class absent from the
    test split neither helps nor hurts.
    """
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    scores = per_class_scores(cm)
    present = scores["support"] > 0
    weights = scores["support"] / max(1, scores["support"].sum())
    headline = {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(scores["recall"][present].mean()),
        "precision_macro": float(scores["precision"][present].mean()),
        "recall_macro": float(scores["recall"][present].mean()),
        "f1_macro": float(scores["f1"][present].mean()),
        "iou_macro": float(scores["iou"][present].mean()),
        "f1_weighted": float(np.sum(scores["f1"] * weights)),
        f"top{top_k}_accuracy": top_k_accuracy(y_true, probs, top_k),
        "n": len(y_true),
    }
    per_class = {
        name: {
            "precision": float(scores["precision"][i]),
            "recall": float(scores["recall"][i]),
            "f1": float(scores["f1"][i]),
            "iou": float(scores["iou"][i]),
            "support": int(scores["support"][i]),
        }
        for i, name in enumerate(classes)
    }
    return headline, per_class


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    scores = per_class_scores(confusion_matrix(np.asarray(y_true), np.asarray(y_pred), n_classes))
    present = scores["support"] > 0
    return float(scores["f1"][present].mean())


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
