"""UrbanSound8K (Salamon et al. 2014): 8732 urban sound excerpts (≤ 4 s), 10 classes, 10 folds.

One ~6 GB archive; metadata is `UrbanSound8K/metadata/UrbanSound8K.csv` inside it. Excerpts cut
from one Freesound recording share `fsID` (the group), and the official folds keep them together.
The audio is as uploaded: 8–96 kHz, mono or stereo, 8/16/24-bit or float; the features stage
normalises it.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pandas as pd

from audioclf.errors import AudioclfError, brief
from audioclf.sources.archived import ArchiveSource
from audioclf.sources.base import Preset

CLASSES = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
    "engine_idling", "gun_shot", "jackhammer", "siren", "street_music",
)  # fmt: skip
METADATA = "metadata/UrbanSound8K.csv"
COLUMNS = ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class")


class UrbanSound8KSource(ArchiveSource):
    name = "urbansound8k"
    preset = Preset(sample_rate=22_050, duration_s=4.0, classes=CLASSES)
    default_source = "https://zenodo.org/records/1203745/files/UrbanSound8K.tar.gz?download=1"
    marker = METADATA
    capture = (METADATA,)

    def archive_name(self) -> str:
        return "UrbanSound8K.tar.gz"

    def build_metadata(self, files: list[str], read_text: Callable[[str], str]) -> pd.DataFrame:
        try:
            meta = pd.read_csv(io.StringIO(read_text(METADATA).lstrip("\ufeff")), dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as exc:
            raise AudioclfError(
                f"{self.location}: {METADATA} is not a readable CSV ({brief(exc)}); the file is damaged"
            ) from None
        missing = [c for c in COLUMNS if c not in meta.columns]
        if missing:
            raise AudioclfError(f"{self.location}: {METADATA} lacks column(s) {missing}; is it UrbanSound8K?")
        folds = pd.to_numeric(meta["fold"], errors="coerce")
        if folds.isna().any():
            raise AudioclfError(f"{self.location}: {METADATA} has rows without an integer fold; the file is damaged")
        return pd.DataFrame(
            {
                "path": "audio/fold" + folds.astype(int).astype(str) + "/" + meta["slice_file_name"],
                "label": meta["class"],
                "fold": folds.astype(int),
                "group": meta["fsID"],
                **{c: meta[c] for c in COLUMNS if c not in ("fold",)},
            }
        )

    def member(self, row: dict) -> str:
        return row["path"]  # data/raw keeps the archive's own layout: audio/fold<k>/<file>
