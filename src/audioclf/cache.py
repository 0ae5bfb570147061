"""Reading the feature cache: the memory-mapped array, its index and meta.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audioclf.errors import AudioclfError, brief
from audioclf.fileio import read_json, read_metadata_csv, sha256_file


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
            f"{paths[0]}: unreadable feature cache ({brief(exc)}); rebuild it (dvc repro -f features)"
        ) from exc
    try:
        index = read_metadata_csv(paths[1])
        meta = read_json(paths[2])
    except (ValueError, OSError) as exc:  # a damaged CSV or JSON (JSONDecodeError, ParserError, ...)
        raise AudioclfError(
            f"{features_dir}: unreadable index.csv or meta.json ({brief(exc)}); rebuild it (dvc repro -f features)"
        ) from exc
    if not isinstance(meta, dict) or not {"shape", "classes"} <= set(meta) or "path" not in index.columns:
        raise AudioclfError(f"{features_dir}: index.csv or meta.json is incomplete; rebuild it (dvc repro -f features)")
    # written by the features stage: a cache edited or damaged since then must not reach the model
    if meta.get("features_sha256") and sha256_file(paths[0]) != meta["features_sha256"]:
        raise AudioclfError(
            f"{paths[0]}: its checksum differs from meta.json's (damaged or edited); rebuild it (dvc repro -f features)"
        )
    if x.ndim != 4 or x.shape[0] != len(index) or list(x.shape) != list(meta["shape"]):
        raise AudioclfError(
            f"{paths[0]}: shape {x.shape} disagrees with index.csv/meta.json; rebuild it (dvc repro -f features)"
        )
    return FeatureCache(x=x, index=index, meta=meta)


def read_split(splits_dir: Path, name: str) -> pd.DataFrame:
    path = splits_dir / f"{name}.csv"
    if not path.is_file():
        raise AudioclfError(f"{path}: not found; run the split stage first (dvc repro split)")
    try:
        frame = read_metadata_csv(path)
    except ValueError as exc:  # ParserError, EmptyDataError, UnicodeDecodeError
        raise AudioclfError(f"{path}: unreadable ({brief(exc)}); rerun the split stage (dvc repro -f split)") from exc
    if not {"path", "label"} <= set(frame.columns):
        raise AudioclfError(f"{path}: lacks the path/label columns; rerun the split stage (dvc repro -f split)")
    return frame
