"""The built-in dataset as a source: metadata is computed, fetching renders the clip."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audioclf import synthetic
from audioclf.audio import write_wav_atomic
from audioclf.sources.base import Preset, Source


class SyntheticSource(Source):
    name = "synthetic"
    preset = Preset(sample_rate=synthetic.SAMPLE_RATE, duration_s=synthetic.DURATION_S, test_fold=5, val_fold=4)

    def list_metadata(self) -> pd.DataFrame:
        rows = synthetic.metadata_rows(self.cfg.synthetic_clips_per_class, self.cfg.synthetic_seed)
        return pd.DataFrame(rows)

    def fetch_one(self, row: dict, dest: Path) -> None:
        wave = synthetic.render_clip(row["label"], int(row["clip_index"]), int(row["seed"]))
        write_wav_atomic(dest, wave, synthetic.SAMPLE_RATE)
