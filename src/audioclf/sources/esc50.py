"""ESC-50 (Piczak 2015): 2000 five-second clips, 50 classes, 5 folds, from its GitHub repository.

Metadata is `meta/esc50.csv`; each selected clip is one request for `audio/<filename>`. Clips cut
from one Freesound recording share `src_file`, which becomes the group.
"""

from __future__ import annotations

import pandas as pd

from audioclf.errors import AudioclfError
from audioclf.fetch import join
from audioclf.sources.base import Preset
from audioclf.sources.perfile import PerFileSource

CLASSES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm", "crying_baby", "sneezing", "clapping",
    "breathing", "coughing", "footsteps", "laughing", "brushing_teeth", "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening",
    "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking", "helicopter",
    "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane", "fireworks", "hand_saw",
)  # fmt: skip
METADATA = "meta/esc50.csv"
COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")


class ESC50Source(PerFileSource):
    name = "esc50"
    # clips are 5 s at 44.1 kHz (441 KB); esc50.csv is 100 KB
    preset = Preset(
        sample_rate=44_100, duration_s=5.0, classes=CLASSES, max_file_mb=16, max_metadata_mb=16, test_fold=5, val_fold=4
    )
    default_source = "https://github.com/karolpiczak/ESC-50/raw/master/"

    def list_metadata(self) -> pd.DataFrame:
        meta = self.read_csv(METADATA, COLUMNS)
        folds = pd.to_numeric(meta["fold"], errors="coerce")
        if folds.isna().any():
            bad = meta.loc[folds.isna(), "filename"].iloc[0]
            raise AudioclfError(f"{join(self.location, METADATA)}: row {bad!r} has no integer fold; the CSV is damaged")
        return pd.DataFrame(
            {
                "path": "audio/" + meta["filename"],
                "label": meta["category"],
                "fold": folds.astype(int),
                "group": meta["src_file"],
                **{c: meta[c] for c in COLUMNS},
            }
        )

    def remote_path(self, row: dict) -> str:
        return f"audio/{row['filename']}"
