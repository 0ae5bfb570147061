"""evaluate: score the trained model on the test split → metrics/eval.json (headline),
details/eval.json (every average), per_class.json, confusion and per-class F1 plot data,
confusion.png and the most confident mistakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from audioclf.cache import load_cache, read_split
from audioclf.errors import AudioclfError
from audioclf.fileio import remove_stale_temps, write_csv, write_json
from audioclf.headline import DETAILS_DIR, eval_headline
from audioclf.metrics import classification_report, confusion_matrix, softmax
from audioclf.modelio import check_features_match, load_model
from audioclf.report import plot_confusion
from audioclf.runtime import configure_threads, select_device
from audioclf.sidecar import SIDECAR_NAME
from audioclf.stages.common import params, parser, say
from audioclf.training import predict_logits


def mistakes_table(paths: list[str], y_true: np.ndarray, probs: np.ndarray, classes: list[str], n: int) -> pd.DataFrame:
    """The `n` wrong predictions the model was surest of: the clips worth listening to."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    confidence = probs[wrong, pred[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:n]
    return pd.DataFrame(
        {
            "path": [paths[i] for i in order],
            "actual": [classes[y_true[i]] for i in order],
            "predicted": [classes[pred[i]] for i in order],
            "probability": np.round(probs[order, pred[order]], 4),
            "p_actual": np.round(probs[order, y_true[order]], 4),
        }
    )


def confusion_cells(matrix: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """One row per (actual, predicted) pair of classes, zeros included: the plot draws every class
    on both axes even when the model never predicts some (DVC's own template counts rows, so a
    class nobody predicted would vanish from the x axis). N x N rows instead of one per clip."""
    n = len(classes)
    return pd.DataFrame(
        {
            "actual": np.repeat(classes, n),
            "predicted": np.tile(classes, n),
            "count": matrix.reshape(-1).astype(int),
        }
    )


def main(argv: list[str] | None = None) -> None:
    p = parser("evaluate", __doc__)
    p.add_argument("--features", type=Path, default=Path("data/features"))
    p.add_argument("--splits", type=Path, default=Path("data/splits"))
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--metrics", type=Path, default=Path("metrics"))
    args = p.parse_args(argv)
    cfg = params(args)
    configure_threads(cfg.runtime.threads)
    cache = load_cache(args.features)
    model, meta = load_model(args.models)
    check_features_match(meta, cache.meta, args.models / SIDECAR_NAME)
    test = read_split(args.splits, "test")
    rows = cache.rows_for(test, "test")
    if len(rows) == 0:
        raise AudioclfError(
            f"{args.splits / 'test.csv'}: none of its clips is in the feature cache (all skipped as unusable? "
            f"see {args.features / 'meta.json'}); fix the data or change the split params"
        )
    remove_stale_temps(args.metrics, args.metrics / "plots", args.metrics / DETAILS_DIR)  # what a killed run left
    device = select_device(cfg.runtime.device)
    probs = softmax(predict_logits(model.to(device), cache.x, rows, device))
    y_true = cache.labels()[rows]
    classes = cache.classes
    headline, per_class = classification_report(y_true, probs, classes, cfg.evaluate.top_k)

    out = args.metrics
    write_json(out / "eval.json", {"test": eval_headline(headline)})
    write_json(out / DETAILS_DIR / "eval.json", {"test": headline})
    write_json(out / "per_class.json", per_class)
    pred = probs.argmax(1)
    matrix = confusion_matrix(y_true, pred, len(classes))
    write_csv(out / "plots" / "confusion.csv", confusion_cells(matrix, classes))
    write_csv(
        out / "plots" / "per_class_f1.csv",
        pd.DataFrame({"class": classes, "f1": [round(per_class[c]["f1"], 4) for c in classes]}),
    )
    paths = cache.index["path"].to_numpy()[rows].tolist()
    write_csv(out / "mistakes.csv", mistakes_table(paths, y_true, probs, classes, cfg.evaluate.n_mistakes))
    plot_confusion(
        matrix,
        classes,
        out / "confusion.png",
        f"test: accuracy {headline['accuracy']:.3f}, macro-F1 {headline['f1_macro']:.3f} (n={len(rows)})",
    )
    say(
        "evaluate",
        f"test n={headline['n']}: accuracy {headline['accuracy']:.4f}, macro-F1 {headline['f1_macro']:.4f}, "
        f"macro-IoU {headline['iou_macro']:.4f} → {out / 'eval.json'}",
    )
