"""Decoding and waveform normalisation. numpy + soundfile + scipy only (no torch), so `predict`
can use exactly the same code as the pipeline."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from audioclf.errors import AudioclfError
from audioclf.fileio import atomic_path


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode any format libsndfile reads. Returns float32 (frames, channels) and the rate."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioclfError(f"{path}: cannot decode audio ({exc}); remove or replace the file") from exc
    if data.shape[0] == 0:
        raise AudioclfError(f"{path}: contains no audio samples; remove or replace the file")
    return data, rate


def to_mono(data: np.ndarray) -> np.ndarray:
    """(frames, channels) → (frames,), averaging channels."""
    return data.mean(axis=1) if data.ndim == 2 else data


def resample(wave: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy's anti-aliased `resample_poly`) by the reduced rate ratio."""
    if orig_rate == target_rate:
        return wave
    ratio = Fraction(target_rate, orig_rate).limit_denominator(1000)
    return resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)


def fix_length(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Zero-pad at the end or trim to exactly `n_samples` (the tutorials' pad/trim)."""
    if wave.shape[0] >= n_samples:
        return wave[:n_samples]
    return np.pad(wave, (0, n_samples - wave.shape[0]))


def load_clip(path: str | Path, sample_rate: int, n_samples: int | None) -> np.ndarray:
    """Decode, downmix, clean non-finite samples, resample and pad/trim: float32 (n_samples,)."""
    data, rate = read_audio(path)
    wave = to_mono(data)
    # NaN/inf in float files would poison every feature and gradient downstream
    wave = np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
    wave = resample(wave, rate, sample_rate)
    if n_samples is not None:
        wave = fix_length(wave, n_samples)
    return np.ascontiguousarray(wave, dtype=np.float32)


def write_wav_atomic(path: Path, wave: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write to a temp file in the same folder, then rename: a reader never sees half a file."""
    with atomic_path(path) as tmp:
        sf.write(tmp, wave, sample_rate, subtype=subtype, format="WAV")
