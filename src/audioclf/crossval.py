"""k-fold cross-validation over the corpus's own folds, on the one feature cache.

For test fold k: val = the fold before k (cyclic over the cache's folds, so test 5 / val 4 is
exactly the default pipeline's split), train = every other fold. The split stage's own
`make_splits` assembles the rows, so CV folds and the pipeline's split can never disagree.
Normalisation is fitted inside `train_model` on each fold's training rows, so sharing the cache
does not leak test statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from audioclf.config import SplitConfig
from audioclf.errors import AudioclfError
from audioclf.split import make_splits


def load_cv_folds(path: Path) -> list[int]:
    """`cv.folds` from cv/params.yaml: the test folds to run (a subset of the corpus's folds)."""
    if not path.is_file():
        raise AudioclfError(f"{path}: not found; it lists the test folds as `cv: {{folds: [1, 2, 3, 4, 5]}}`")
    raw = yaml.safe_load(path.read_text()) or {}
    cv = raw.get("cv") if isinstance(raw, dict) else None
    if not isinstance(cv, dict) or set(raw) != {"cv"} or set(cv) != {"folds"}:
        raise AudioclfError(f"{path}: must hold exactly `cv: {{folds: [...]}}` (the test folds to run)")
    folds = cv["folds"]
    if (
        not isinstance(folds, list)
        or not folds
        or not all(isinstance(f, int) and not isinstance(f, bool) for f in folds)
        or len(set(folds)) != len(folds)
    ):
        raise AudioclfError(f"{path}: cv.folds must be a non-empty list of distinct fold numbers, got {folds!r}")
    return folds


def available_folds(index: pd.DataFrame) -> list[int]:
    folds = pd.to_numeric(index["fold"], errors="coerce").dropna()
    return sorted(int(f) for f in folds.unique())


def val_fold_for(test_fold: int, folds: list[int]) -> int:
    """The fold before `test_fold` in sorted order, wrapping around (1 → the last fold)."""
    ordered = sorted(folds)
    return ordered[ordered.index(test_fold) - 1]


def fold_rows(index: pd.DataFrame, test_fold: int) -> dict[str, np.ndarray]:
    """Cache rows of train/val/test for one CV fold. index: the cache's index.csv (row, path, label,
    fold). Rows come in path order, as the split stage writes them, so a fold trains identically to
    the pipeline run with the same test/val folds."""
    folds = available_folds(index)
    if len(folds) < 3:
        raise AudioclfError(
            f"data/features/index.csv: folds {folds}; cross-validation needs >= 3 folds (train, val, test) "
            "from the corpus (synthetic, esc50, urbansound8k have them)"
        )
    if test_fold not in folds:
        raise AudioclfError(f"cv/params.yaml: fold {test_fold} is not in the feature cache's folds {folds}")
    if (pd.to_numeric(index["fold"], errors="coerce").isna()).any():
        raise AudioclfError("data/features/index.csv: some rows have no fold; CV needs every row in a fold")
    cfg = SplitConfig(strategy="folds", test_fold=test_fold, val_fold=val_fold_for(test_fold, folds))
    parts = make_splits(index, cfg)
    return {name: frame["row"].to_numpy(dtype=np.int64) for name, frame in parts.items()}


def aggregate(reports: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """reports: fold → {"test": headline metrics, "per_class": {class: {"f1", ...}}}.

    Returns mean and std per headline metric, each fold's headline, and per-class F1 mean/std.
    std is the sample std (ddof=1): five folds are a sample of possible splits; 0 for one fold.
    """
    if not reports:
        raise AudioclfError("cv: no fold reports to aggregate; run the fold stages first (dvc repro cv/dvc.yaml)")
    folds = sorted(reports)
    ddof = 1 if len(folds) > 1 else 0
    keys = [k for k, v in reports[folds[0]]["test"].items() if isinstance(v, (int, float))]
    table = np.array([[float(reports[f]["test"][k]) for k in keys] for f in folds])
    classes = list(reports[folds[0]]["per_class"])
    f1 = np.array([[float(reports[f]["per_class"][c]["f1"]) for c in classes] for f in folds])
    return {
        "mean": dict(zip(keys, table.mean(axis=0).tolist(), strict=True)),
        "std": dict(zip(keys, table.std(axis=0, ddof=ddof).tolist(), strict=True)),
        "n_folds": len(folds),
        "folds": {str(f): reports[f]["test"] for f in folds},
        "per_class": {
            c: {"mean_f1": float(f1[:, i].mean()), "std_f1": float(f1[:, i].std(ddof=ddof))}
            for i, c in enumerate(classes)
        },
    }
