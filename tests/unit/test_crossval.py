"""Cross-validation: fold assembly from the one feature cache, aggregation, the cv stage and
cv/dvc.yaml. Uses a tiny fake cache, so no audio is decoded and training takes a second."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from audioclf.config import STAGE_PARAMS
from audioclf.crossval import aggregate, fold_rows, load_cv_folds, val_fold_for
from audioclf.errors import AudioclfError
from audioclf.stages import cv
from tests.helpers import REPO, write_params

CLASSES = ["a", "b", "c"]
FOLDS = [1, 2, 3, 4, 5]


def _index(n_per_class_fold: int = 2) -> pd.DataFrame:
    records = [
        (label, fold, i) for fold in FOLDS for label in CLASSES for i in range(n_per_class_fold)
    ]  # metadata order is not path order, as in a real corpus
    records = records[::-1]
    return pd.DataFrame(
        {
            "row": range(len(records)),
            "path": [f"audio/{label}/{label}-f{fold}-{i}.wav" for label, fold, i in records],
            "label": [label for label, _, _ in records],
            "fold": [fold for _, fold, _ in records],
            "group": "",
        }
    )


def _fake_cache(root: Path) -> Path:
    """(N, 1, 8, 12) features where each class lights up its own band, so a model can learn."""
    index = _index()
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, size=(len(index), 1, 8, 12)).astype(np.float16)
    for row, label in enumerate(index["label"]):
        band = CLASSES.index(label) * 2
        x[row, 0, band : band + 2] += 3
    out = root / "data" / "features"
    out.mkdir(parents=True)
    np.save(out / "features.npy", x)
    index.to_csv(out / "index.csv", index=False)
    meta = {"classes": CLASSES, "shape": list(x.shape), "skipped": []}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def test_fold_rows_test_is_fold_k_val_the_fold_before_train_the_rest():
    index = _index()
    fold_of = dict(zip(index["row"], index["fold"], strict=True))
    for k in FOLDS:
        rows = fold_rows(index, k)
        assert {fold_of[r] for r in rows["test"]} == {k}
        assert {fold_of[r] for r in rows["val"]} == {val_fold_for(k, FOLDS)}
        assert {fold_of[r] for r in rows["train"]} == set(FOLDS) - {k, val_fold_for(k, FOLDS)}
        together = np.concatenate(list(rows.values()))
        assert len(together) == len(set(together)) == len(index)  # disjoint and complete
        paths = index.set_index("row").loc[rows["train"], "path"].tolist()
        assert paths == sorted(paths)  # the split stage's order, so fold 5 trains like the pipeline


def test_val_fold_wraps_and_fold_5_is_the_default_split():
    assert val_fold_for(1, FOLDS) == 5
    assert val_fold_for(5, FOLDS) == 4  # params.yaml default: split.test_fold 5, split.val_fold 4
    assert val_fold_for(3, [1, 3, 7]) == 1


def test_fold_rows_rejects_unknown_fold_and_corpora_without_folds():
    with pytest.raises(AudioclfError, match="fold 9 is not in the feature cache's folds"):
        fold_rows(_index(), 9)
    with pytest.raises(AudioclfError, match="needs >= 3 folds"):
        fold_rows(_index().assign(fold=np.nan), 1)


def test_aggregate_mean_std_and_per_class():
    reports = {
        k: {"test": {"f1_macro": f1, "n": 10}, "per_class": {"a": {"f1": f1}, "b": {"f1": 1.0}}}
        for k, f1 in ((1, 0.8), (2, 0.9), (3, 1.0))
    }
    out = aggregate(reports)
    assert out["mean"]["f1_macro"] == pytest.approx(0.9)
    assert out["std"]["f1_macro"] == pytest.approx(0.1)  # sample std over folds (ddof=1)
    assert out["std"]["n"] == 0 and out["n_folds"] == 3
    assert out["folds"]["2"]["f1_macro"] == 0.9
    assert out["per_class"]["a"]["mean_f1"] == pytest.approx(0.9)
    assert out["per_class"]["b"] == {"mean_f1": 1.0, "std_f1": 0.0}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("cv: {folds: [1, 1]}", "distinct fold numbers"),
        ("cv: {folds: 5}", "distinct fold numbers"),
        ("cv: {folds: [1], k: 5}", "must hold exactly"),
    ],
)
def test_cv_params_errors(tmp_path, text, fragment):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(AudioclfError, match=fragment):
        load_cv_folds(path)


def test_fold_and_aggregate_stages_write_reports(tmp_path):
    features = _fake_cache(tmp_path)
    params = write_params(
        tmp_path / "params.yaml",
        {"train": {"model": "convnet", "model_params": {"convnet": {"channels": [4]}}, "epochs": 1, "batch_size": 6}},
    )
    cv_params = tmp_path / "cv_params.yaml"
    cv_params.write_text("cv:\n  folds: [2, 5]\n")
    common = ["--params", str(params), "--cv-params", str(cv_params), "--features", str(features)]
    common += ["--fold-dir", str(tmp_path / "cv"), "--out", str(tmp_path / "cv.json")]
    common += ["--details", str(tmp_path / "details" / "cv.json")]
    for fold in (2, 5):
        cv.main([*common, "fold", str(fold)])
    report = json.loads((tmp_path / "cv" / "fold_5.json").read_text())
    assert (report["fold"], report["val_fold"], report["n_train"], report["n_val"]) == (5, 4, 18, 6)
    assert report["test"]["n"] == 6 and set(report["per_class"]) == set(CLASSES)
    cv.main([*common, "aggregate"])
    summary = json.loads((tmp_path / "details" / "cv.json").read_text())
    assert set(summary) == {"mean", "std", "n_folds", "folds", "per_class"}
    assert set(summary["folds"]) == {"2", "5"} and "f1_macro" in summary["std"]
    # the metrics file (a `dvc exp show` column each) holds the headline mean ± std only
    headline = json.loads((tmp_path / "cv.json").read_text())
    assert set(headline) == {"mean", "std", "n_folds"} and headline["n_folds"] == 2
    assert set(headline["mean"]) == {"accuracy", "precision_macro", "recall_macro", "f1_macro", "iou_macro"} | {
        "top3_accuracy"
    }
    assert headline["mean"]["f1_macro"] == summary["mean"]["f1_macro"]
    with pytest.raises(AudioclfError, match=r"fold 3 is not in cv\.folds"):
        cv.main([*common, "fold", "3"])


def test_cv_dvc_yaml_trains_with_the_train_params_over_the_listed_folds():
    pipeline = yaml.safe_load((REPO / "cv" / "dvc.yaml").read_text())["stages"]
    fold = pipeline["fold"]
    assert fold["foreach"] == "${cv.folds}"
    assert sorted(fold["do"]["params"]) == sorted([*STAGE_PARAMS["train"], "evaluate.top_k"])
    assert fold["do"]["wdir"] == pipeline["aggregate"]["wdir"] == ".."
    for dep in fold["do"]["deps"] + pipeline["aggregate"]["deps"]:
        if dep.startswith("src/"):
            assert (REPO / dep).exists(), dep
    assert load_cv_folds(REPO / "cv" / "params.yaml") == FOLDS
