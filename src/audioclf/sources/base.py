"""The interface every dataset source implements."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from audioclf.config import DataConfig
from audioclf.errors import AudioclfError
from audioclf.fetch import Fetcher, UnusableAudio

Done = Callable[[dict, Path], None]
Reject = Callable[[dict, str], None]  # (row, reason): the row's file arrived but is not usable audio


@dataclass(frozen=True)
class Preset:
    """What `auto` means for `data.sample_rate` / `data.duration_s` on this corpus, and the
    corpus's class names (empty where the user's data defines them)."""

    sample_rate: int
    duration_s: float
    classes: tuple[str, ...] = ()


def safe_relpath(path: str) -> str:
    """Normalise a metadata path and refuse one that would leave data/raw (absolute, `..`)."""
    if not isinstance(path, str) or not path.strip():
        raise AudioclfError(f"metadata: empty path {path!r}; every row needs a file path")
    if any(ord(c) < 32 for c in path):
        raise AudioclfError(f"metadata: path {path!r} contains a control character; fix the row")
    posix = path.replace("\\", "/")
    norm = posixpath.normpath(posix)
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":") or norm == ".." or norm.startswith("../"):
        raise AudioclfError(
            f"metadata: path {path!r} escapes the data folder (absolute or `..`); paths must be relative, fix the row"
        )
    if norm == "." or posix.endswith("/"):
        raise AudioclfError(f"metadata: path {path!r} names a folder, not a file; fix the row")
    return norm


def default_cache_dir() -> Path:
    """Where downloaded archives live between runs (outside data/raw, so DVC does not cache them twice)."""
    return Path.home() / ".cache" / "audioclf"


class Source:
    name: ClassVar[str]
    preset: ClassVar[Preset]
    default_source: ClassVar[str | None] = None  # upstream location; `data.source` overrides it
    versions: ClassVar[tuple[str, ...]] = ()  # accepted `data.version` values; () = the key must be null

    def __init__(self, cfg: DataConfig, cache_dir: Path | None = None, progress: bool = True) -> None:
        self.cfg = cfg
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.progress = progress
        self._fetcher: Fetcher | None = None
        self.check_version()

    @property
    def fetcher(self) -> Fetcher:
        """One shared session per source, created on first use."""
        if self._fetcher is None:
            self._fetcher = Fetcher(timeout_s=self.cfg.timeout_s, retries=self.cfg.retries, progress=self.progress)
        return self._fetcher

    @property
    def location(self) -> str:
        """`data.source`, else the corpus's upstream location."""
        location = self.cfg.source or self.default_source
        if location is None:
            raise AudioclfError(
                f"params: `data.source` is null but data.dataset {self.name} has no default location; "
                "set data.source to a path or URL"
            )
        return location

    def check_version(self) -> None:
        version = self.cfg.version
        if not self.versions and version is not None:
            raise AudioclfError(
                f"params: `data.version` is {version!r} but {self.name} has a single version; set data.version: null"
            )
        if self.versions and version is not None and version not in self.versions:
            raise AudioclfError(
                f"params: `data.version` {version!r} does not exist for {self.name}; "
                f"choose {' or '.join(self.versions)}"
            )

    def known_classes(self) -> tuple[str, ...]:
        """The corpus's class names before any metadata is read (empty when the data defines them);
        lets a typo in data.classes fail before a multi-GB download."""
        return self.preset.classes

    def list_metadata(self) -> pd.DataFrame:
        """Every row the corpus offers: path (relative to data/raw), label, fold, group, ..."""
        raise NotImplementedError

    def fetch_one(self, row: dict, dest: Path) -> None:
        """Materialise one row's audio at `dest`, atomically (temp file, then rename)."""
        raise NotImplementedError

    def fetch_rows(
        self, rows: list[dict], raw_dir: Path, workers: int, done: Done, reject: Reject | None = None
    ) -> None:
        """Fetch every row, calling `done(row, dest)` in the caller's thread as each completes.

        Default: `fetch_one` in a bounded thread pool. A file that arrives but is not usable audio
        (`UnusableAudio`) goes to `reject(row, reason)` when given and the others go on. On any
        other failure the queued fetches are cancelled, the running ones finish (their files stay,
        complete), and the error propagates. Archive sources override this with a single pass
        through the archive."""

        def settle(future: Future, row: dict) -> BaseException | None:
            error = future.exception()
            if error is None:
                done(row, raw_dir / row["path"])
            elif isinstance(error, UnusableAudio) and reject is not None:
                reject(row, error.reason)
            else:
                return error
            return None

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            pending: dict[Future, dict] = {pool.submit(self.fetch_one, row, raw_dir / row["path"]): row for row in rows}
            error: BaseException | None = None
            try:
                for future in as_completed(pending):
                    error = settle(future, pending.pop(future))
                    if error is not None:
                        break
            finally:
                # on an error or Ctrl-C: drop queued fetches, let running ones finish (complete files)
                pool.shutdown(wait=True, cancel_futures=True)
            if error is not None:
                for future, row in pending.items():
                    if future.done() and not future.cancelled():
                        settle(future, row)  # record what finished; the first error is the one raised
                raise error

    def close(self) -> None:
        """Release sessions or temp files (called once after all fetches)."""
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None
