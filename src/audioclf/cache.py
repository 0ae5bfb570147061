"""Reading the feature cache: the memory-mapped array, its index and meta.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audioclf.errors import AudioclfError
from audioclf.fileio import read_json


@dataclass
class FeatureCache:
    x: np.ndarray  # (N, C, F, T), memory-mapped
    index: pd.DataFrame  # row, path, label, fold, group
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def labels(self) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return self.index["label"].map(lookup).to_numpy(dtype=np.int64)

    def rows_for(self, split: pd.DataFrame, name: str) -> np.ndarray:
        """Cache rows of a split's paths. Paths whose audio was skipped as undecodable are
        dropped (they are listed in meta.json); any other missing path means a stale cache."""
        lookup = dict(zip(self.index["path"], self.index["row"], strict=True))
        skipped = {Path(s["path"]).as_posix() for s in self.meta.get("skipped", [])}
        rows, missing = [], []
        for path in split["path"]:
            if path in lookup:
                rows.append(lookup[path])
            elif not any(s.endswith(path) for s in skipped):
                missing.append(path)
        if missing:
            raise AudioclfError(
                f"data/splits/{name}.csv: {len(missing)} path(s) not in the feature cache (e.g. "
                f"{missing[0]}); rerun the pipeline (dvc repro) so features and splits match"
            )
        unknown = set(split["label"]) - set(self.classes)
        if unknown:
            raise AudioclfError(f"data/splits/{name}.csv: labels {sorted(unknown)} not in the feature cache")
        return np.asarray(rows, dtype=np.int64)


def load_cache(features_dir: Path) -> FeatureCache:
    paths = [features_dir / n for n in ("features.npy", "index.csv", "meta.json")]
    for path in paths:
        if not path.is_file():
            raise AudioclfError(f"{path}: not found; run the features stage first (dvc repro features)")
    try:
        x = np.load(paths[0], mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise AudioclfError(
            f"{paths[0]}: unreadable feature cache ({exc}); rebuild it (dvc repro -f features)"
        ) from exc
    index = pd.read_csv(paths[1], dtype={"path": str, "label": str, "group": str})
    meta = read_json(paths[2])
    if x.ndim != 4 or x.shape[0] != len(index) or list(x.shape) != list(meta["shape"]):
        raise AudioclfError(
            f"{paths[0]}: shape {x.shape} disagrees with index.csv/meta.json; rebuild it (dvc repro -f features)"
        )
    return FeatureCache(x=x, index=index, meta=meta)


def read_split(splits_dir: Path, name: str) -> pd.DataFrame:
    path = splits_dir / f"{name}.csv"
    if not path.is_file():
        raise AudioclfError(f"{path}: not found; run the split stage first (dvc repro split)")
    return pd.read_csv(path, dtype={"path": str, "label": str, "group": str})
