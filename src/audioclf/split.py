"""Train/val/test assignment: the corpus's own folds, a seeded stratified split, or a grouped
split where no group (speaker, source recording) appears in two splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from audioclf.config import SplitConfig
from audioclf.errors import AudioclfError

SPLITS = ("train", "val", "test")


def resolve_folds(
    test_fold: int | str, val_fold: int | str, available: list[int], preset: tuple[int | None, int | None]
) -> tuple[int, int]:
    """`auto` → the corpus preset's fold (`preset` = its test, val folds); where the preset names
    none or it is not selected (your CSV's folds, a `data.folds` subset): the last selected fold for
    test and the last one before it for validation."""
    if not available and "auto" in (test_fold, val_fold):
        raise AudioclfError(
            "params: `split.test_fold` is auto, but the selected rows have no folds; "
            "use split.strategy: stratified or group"
        )
    test = test_fold if test_fold != "auto" else (preset[0] if preset[0] in available else available[-1])
    val = val_fold if val_fold != "auto" else (preset[1] if preset[1] in available and preset[1] != test else None)
    if val is None:  # the preset's val fold is not selected: the last fold before the test fold
        val = next((f for f in reversed(available) if f < test), available[-1])
    if test == val:
        raise AudioclfError(f"params: `split.val_fold` resolves to {val}, the test fold too; set it explicitly")
    return int(test), int(val)


def split_by_folds(
    meta: pd.DataFrame, test_fold: int | str, val_fold: int | str, preset: tuple[int | None, int | None] = (None, None)
) -> dict[str, pd.DataFrame]:
    folds = pd.to_numeric(meta["fold"], errors="coerce")
    available = sorted(int(f) for f in folds.dropna().unique())
    test_fold, val_fold = resolve_folds(test_fold, val_fold, available, preset)
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


def make_splits(
    meta: pd.DataFrame, cfg: SplitConfig, preset: tuple[int | None, int | None] = (None, None)
) -> dict[str, pd.DataFrame]:
    """`preset`: the corpus's (test, val) folds that `auto` stands for (sources' Preset)."""
    if cfg.strategy == "folds":
        parts = split_by_folds(meta, cfg.test_fold, cfg.val_fold, preset)
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
