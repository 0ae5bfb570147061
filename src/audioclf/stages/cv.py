"""cv: k-fold cross-validation (cv/dvc.yaml, run with `dvc repro cv/dvc.yaml`).

`audioclf stage cv fold K`: train on the folds other than K and the one before it (the val fold),
score fold K → metrics/cv/fold_K.json. `audioclf stage cv aggregate`: mean ± std per metric and
per-class F1 over the folds in cv/params.yaml → metrics/cv.json (the headline mean ± std) and
metrics/details/cv.json (every metric, each fold, per class).
"""

from __future__ import annotations

from pathlib import Path

from audioclf.cache import load_cache
from audioclf.config import load_params
from audioclf.crossval import aggregate, available_folds, fold_rows, load_cv_folds, val_fold_for
from audioclf.errors import AudioclfError
from audioclf.fileio import read_json, write_json
from audioclf.headline import cv_headline
from audioclf.metrics import classification_report, softmax
from audioclf.runtime import configure_threads, select_device
from audioclf.stages.common import parser, say
from audioclf.training import fit_rows, predict_logits, train_model


def run_fold(fold: int, params_path: Path, cv_params: Path, features: Path, out_dir: Path) -> dict:
    cfg = load_params(params_path)
    if fold not in load_cv_folds(cv_params):
        raise AudioclfError(f"{cv_params}: fold {fold} is not in cv.folds; add it there or run a listed fold")
    cache = load_cache(features)
    rows = fold_rows(cache.index, fold)
    device = select_device(cfg.runtime.device)
    configure_threads(cfg.runtime.threads)
    labels = cache.labels()
    # no checkpoint dir: each fold is its own DVC stage, so an interruption costs one fold at most
    result = train_model(cache.x, labels, rows["train"], rows["val"], cache.classes, cfg.train, device)
    probs = softmax(predict_logits(result.model, cache.x, rows["test"], device))
    headline, per_class = classification_report(labels[rows["test"]], probs, cache.classes, cfg.evaluate.top_k)
    report = {
        "fold": fold,
        "val_fold": val_fold_for(fold, available_folds(cache.index)),
        "n_train": len(fit_rows(rows["train"], rows["val"], cfg.train)),
        "n_val": len(rows["val"]),
        "best_epoch": result.best_epoch,
        "best_val_f1_macro": result.best_val_f1,
        "test": headline,
        "per_class": per_class,
    }
    write_json(out_dir / f"fold_{fold}.json", report)
    return report


def run_aggregate(cv_params: Path, fold_dir: Path, out: Path, details: Path) -> dict:
    reports = {}
    for fold in load_cv_folds(cv_params):
        path = fold_dir / f"fold_{fold}.json"
        if not path.is_file():
            raise AudioclfError(f"{path}: not found; run the fold stages first (dvc repro cv/dvc.yaml)")
        reports[fold] = read_json(path)
    summary = aggregate(reports)
    write_json(details, summary)
    write_json(out, cv_headline(summary))
    return summary


def main(argv: list[str] | None = None) -> None:
    p = parser("cv", __doc__)
    p.add_argument("--cv-params", type=Path, default=Path("cv/params.yaml"), help="default: %(default)s")
    p.add_argument("--features", type=Path, default=Path("data/features"))
    p.add_argument("--fold-dir", type=Path, default=Path("metrics/cv"))
    p.add_argument("--out", type=Path, default=Path("metrics/cv.json"))
    p.add_argument("--details", type=Path, default=Path("metrics/details/cv.json"))
    sub = p.add_subparsers(dest="command", required=True)
    fold_p = sub.add_parser("fold", help="train and score one fold")
    fold_p.add_argument("fold", type=int)
    sub.add_parser("aggregate", help="mean ± std over the fold reports")
    args = p.parse_args(argv)
    if args.command == "fold":
        report = run_fold(args.fold, args.params, args.cv_params, args.features, args.fold_dir)
        test = report["test"]
        say(
            "cv",
            f"fold {args.fold} (val fold {report['val_fold']}, {report['n_train']} train rows): test accuracy "
            f"{test['accuracy']:.4f}, macro-F1 {test['f1_macro']:.4f} → {args.fold_dir / f'fold_{args.fold}.json'}",
        )
    else:
        summary = run_aggregate(args.cv_params, args.fold_dir, args.out, args.details)
        mean, std = summary["mean"], summary["std"]
        say(
            "cv",
            f"{summary['n_folds']} folds: macro-F1 {mean['f1_macro']:.4f} ± {std['f1_macro']:.4f}, accuracy "
            f"{mean['accuracy']:.4f} ± {std['accuracy']:.4f} → {args.out}",
        )
