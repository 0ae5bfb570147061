"""The download stage's library: list metadata, select rows, fetch only what is missing.

Resume works against `manifest.csv` (and the journal an interrupted run leaves): a file already
present with the recorded size and sha256 is kept, anything else is fetched again. Files from an
earlier, wider selection are removed so `data/raw/` always holds exactly the selected rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from audioclf.audio import AUDIO_SUFFIXES
from audioclf.config import DataConfig
from audioclf.errors import AudioclfError
from audioclf.fileio import METADATA_COLUMNS, REJECTED_CSV, TEMP_SUFFIX, sha256_file, write_csv
from audioclf.sources.base import Source, safe_relpath

JOURNAL = ".download-journal.csv"  # files completed by an unfinished run; the manifest replaces it
REJECTED = REJECTED_CSV  # rows whose file arrived but is not usable audio: path, reason
MAX_WORKERS = 32  # parallel fetches, whatever runtime.workers says: politeness to the servers


@dataclass(frozen=True)
class DownloadReport:
    selected: int
    fetched: int
    reused: int
    removed: int
    rejected: int = 0  # files not usable as audio, listed in rejected.csv (the features stage skips them)


def select_rows(meta: pd.DataFrame, cfg: DataConfig) -> pd.DataFrame:
    """Apply classes, folds, per-class cap and total cap, in that order, deterministically."""
    missing = [c for c in METADATA_COLUMNS if c not in meta.columns]
    if missing:
        raise AudioclfError(f"metadata: missing column(s) {missing}; needs {list(METADATA_COLUMNS)}")
    selected = meta
    if cfg.classes is not None:
        check_classes(cfg, tuple(sorted(meta["label"].astype(str).unique())))
        selected = selected[selected["label"].isin(cfg.classes)]
    if cfg.folds is not None:
        available_folds = sorted(int(f) for f in pd.to_numeric(meta["fold"], errors="coerce").dropna().unique())
        unknown_folds = [f for f in cfg.folds if f not in available_folds]
        if unknown_folds:
            raise AudioclfError(
                f"params: `data.folds` has {unknown_folds}, not in the {cfg.dataset} corpus; "
                f"valid folds: {available_folds}"
            )
        selected = selected[pd.to_numeric(selected["fold"], errors="coerce").isin(cfg.folds)]
    if cfg.max_per_class is not None or cfg.max_total is not None:
        ordered = cap_order(selected)
        if cfg.max_per_class is not None:
            ordered = ordered[ordered.groupby("label", sort=False).cumcount() < cfg.max_per_class]
        if cfg.max_total is not None:
            # round-robin over classes (by rank within class) instead of cutting the tail
            rank = ordered.groupby("label", sort=False).cumcount()
            ordered = ordered.loc[rank.sort_values(kind="stable").index[: cfg.max_total]]
        selected = selected.loc[sorted(ordered.index)]
    if selected.empty:
        raise AudioclfError("params: the data selection (data.classes / data.folds / caps) matches no rows; widen it")
    return selected.reset_index(drop=True)


def _stable_key(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()


def cap_order(meta: pd.DataFrame) -> pd.DataFrame:
    """`meta` reordered so that every prefix of each class is a fixed pseudo-random sample spread
    evenly over the folds: caps then keep every fold (and mix speakers/sources), and a larger cap
    keeps the rows of a smaller one. Depends only on the paths, not on a seed or the machine."""
    key = meta["path"].map(_stable_key)
    fold = meta["fold"].astype(str)
    shuffled = meta.assign(_key=key, _fold=fold).sort_values("_key", kind="stable")
    shuffled["_rank"] = shuffled.groupby(["label", "_fold"], sort=False).cumcount()
    ordered = shuffled.sort_values(["_rank", "_fold", "_key"], kind="stable")
    return ordered.drop(columns=["_key", "_fold", "_rank"])


def check_classes(cfg: DataConfig, known: tuple[str, ...]) -> None:
    """Fail on an unknown name in data.classes before any download (known = the corpus's classes)."""
    if cfg.classes is None or not known:
        return
    unknown = [c for c in cfg.classes if c not in known]
    if unknown:
        raise AudioclfError(
            f"params: `data.classes` has {unknown}, not in the {cfg.dataset} corpus; valid names: {', '.join(known)}"
        )


def check_inside(raw_dir: Path, rels: list[str]) -> None:
    """Refuse destinations that a symlink inside raw_dir would lead elsewhere (checked per folder)."""
    root = raw_dir.resolve()
    for folder in sorted({(raw_dir / rel).parent for rel in rels}):
        if not folder.resolve().is_relative_to(root):
            raise AudioclfError(f"{folder}: resolves outside {raw_dir} (a link inside it?); remove the link and rerun")


def _load_manifest(path: Path) -> dict[str, tuple[int, str]]:
    if not path.is_file():
        return {}
    try:
        frame = pd.read_csv(path, dtype={"path": str, "bytes": "int64", "sha256": str})
    except (ValueError, pd.errors.ParserError):
        return {}  # an unreadable manifest only costs a re-fetch
    return {r.path: (int(r.bytes), r.sha256) for r in frame.itertuples()}


def _load_journal(path: Path) -> dict[str, tuple[int, str]]:
    """Files completed by an interrupted run (path, bytes, sha256 per line); the last line may be cut."""
    if not path.is_file():
        return {}
    done: dict[str, tuple[int, str]] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1].isdigit() and len(parts[2]) == 64:
            done[parts[0]] = (int(parts[1]), parts[2])
    return done


