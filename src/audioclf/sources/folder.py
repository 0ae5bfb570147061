"""Your own recordings in a folder: one sub-folder per class (e.g. one per language for language ID).

`data.source` is a local path or a `file://` URL (HTTP has no directory listing; put URLs in a CSV
and use `data.dataset: csv`). Every audio file under `<class>/` (any depth) is a row; other files
are not audio and are left out. `data.group_regex` on the file name gives the group (speaker,
session), which `split.strategy: group` keeps within one split. There are no folds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from audioclf.audio import AUDIO_SUFFIXES
from audioclf.errors import AudioclfError
from audioclf.fetch import check_location, is_remote, local_path
from audioclf.sources.base import Preset, Source


def is_audio_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES and not path.name.startswith(".")


def group_of(name: str, pattern: re.Pattern[str]) -> str | None:
    """The regex's first capture group, or the whole match when it has none; None without a match."""
    match = pattern.search(name)
    if match is None:
        return None
    return match.group(1) if pattern.groups else match.group(0)


class FolderSource(Source):
    name = "folder"
    # 16 kHz: speech and most sound events; 5 s: long enough for a language-ID or event clip
    preset = Preset(sample_rate=16_000, duration_s=5.0)

    @property
    def root(self) -> Path:
        location = self.location
        check_location(location)
        if is_remote(location):
            raise AudioclfError(
                f"params: `data.source` {location}: data.dataset folder needs a local path or file:// URL "
                "(HTTP has no listing); for files behind URLs use data.dataset: csv"
            )
        root = local_path(location)
        if not root.is_dir():
            raise AudioclfError(
                f"params: `data.source` {location}: not a folder; give the folder holding one sub-folder per class"
            )
        return root

    def list_metadata(self) -> pd.DataFrame:
        root = self.root
        pattern = re.compile(self.cfg.group_regex) if self.cfg.group_regex else None
        rows = []
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = sorted(p for p in class_dir.rglob("*") if is_audio_file(p))
            for path in files:
                rel = path.relative_to(class_dir).as_posix()
                group = ""
                if pattern is not None:
                    found = group_of(path.name, pattern)
                    if found is None:
                        raise AudioclfError(
                            f"{path}: data.group_regex {self.cfg.group_regex!r} does not match the file name; "
                            "fix the regex or rename the file"
                        )
                    group = found
                rows.append(
                    {
                        "path": f"audio/{class_dir.name}/{rel}",
                        "label": class_dir.name,
                        "fold": None,
                        "group": group,
                        "file": rel,
                    }
                )
        if not rows:
            raise AudioclfError(
                f"{root}: no audio files in class sub-folders ({', '.join(sorted(AUDIO_SUFFIXES))}); "
                "expected <data.source>/<class>/<file>"
            )
        return pd.DataFrame(rows)

    def fetch_one(self, row: dict, dest: Path) -> None:
        self.fetcher.fetch_file(str(self.root / row["label"] / row["file"]), dest)
