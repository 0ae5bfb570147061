"""evaluate: score the trained model on the test split → metrics/eval.json (headline),
details/eval.json (every average), per_class.json, confusion and per-class F1 plot data,
confusion.png and the most confident mistakes; fit the temperature that calibrates its
probabilities on the validation split → metrics/calibration.json (the quantize stage puts it into
the deployed model's sidecar)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from audioclf.cache import load_cache, read_split
from audioclf.calibration import ECE_BINS, expected_calibration_error, fit_temperature, nll
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


def calibration(val_logits: np.ndarray, y_val: np.ndarray, test_logits: np.ndarray, y_test: np.ndarray) -> dict:
    """Temperature fitted on the validation rows (never the test rows it is judged on), with the
    test split's calibration error (ECE) and NLL before and after."""
    if len(val_logits) == 0:
        raise AudioclfError("data/splits/val.csv: no validation clips in the feature cache to calibrate on")
    val_logits, test_logits = val_logits.astype(np.float64), test_logits.astype(np.float64)
    t = fit_temperature(val_logits, y_val)

    def scores(temperature: float) -> dict[str, float]:
        probs = softmax(test_logits / temperature)
        return {
            "ece": round(expected_calibration_error(y_test, probs), 6),
            "nll": round(nll(test_logits, y_test, temperature), 6),
        }

    return {
        "temperature": round(t, 6),
        "n_val": len(val_logits),
        "ece_bins": ECE_BINS,
        "test": {"uncalibrated": scores(1.0), "calibrated": scores(t)},
    }


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
    logits = predict_logits(model.to(device), cache.x, rows, device)
    probs = softmax(logits)
    y_true = cache.labels()[rows]
    val_rows = cache.rows_for(read_split(args.splits, "val"), "val")
    val_logits = predict_logits(model, cache.x, val_rows, device) if len(val_rows) else np.zeros((0, logits.shape[1]))
    calib = calibration(val_logits, cache.labels()[val_rows], logits, y_true)
    classes = cache.classes
    headline, per_class = classification_report(y_true, probs, classes, cfg.evaluate.top_k)

    out = args.metrics
    write_json(out / "eval.json", {"test": eval_headline(headline)})
    write_json(out / DETAILS_DIR / "eval.json", {"test": headline})
    write_json(out / "per_class.json", per_class)
    write_json(out / "calibration.json", calib)
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
        f"macro-IoU {headline['iou_macro']:.4f} → {out / 'eval.json'}; temperature {calib['temperature']:.3f} "
        f"(val), test ECE {calib['test']['uncalibrated']['ece']:.4f} → {calib['test']['calibrated']['ece']:.4f}",
    )
