"""Helpers shared by the tests (importable as `tests.helpers`)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Small enough that every stage runs in seconds, large enough that each split has every class.
TINY_PARAMS: dict = {
    "data": {"classes": ["whistle", "buzz", "clicks"], "synthetic_clips_per_class": 10},
    "train": {"channels": [4, 8], "epochs": 3, "batch_size": 8, "patience": 3},
    "features": {"n_mels": 32},
    "quantize": {"variants": ["fp32", "int8_static"], "calibration_samples": 8, "latency_runs": 2},
    "runtime": {"workers": 1},
}


def write_params(path: Path, overrides: dict | None = None) -> Path:
    """Write TINY_PARAMS merged with `overrides` (one level deep per block)."""
    params = {block: dict(values) for block, values in TINY_PARAMS.items()}
    for block, values in (overrides or {}).items():
        params.setdefault(block, {}).update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def write_train_project(
    root: Path, *, n: int, n_folds: int, noise: float, band: int, boost: float, train: dict, runtime: dict
) -> list[str]:
    """A tiny feature cache the train stage can run on, without audio: (n, 1, 16, 20) float16 noise
    around -40 dB with `boost` dB added to `band` mel rows per class; folds 1..n_folds round-robin
    (train <= 3, val 4, test 5 when there is one), and params. Returns the train stage's argv."""
    import json

    import numpy as np
    import pandas as pd

    n_classes = 4
    rng = np.random.default_rng(0)
    y = np.arange(n) % n_classes
    x = rng.normal(0.0, noise, (n, 1, 16, 20)) - 40.0
    for i, c in enumerate(y):
        x[i, 0, 4 * c : 4 * c + band, :] += boost
    classes = [f"c{i}" for i in range(n_classes)]
    feats, splits = root / "features", root / "splits"
    feats.mkdir(parents=True)
    splits.mkdir()
    np.save(feats / "features.npy", x.astype(np.float16))
    index = pd.DataFrame({"row": range(n), "path": [f"a/{i}.wav" for i in range(n)], "label": [classes[c] for c in y]})
    index["fold"], index["group"] = np.arange(n) % n_folds + 1, ""
    index.to_csv(feats / "index.csv", index=False)
    meta = {"features": {}, "sample_rate": 8000, "duration_s": 0.25, "n_samples": 2000, "classes": classes}
    (feats / "meta.json").write_text(json.dumps({**meta, "shape": list(x.shape), "skipped": []}))
    index[index.fold <= 3].to_csv(splits / "train.csv", index=False)
    index[index.fold == 4].to_csv(splits / "val.csv", index=False)
    if n_folds >= 5:
        index[index.fold == 5].to_csv(splits / "test.csv", index=False)
    params = {"train": {"channels": [4, 8], "epochs": 3, "batch_size": 8, "lr": 0.01, **train}, "runtime": runtime}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return [
        "--params", str(root / "params.yaml"), "--features", str(feats), "--splits", str(splits),
        "--models", str(root / "models"), "--live", str(root / "metrics" / "train"),
    ]  # fmt: skip
