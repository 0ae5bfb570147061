"""What every stage shares: argument parsing with the default DVC paths, the params, and reading
the download stage's metadata."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from audioclf.config import Params, load_params
from audioclf.errors import ArgumentParser, AudioclfError, brief
from audioclf.fileio import METADATA_COLUMNS, read_metadata_csv


def parser(stage: str, description: str) -> argparse.ArgumentParser:
    p = ArgumentParser(prog=f"audioclf stage {stage}", description=description)
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    return p


def params(args: argparse.Namespace) -> Params:
    return load_params(args.params)


def say(stage: str, message: str) -> None:
    """One summary line per stage, on stdout (DVC shows it)."""
    print(f"[{stage}] {message}", flush=True)


def read_metadata(path: Path) -> pd.DataFrame:
    """data/raw/metadata.csv, checked: readable, the columns the stages need, no empty path or
    label, no path twice. It is written by the download stage, so a problem here means it was
    edited or damaged: the fix is to rerun that stage."""
    rerun = "rerun the download stage (dvc repro -f download)"
    if not path.is_file():
        raise AudioclfError(f"{path}: not found; run the download stage first (dvc repro download)")
    try:
        meta = read_metadata_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:  # EmptyDataError and UnicodeDecodeError too
        raise AudioclfError(f"{path}: not a readable CSV ({brief(exc)}); {rerun}") from None
    missing = [c for c in METADATA_COLUMNS if c not in meta.columns]
    if missing:
        raise AudioclfError(f"{path}: missing column(s) {missing} (has {list(meta.columns)}); {rerun}")
    if meta.empty:
        raise AudioclfError(f"{path}: has no rows; widen the data selection (data.classes, data.folds) and {rerun}")
    for column in ("path", "label"):
        empty = meta[column].astype(str).str.strip() == ""
        if empty.any():
            line = int(empty.to_numpy().argmax()) + 2  # 1-based, after the header
            raise AudioclfError(f"{path}: line {line} has an empty {column}; {rerun}")
    duplicated = meta["path"][meta["path"].duplicated()]
    if not duplicated.empty:
        raise AudioclfError(f"{path}: the file {duplicated.iloc[0]!r} is listed twice; {rerun}")
    return meta
