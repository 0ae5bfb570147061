"""Free Spoken Digit Dataset: 3000 recordings of the digits 0–9, 6 speakers × 50 takes each, 8 kHz.

There is no metadata file: rows come from the `{digit}_{speaker}_{index}.wav` naming, and each
selected file is one request for `recordings/<file>`. The official test set is takes 0–4 of every
speaker, so its speakers also appear in training: fold = index // 5 + 1 makes fold 1 that test
set, and `split.strategy: group` (group = speaker) gives the honest speaker-independent split.
"""

from __future__ import annotations

import pandas as pd

from audioclf.sources.base import Preset
from audioclf.sources.perfile import PerFileSource

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
DIGITS = tuple(str(d) for d in range(10))
TAKES = 50
TAKES_PER_FOLD = 5  # takes 0-4 = the official test set = fold 1


class FSDDSource(PerFileSource):
    name = "fsdd"
    preset = Preset(  # fold 1 = the official test takes
        sample_rate=8_000, duration_s=1.0, classes=DIGITS, max_file_mb=16, max_metadata_mb=16, test_fold=1, val_fold=2
    )
    default_source = "https://github.com/Jakobovski/free-spoken-digit-dataset/raw/master/"

    def list_metadata(self) -> pd.DataFrame:
        rows = [
            {
                "path": f"audio/{digit}_{speaker}_{take}.wav",
                "label": digit,
                "fold": take // TAKES_PER_FOLD + 1,
                "group": speaker,
                "file": f"{digit}_{speaker}_{take}.wav",
                "speaker": speaker,
                "take": take,
                "official_split": "test" if take < TAKES_PER_FOLD else "train",
            }
            for digit in DIGITS
            for speaker in SPEAKERS
            for take in range(TAKES)
        ]
        return pd.DataFrame(rows)

    def remote_path(self, row: dict) -> str:
        return f"recordings/{row['file']}"
