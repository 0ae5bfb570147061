"""The interface every dataset source implements."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd

from audioclf.config import DataConfig

METADATA_COLUMNS = ("path", "label", "fold", "group")


@dataclass(frozen=True)
class Preset:
    """What `auto` means for `data.sample_rate` / `data.duration_s` on this corpus."""

    sample_rate: int
    duration_s: float


class Source:
    name: ClassVar[str]
    preset: ClassVar[Preset]

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    def list_metadata(self) -> pd.DataFrame:
        """Every row the corpus offers: path (relative to data/raw), label, fold, group, ..."""
        raise NotImplementedError

    def fetch_one(self, row: dict, dest: Path) -> None:
        """Materialise one row's audio at `dest`, atomically (temp file, then rename)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release sessions or temp files (called once after all fetches)."""
