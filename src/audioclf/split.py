"""Train/val/test assignment: the corpus's own folds, a seeded stratified split, or a grouped
split where no group (speaker, source recording) appears in two splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from audioclf.config import SplitConfig
from audioclf.errors import AudioclfError

SPLITS = ("train", "val", "test")


def split_by_folds(meta: pd.DataFrame, test_fold: int, val_fold: int) -> dict[str, pd.DataFrame]:
    folds = pd.to_numeric(meta["fold"], errors="coerce")
    available = sorted(int(f) for f in folds.dropna().unique())
    for key, fold in (("split.test_fold", test_fold), ("split.val_fold", val_fold)):
        if fold not in available:
            raise AudioclfError(
                f"params: `{key}` is {fold}, but the selected rows have folds {available}; "
                "pick one of those or use split.strategy: stratified"
            )
    return {
        "train": meta[(folds != test_fold) & (folds != val_fold)],
        "val": meta[folds == val_fold],
        "test": meta[folds == test_fold],
    }


def split_stratified(meta: pd.DataFrame, val_frac: float, test_frac: float, seed: int) -> dict[str, pd.DataFrame]:
    counts = meta["label"].value_counts()
    if counts.min() < 3:
        raise AudioclfError(
            f"split: class {counts.idxmin()!r} has {counts.min()} clip(s); a stratified split needs "
            "at least 3 per class (train, val, test); add clips or drop the class in data.classes"
        )
    rest, test = train_test_split(meta, test_size=test_frac, stratify=meta["label"], random_state=seed)
    val_share = val_frac / (1.0 - test_frac)
    train, val = train_test_split(rest, test_size=val_share, stratify=rest["label"], random_state=seed)
    return {"train": train, "val": val, "test": test}


def split_grouped(meta: pd.DataFrame, val_frac: float, test_frac: float, seed: int) -> dict[str, pd.DataFrame]:
    """Stratified by label as far as groups allow; no group crosses splits."""
    groups = meta["group"].fillna("").astype(str)
    if (groups == "").any():
        raise AudioclfError(
            "split: split.strategy is group but some rows have no `group` (speaker/source); "
            "set data.group_regex or use split.strategy: stratified"
        )
    n_groups = groups.nunique()
    if n_groups < 3:
        raise AudioclfError(f"split: only {n_groups} group(s); a grouped split needs at least 3")

    def take(frame: pd.DataFrame, frac: float, salt: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        n_splits = max(2, min(round(1 / frac), frame["group"].nunique()))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + salt)
        keep_idx, held_idx = next(splitter.split(frame, frame["label"], frame["group"].astype(str)))
        return frame.iloc[keep_idx], frame.iloc[held_idx]

    rest, test = take(meta, test_frac, 0)
    train, val = take(rest, val_frac / (1.0 - test_frac), 1)
    return {"train": train, "val": val, "test": test}


def make_splits(meta: pd.DataFrame, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    if cfg.strategy == "folds":
        parts = split_by_folds(meta, cfg.test_fold, cfg.val_fold)
    elif cfg.strategy == "stratified":
        parts = split_stratified(meta, cfg.val_frac, cfg.test_frac, cfg.seed)
    else:
        parts = split_grouped(meta, cfg.val_frac, cfg.test_frac, cfg.seed)
    parts = {name: frame.sort_values("path").reset_index(drop=True) for name, frame in parts.items()}
    check_disjoint(parts)
    if cfg.strategy == "group":
        leaked = shared_groups(parts)
        if leaked:
            raise RuntimeError(f"split bug: group(s) {sorted(leaked)[:3]} are in more than one split")
    for name, frame in parts.items():
        if frame.empty:
            raise AudioclfError(f"split: the {name} split is empty; select more rows or change split params")
    if len(parts["train"]) < 2:  # BatchNorm cannot train on a single clip
        raise AudioclfError("split: the train split has 1 clip; training needs at least 2, select more rows")
    return parts


def check_disjoint(parts: dict[str, pd.DataFrame]) -> None:
    """Raise if any path is in two splits (a leak that would inflate every test metric)."""
    seen: dict[str, str] = {}
    for name, frame in parts.items():
        for path in frame["path"]:
            if path in seen:
                raise RuntimeError(f"split bug: {path} is in both {seen[path]} and {name}")
            seen[path] = name


def shared_groups(parts: dict[str, pd.DataFrame]) -> set[str]:
    """Groups (speakers, source recordings) present in more than one split. Empty for the group
    strategy; for others it measures the leak (e.g. FSDD's official split shares every speaker)."""
    seen: dict[str, str] = {}
    shared: set[str] = set()
    for name, frame in parts.items():
        for group in frame["group"].dropna().astype(str).unique():
            if group and seen.setdefault(group, name) != name:
                shared.add(group)
    return shared


def class_balance(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Counts per class (rows) and split (columns), for the stage's summary."""
    return pd.DataFrame({n: f["label"].value_counts() for n, f in parts.items()}).fillna(0).astype(np.int64)
