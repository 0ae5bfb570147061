"""The antiphase-safe downmix must not change mono audio: the built-in set is mono, so the
default pipeline's features (and model) stay identical. Compared with the decode path as it was
(channel mean, then clean), sample for sample and feature for feature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioclf.audio import clean, fix_length, frames_needed, load_clip, read_audio, resample
from audioclf.config import FeaturesConfig
from audioclf.features import FeatureExtractor


def previous_load_clip(path: Path, sample_rate: int, n_samples: int) -> np.ndarray:
    """load_clip before the antiphase work: mean over channels, then clean."""
    data, rate = read_audio(path, lambda r: frames_needed(n_samples, r, sample_rate))
    wave = resample(clean(data.mean(axis=1)), rate, sample_rate)
    return np.ascontiguousarray(fix_length(wave, n_samples), dtype=np.float32)


@pytest.mark.parametrize("rate, subtype", [(16_000, "PCM_16"), (44_100, "PCM_24"), (8_000, "FLOAT")])
def test_mono_clips_decode_and_featurise_exactly_as_before(tmp_path: Path, rate: int, subtype: str) -> None:
    rng = np.random.default_rng(rate)
    wave = (0.4 * np.sin(np.arange(rate) * 0.05) + 0.05 * rng.standard_normal(rate)).astype(np.float32)
    wave[::997] = 1.5 if subtype == "FLOAT" else wave[::997]  # beyond full scale: clean() clips it
    path = tmp_path / "clip.wav"
    sf.write(path, wave, rate, subtype=subtype)
    now, before = load_clip(path, 16_000, 16_000), previous_load_clip(path, 16_000, 16_000)
    assert np.array_equal(now, before)
    extractor = FeatureExtractor(FeaturesConfig(), 16_000).eval()
    with torch.no_grad():
        assert torch.equal(extractor(torch.from_numpy(now[None])), extractor(torch.from_numpy(before[None])))


def test_the_built_in_sets_clips_are_unchanged(tmp_path: Path) -> None:
    """One clip per class of the default corpus, written as its source writes them (mono PCM_16)."""
    from audioclf import synthetic
    from audioclf.audio import write_wav_atomic

    n = round(synthetic.SAMPLE_RATE * synthetic.DURATION_S)
    extractor = FeatureExtractor(FeaturesConfig(), synthetic.SAMPLE_RATE).eval()
    for k, label in enumerate(synthetic.CLASSES):
        path = tmp_path / f"{label}.wav"
        write_wav_atomic(path, synthetic.render_clip(label, k, 0), synthetic.SAMPLE_RATE)
        assert sf.info(str(path)).channels == 1
        now, before = load_clip(path, synthetic.SAMPLE_RATE, n), previous_load_clip(path, synthetic.SAMPLE_RATE, n)
        assert np.array_equal(now, before), label
        with torch.no_grad():
            assert torch.equal(extractor(torch.from_numpy(now[None])), extractor(torch.from_numpy(before[None])))
