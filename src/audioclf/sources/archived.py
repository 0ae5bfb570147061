"""Sources shipped as one archive (UrbanSound8K, Speech Commands).

`data.source` may be the archive's URL, a folder URL holding it, a local archive file (used in
place), or an already-extracted tree. A remote archive is downloaded once into the cache folder
(resumable with HTTP Range), scanned once (the index is cached), and only the selected members are
extracted. An extracted tree is copied file by file.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import pandas as pd

from audioclf.archive import ArchiveIndex, UnsafeArchive, cached_scan, extract_members, matches
from audioclf.errors import AudioclfError
from audioclf.fetch import check_audio, check_location, is_remote, join, local_path
from audioclf.sources.base import Done, Reject, Source

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")


@dataclass(frozen=True)
class Layout:
    kind: Literal["archive", "tree"]
    path: Path  # the archive file, or the corpus root folder of a tree
    prefix: str = ""  # archive only: member-name prefix of the corpus root ("UrbanSound8K/")


class ArchiveSource(Source):
    marker: ClassVar[str]  # a file at the corpus root, found in archives and trees alike
    capture: ClassVar[tuple[str, ...]] = ()  # small text members (relative to the root) the metadata reads

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._layout: Layout | None = None
        self._files: list[str] | None = None
        self._texts: dict[str, str] = {}

    # -- what a corpus defines ---------------------------------------------------------------

    def archive_name(self) -> str:
        raise NotImplementedError

    def build_metadata(self, files: list[str], read_text: Callable[[str], str]) -> pd.DataFrame:
        """Rows from the corpus root's file list (relative names) and its text files."""
        raise NotImplementedError

    def member(self, row: dict) -> str:
        """The row's file, relative to the corpus root."""
        raise NotImplementedError

    # -- layout --------------------------------------------------------------------------------

    def layout(self) -> Layout:
        if self._layout is None:
            self._layout = self._resolve()
        return self._layout

    def _resolve(self) -> Layout:
        location = self.location
        check_location(location)
        if is_remote(location):
            is_archive = urllib.parse.urlsplit(location).path.lower().endswith(ARCHIVE_SUFFIXES)
            url = location if is_archive else join(location, self.archive_name())
            # keyed by URL: a different mirror (or a partial one) never reuses another's download
            tag = hashlib.sha256(url.encode()).hexdigest()[:10]
            dest = self.cache_dir / "archives" / f"{tag}-{self.archive_name()}"
            # the validating scan of the finished .part is cached under the final name's index
            path = self.fetcher.fetch_resumable(url, dest, validate=lambda part: self._scan(part, dest))
            try:
                return self._archive_layout(path)
            except UnsafeArchive:  # refused on a rescan (a lower cap): our download goes too
                path.unlink(missing_ok=True)
                raise
        path = local_path(location)
        if path.is_file():
            return self._archive_layout(path)
        if path.is_dir():
            for root in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
                if (root / self.marker).is_file():
                    return Layout("tree", root)
            if (path / self.archive_name()).is_file():
                return self._archive_layout(path / self.archive_name())
            raise AudioclfError(
                f"params: `data.source` {location}: neither an extracted {self.name} tree (no {self.marker} in it "
                f"or one level down) nor a folder holding {self.archive_name()}; point it at one of those"
            )
        raise AudioclfError(f"params: `data.source` {location}: not found; give an existing path or a URL")

    def _scan(self, archive: Path, final: Path | None = None) -> ArchiveIndex:
        final = final or archive
        tag = hashlib.sha256(str(final.resolve()).encode()).hexdigest()[:10]
        index_path = self.cache_dir / "index" / f"{tag}-{final.name}.json"
        return cached_scan(archive, index_path, (self.marker, *self.capture), self.limits)

    def _archive_layout(self, archive: Path) -> Layout:
        index = self._scan(archive)
        roots = [m for m in index.members if matches(m, (self.marker,))]
        if not roots:
            raise AudioclfError(
                f"{archive}: no {self.marker} inside; is data.source the {self.name} archive ({self.archive_name()})?"
            )
        prefix = roots[0][: -len(self.marker)]
        self._files = [m[len(prefix) :] for m in index.members if m.startswith(prefix)]
        self._texts = {name[len(prefix) :]: text for name, text in index.texts.items() if name.startswith(prefix)}
        return Layout("archive", archive, prefix)

    # -- Source API ------------------------------------------------------------------------------

    def list_metadata(self) -> pd.DataFrame:
        layout = self.layout()
        if layout.kind == "tree":
            files = sorted(p.relative_to(layout.path).as_posix() for p in layout.path.rglob("*") if p.is_file())
            texts = {
                rel: (layout.path / rel).read_text(encoding="utf-8-sig", errors="replace")
                for rel in self.capture
                if rel in files
            }
        else:
            files, texts = self._files or [], self._texts

        def read_text(rel: str) -> str:
            if rel not in texts:
                raise AudioclfError(f"{layout.path}: {rel} is missing; is data.source really {self.name}?")
            return texts[rel]

        return self.build_metadata(files, read_text)

    def fetch_one(self, row: dict, dest: Path) -> None:
        layout = self.layout()
        if layout.kind != "tree":  # pragma: no cover - archives go through fetch_rows
            raise RuntimeError("fetch_one on an archive layout; use fetch_rows")
        self.fetcher.fetch_file(str(layout.path / self.member(row)), dest)

    def fetch_rows(
        self, rows: list[dict], raw_dir: Path, workers: int, done: Done, reject: Reject | None = None
    ) -> None:
        layout = self.layout()
        if layout.kind == "tree":
            super().fetch_rows(rows, raw_dir, workers, done, reject)
            return
        by_member = {layout.prefix + self.member(row): row for row in rows}
        extract_members(
            layout.path,
            {name: raw_dir / row["path"] for name, row in by_member.items()},
            check_audio,
            lambda name, dest: done(by_member[name], dest),
            None if reject is None else lambda name, reason: reject(by_member[name], reason),
            self.limits,
        )
