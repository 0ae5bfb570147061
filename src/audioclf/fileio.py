"""Atomic writes: every output goes to a temp file in its folder and is renamed when complete, so
an interrupted stage never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from audioclf.errors import AudioclfError

TEMP_SUFFIX = ".part"
# data/raw/rejected.csv: files the download stage fetched but did not keep, as not usable audio
# (path, reason); the features stage skips those rows with that reason
REJECTED_CSV = "rejected.csv"


# errno values that mean "the disk (or quota) is full": the user frees space and reruns
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def final_name(path: str | Path) -> Path:
    """The output a temp file stands for: `.features.npy.k3j9x_ab.part` → `features.npy`."""
    path = Path(path)
    while is_temp(path) and path.name.endswith(TEMP_SUFFIX):
        path = path.with_name(path.name[1:].rsplit(".", 2)[0])
    return path


def disk_full_error(exc: OSError, path: str | Path) -> AudioclfError:
    """One line for a write that ran out of space, naming the file and the fix."""
    path = final_name(path)
    reason = "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc)).lower()
    return AudioclfError(
        f"{path}: {reason} while writing it; free space in {path.parent} and rerun "
        "(the previous output, if any, is unchanged)"
    )


def _temp_next_to(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would make outputs private to this user
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; rename it onto `path` only if the block succeeds. A full
    disk inside the block becomes an AudioclfError naming `path` (the temp file is removed)."""
    path = Path(path)
    tmp_path = _temp_next_to(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise disk_full_error(exc, path) from exc
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """Temp paths for outputs that belong together (a cache and its index): all are renamed into
    place only if the block succeeds, else none is, so a reader never pairs a new file with an old
    one. The last path is the commit marker: it is removed first and renamed last, so between the
    renames (microseconds; only a SIGKILL lands there) the set reads as missing, not as mixed."""
    finals = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for final in finals:
            temps.append(_temp_next_to(final))
        yield temps
        finals[-1].unlink(missing_ok=True)
        for tmp, final in zip(temps, finals, strict=True):
            os.replace(tmp, final)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            # a failed write() names no file: then name the set
            by_temp = dict(zip(temps, finals, strict=False))
            failed = by_temp.get(Path(exc.filename)) if exc.filename else None
            names = ", ".join(f.name for f in finals)
            raise disk_full_error(exc, failed or finals[0].parent / f"{{{names}}}") from exc
        raise
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def is_temp(path: Path) -> bool:
    """A temp file of `atomic_path` (`.<name>.<random>.part`, or something derived from one)."""
    return path.name.startswith(".") and (path.name.endswith(TEMP_SUFFIX) or f"{TEMP_SUFFIX}." in path.name)


def remove_stale_temps(*folders: str | Path) -> int:
    """Delete the temp files a killed run left in `folders` (not recursive). A stage calls this
    before writing, so a rerun after SIGKILL leaves no half-written file behind."""
    removed = 0
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if is_temp(path) and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def preallocate(path: str | Path) -> None:
    """Reserve the disk blocks of a file created at its full size (a memory-mapped array): on a
    full disk this raises ENOSPC now, instead of SIGBUS killing the process mid-write."""
    if not hasattr(os, "posix_fallocate"):  # pragma: no cover - not on macOS / Windows
        return
    with open(path, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        try:
            os.posix_fallocate(fh.fileno(), 0, size)
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise
            # EOPNOTSUPP / EINVAL: a filesystem without allocation; writing will tell


# How every metadata-like CSV (metadata.csv, splits, index.csv) is read: labels and paths stay
# literal strings (pandas would read a class named "NA", "null" or "None" as missing), while an
# empty fold or group is missing (NaN) as before.
METADATA_CSV: dict[str, Any] = {
    "dtype": {"path": str, "label": str, "group": str},
    "keep_default_na": False,
    "na_values": {"fold": [""], "group": [""]},
}


# The columns every metadata table has (data/raw/metadata.csv, the splits, the cache index);
# sources add their own after these.
METADATA_COLUMNS = ("path", "label", "fold", "group")


def read_metadata_csv(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, **METADATA_CSV)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