def _is_intact(path: Path, expected: tuple[int, str] | None) -> bool:
    if expected is None or not path.is_file() or path.stat().st_size != expected[0]:
        return False
    return sha256_file(path) == expected[1]


def _selection(source: Source, raw_dir: Path) -> pd.DataFrame:
    """The selected metadata rows, with safe, distinct paths that stay inside `raw_dir`."""
    check_classes(source.cfg, source.known_classes())
    selected = select_rows(source.list_metadata(), source.cfg)
    selected["path"] = [safe_relpath(p) for p in selected["path"]]
    duplicated = selected["path"][selected["path"].duplicated()].tolist()
    if duplicated:
        raise AudioclfError(
            f"{source.location}: {len(duplicated)} row(s) name a file another row names too, e.g. {duplicated[0]!r}; "
            "each row needs its own file, remove the duplicate rows"
        )
    check_inside(raw_dir, selected["path"].tolist())
    return selected


def _fetch(
    source: Source, todo: list[dict], raw_dir: Path, workers: int, known: dict[str, tuple[int, str]], progress: bool
) -> dict[str, str]:
    """Fetch `todo`, journalling each completed file at once (size, sha256 also into `known`);
    returns path → reason for the files that arrived but are not usable audio."""
    rejected: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc="download", unit="file", disable=not progress)
    fetched_bytes = 0
    with open(raw_dir / JOURNAL, "a", encoding="utf-8") as journal:

        def reject(row: dict, reason: str) -> None:
            # not journalled: a rerun tries the file again (a server glitch heals, a bad file stays out)
            rejected[row["path"]] = reason
            bar.update(1)

        def done(row: dict, dest: Path) -> None:
            nonlocal fetched_bytes
            size = dest.stat().st_size
            known[row["path"]] = (size, sha256_file(dest))
            journal.write(f"{row['path']},{size},{known[row['path']][1]}\n")
            journal.flush()
            fetched_bytes += size
            bar.update(1)
            bar.set_postfix_str(_human_bytes(fetched_bytes), refresh=False)

        try:
            source.fetch_rows(todo, raw_dir, workers, done, reject)
        finally:
            bar.close()
    return rejected


def _write_outputs(raw_dir: Path, selected: pd.DataFrame, rejected: dict[str, str], known: dict) -> int:
    """manifest.csv, rejected.csv, metadata.csv; prunes unselected files. Returns how many went."""
    kept = selected["path"][~selected["path"].isin(rejected)]
    manifest = pd.DataFrame(
        {
            "path": kept,
            "bytes": [(raw_dir / p).stat().st_size for p in kept],
            "sha256": [known[p][1] for p in kept],
        }
    )
    removed = _prune(raw_dir, set(kept))
    # every selected row stays in metadata.csv (it is the corpus); the features stage skips and
    # reports the rejected ones, with the reason from rejected.csv
    if rejected:
        write_csv(raw_dir / REJECTED, pd.DataFrame({"path": list(rejected), "reason": list(rejected.values())}))
    else:
        (raw_dir / REJECTED).unlink(missing_ok=True)
    write_csv(raw_dir / "manifest.csv", manifest)
    write_csv(raw_dir / "metadata.csv", selected)
    (raw_dir / JOURNAL).unlink(missing_ok=True)
    return removed


def run_download(
    source: Source, raw_dir: Path, workers: int, progress: bool = True, max_workers: int = MAX_WORKERS
) -> DownloadReport:
    """Select rows from the source's metadata and fetch only those not already intact in `raw_dir`.

    Each completed file is appended to a journal at once, so a rerun after an interruption (an
    error, Ctrl-C, a killed job) fetches only what is missing; the manifest replaces the journal
    when the run completes. Files of rows no longer selected are removed."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    selected = _selection(source, raw_dir)
    known = {**_load_manifest(raw_dir / "manifest.csv"), **_load_journal(raw_dir / JOURNAL)}
    todo = [r for r in selected.to_dict("records") if not _is_intact(raw_dir / r["path"], known.get(r["path"]))]
    rejected = _fetch(source, todo, raw_dir, min(max(1, workers), max_workers), known, progress) if todo else {}
    source.close()
    if rejected and len(rejected) == len(selected):
        path, reason = next(iter(rejected.items()))
        raise AudioclfError(
            f"{source.location}: none of the {len(selected)} selected files is usable audio (e.g. {path}: {reason}); "
            "check that data.source points at the corpus files"
        )
    removed = _write_outputs(raw_dir, selected, rejected, known)
    return DownloadReport(
        selected=len(selected), fetched=len(todo) - len(rejected), reused=len(selected) - len(todo), removed=removed,
        rejected=len(rejected),
    )  # fmt: skip


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _prune(raw_dir: Path, keep: set[str]) -> int:
    """Delete audio (and stale temp files) under raw_dir that the current selection does not use."""
    removed = 0
    for path in raw_dir.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(raw_dir).as_posix()
        stale_audio = path.suffix.lower() in AUDIO_SUFFIXES and rel not in keep
        if stale_audio or path.name.endswith(TEMP_SUFFIX):
            path.unlink()
            removed += 1
    return removed
