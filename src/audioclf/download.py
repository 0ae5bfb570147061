"""The download stage's library: list metadata, select rows, fetch only what is missing.

Resume works against `manifest.csv`: a file already present with the recorded size and sha256 is
kept, anything else is fetched again. Files from an earlier, wider selection are removed so
`data/raw/` always holds exactly the selected rows.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from audioclf.config import DataConfig
from audioclf.errors import AudioclfError
from audioclf.fileio import sha256_file, write_csv
from audioclf.sources.base import METADATA_COLUMNS, Source

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


@dataclass(frozen=True)
class DownloadReport:
    selected: int
    fetched: int
    reused: int
    removed: int


def safe_relpath(path: str) -> str:
    """Normalise a metadata path and refuse one that would leave data/raw (absolute, `..`)."""
    if not isinstance(path, str) or not path.strip():
        raise AudioclfError(f"metadata: empty path {path!r}; every row needs a file path")
    posix = path.replace("\\", "/")
    norm = posixpath.normpath(posix)
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or norm.startswith(".."):
        raise AudioclfError(f"metadata: path {path!r} escapes the data folder; paths must be relative")
    return norm


def select_rows(meta: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """Apply classes, folds, per-class cap and total cap, in that order, deterministically."""
    missing = [c for c in METADATA_COLUMNS if c not in meta.columns]
    if missing:
        raise AudioclfError(f"metadata: missing column(s) {missing}; needs {list(METADATA_COLUMNS)}")
    selected = meta
    if cfg.classes is not None:
        available = sorted(meta["label"].astype(str).unique())
        unknown = [c for c in cfg.classes if c not in available]
        if unknown:
            raise AudioclfError(
                f"params: `data.classes` has {unknown}, not in the {cfg.dataset} corpus; "
                f"valid names: {', '.join(available)}"
            )
        selected = selected[selected["label"].isin(cfg.classes)]
    if cfg.folds is not None:
        available_folds = sorted(pd.to_numeric(meta["fold"], errors="coerce").dropna().astype(int).unique())
        unknown_folds = [f for f in cfg.folds if f not in available_folds]
        if unknown_folds:
            raise AudioclfError(
                f"params: `data.folds` has {unknown_folds}, not in the {cfg.dataset} corpus; "
                f"valid folds: {available_folds}"
            )
        selected = selected[pd.to_numeric(selected["fold"], errors="coerce").isin(cfg.folds)]
    if cfg.max_per_class is not None:
        # the first rows of each class in metadata order: stable across runs and machines
        selected = selected.groupby("label", sort=False, group_keys=False).head(cfg.max_per_class)
    if cfg.max_total is not None and len(selected) > cfg.max_total:
        # spread the cap over classes (round-robin by rank within class) instead of cutting the tail
        rank = selected.groupby("label", sort=False).cumcount()
        order = rank.sort_values(kind="stable").index
        selected = selected.loc[order[: cfg.max_total]].sort_index()
    if selected.empty:
        raise AudioclfError("params: the data selection (data.classes / data.folds / caps) matches no rows; widen it")
    return selected.reset_index(drop=True)


def _load_manifest(path: Path) -> dict[str, tuple[int, str]]:
    if not path.is_file():
        return {}
    try:
        frame = pd.read_csv(path, dtype={"path": str, "bytes": "int64", "sha256": str})
    except (ValueError, pd.errors.ParserError):
        return {}  # an unreadable manifest only costs a re-fetch
    return {r.path: (int(r.bytes), r.sha256) for r in frame.itertuples()}


def _is_intact(path: Path, expected: tuple[int, str] | None) -> bool:
    if expected is None or not path.is_file() or path.stat().st_size != expected[0]:
        return False
    return sha256_file(path) == expected[1]


def run_download(source: Source, raw_dir: Path, workers: int) -> DownloadReport:
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    meta = source.list_metadata()
    selected = select_rows(meta, source.cfg)
    selected["path"] = [safe_relpath(p) for p in selected["path"]]
    duplicated = selected["path"][selected["path"].duplicated()].tolist()
    if duplicated:
        raise AudioclfError(f"metadata: duplicate paths {duplicated[:3]}; each row needs its own file")

    manifest_path = raw_dir / "manifest.csv"
    old = _load_manifest(manifest_path)
    todo = [r for r in selected.to_dict("records") if not _is_intact(raw_dir / r["path"], old.get(r["path"]))]
    reused = len(selected) - len(todo)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(source.fetch_one, row, raw_dir / row["path"]): row for row in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="download", unit="file"):
            future.result()  # re-raises the first failure; finished files stay for the rerun
    source.close()

    manifest = pd.DataFrame(
        {
            "path": selected["path"],
            "bytes": [(raw_dir / p).stat().st_size for p in selected["path"]],
            "sha256": [
                old[p][1] if p in old and _is_intact(raw_dir / p, old[p]) else sha256_file(raw_dir / p)
                for p in selected["path"]
            ],
        }
    )
    removed = _prune(raw_dir, set(selected["path"]))
    write_csv(raw_dir / "metadata.csv", selected)
    write_csv(manifest_path, manifest)
    return DownloadReport(selected=len(selected), fetched=len(todo), reused=reused, removed=removed)


def _prune(raw_dir: Path, keep: set[str]) -> int:
    """Delete audio (and stale temp files) under raw_dir that the current selection does not use."""
    removed = 0
    for path in raw_dir.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(raw_dir).as_posix()
        stale_audio = path.suffix.lower() in AUDIO_SUFFIXES and rel not in keep
        if stale_audio or path.name.endswith(".part"):
            path.unlink()
            removed += 1
    return removed
