"""Decoding and waveform normalisation. numpy + soundfile + scipy only (no torch), so `predict`
can use exactly the same code as the pipeline.

Decodable-but-odd audio is normalised: any rate is resampled, any channel count downmixed, any
length padded or trimmed, NaN/inf cleaned and float samples outside full scale clipped. What
cannot be decoded raises `AudioclfError` with a message saying why (empty, HTML, header only, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from audioclf.errors import AudioclfError, brief
from audioclf.fileio import atomic_path

# Every suffix the project treats as audio: folder corpora, stale-file pruning and `predict` folders.
# (A file named explicitly is tried whatever its suffix; soundfile decides.)
AUDIO_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".caf", ".w64"}
)
# A header outside this range is damaged (or a sensor log, not audio); resampling 1 Hz to 16 kHz
# would also blow a short file up to hours of samples.
MIN_RATE, MAX_RATE = 1_000, 768_000
# resample_poly's default filter has 10 taps per side per phase: reading this many input frames
# past the clip's end makes the trimmed output identical to resampling the whole file.
_RESAMPLE_TAPS = 10


def describe_content(path: Path) -> str:
    """What the first bytes of a file that libsndfile refused look like (for error messages)."""
    with Path(path).open("rb") as fh:
        head = fh.read(256)
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
        return "the body looks like HTML/XML, not audio"
    if text.startswith((b"{", b"[")):
        return "the body looks like JSON, not audio"
    if head.startswith((b"RIFF", b"RIFX", b"RF64")):
        return "a RIFF/WAV header that libsndfile rejects (damaged or an unsupported encoding)"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "the body is plain text, not audio"
    return f"the body starts with {head[:12]!r}"


def libsndfile_reason(exc: BaseException, path: Path) -> str:
    """libsndfile's complaint, with the (long, already quoted) path replaced by "the file"."""
    return brief(str(exc).replace(f"'{path}'", "the file").replace(str(path), "the file"), 160)


def read_audio(path: str | Path, max_frames: int | Callable[[int], int] | None = None) -> tuple[np.ndarray, int]:
    """Decode any format libsndfile reads (by content, whatever the suffix says). Returns float32
    (frames, channels) and the rate; at most `max_frames` frames when given (a function of the
    file's rate, or a number)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioclfError(f"{path}: file not found; rerun the download stage (dvc repro -f download)") from None
    except OSError as exc:
        raise AudioclfError(f"{path}: cannot read it ({exc.strerror}); check the file's permissions") from None
    if not path.is_file():
        raise AudioclfError(f"{path}: not a regular file; remove it or point the metadata at an audio file")
    if size == 0:
        raise AudioclfError(f"{path}: cannot decode audio: the file is empty (0 bytes); remove or replace the file")
    try:
        with sf.SoundFile(str(path)) as audio:
            rate = audio.samplerate
            if not MIN_RATE <= rate <= MAX_RATE:
                raise AudioclfError(
                    f"{path}: cannot decode audio: the header's sample rate {rate} Hz is implausible "
                    f"(outside {MIN_RATE}..{MAX_RATE}); the file is damaged, remove or replace it"
                )
            limit = max_frames(rate) if callable(max_frames) else max_frames
            frames = -1 if not isinstance(limit, int) else max(1, limit)
            data = audio.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioclfError(
            f"{path}: cannot decode audio ({describe_content(path)}; libsndfile: {libsndfile_reason(exc, path)}); "
            "remove or replace the file"
        ) from None
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioclfError(
            f"{path}: cannot decode audio: a header with no samples ({size} bytes); remove or replace the file"
        )
    return data, rate


def to_mono(data: np.ndarray) -> np.ndarray:
    """(frames, channels) → (frames,), averaging channels."""
    return data.mean(axis=1) if data.ndim == 2 else data


def _ratio(orig_rate: int, target_rate: int) -> Fraction:
    return Fraction(target_rate, orig_rate).limit_denominator(1000)


def resample(wave: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy's anti-aliased `resample_poly`) by the reduced rate ratio."""
    if orig_rate == target_rate:
        return wave
    ratio = _ratio(orig_rate, target_rate)
    return resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)


def frames_needed(n_samples: int, orig_rate: int, target_rate: int) -> int:
    """Input frames that determine the first `n_samples` output samples after `resample`
    (the clip plus the resampling filter's reach), so a 10-minute file is not decoded whole."""
    if orig_rate == target_rate:
        return n_samples
    ratio = _ratio(orig_rate, target_rate)
    up, down = ratio.numerator, ratio.denominator
    reach = math.ceil(_RESAMPLE_TAPS * max(up, down) / up) + 2
    return math.ceil(n_samples * down / up) + reach


def fix_length(wave: np.ndarray, n_samples: int) -> np.ndarray:
    """Zero-pad at the end or trim to exactly `n_samples` (the tutorials' pad/trim)."""
    if wave.shape[0] >= n_samples:
        return wave[:n_samples]
    return np.pad(wave, (0, n_samples - wave.shape[0]))


def clean(wave: np.ndarray) -> np.ndarray:
    """NaN → 0, ±inf and float samples beyond full scale → ±1 (what a player does). NaN/inf would
    poison every feature and gradient downstream; 1e30 would overflow the spectrogram."""
    wave = np.nan_to_num(wave, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(wave, -1.0, 1.0, out=wave)


def load_clip(path: str | Path, sample_rate: int, n_samples: int | None) -> np.ndarray:
    """Decode, downmix, clean non-finite samples, resample and pad/trim: float32 (n_samples,).
    With `n_samples`, only the frames that reach the clip are decoded."""
    limit = None if n_samples is None else (lambda rate: frames_needed(n_samples, rate, sample_rate))
    data, rate = read_audio(path, limit)
    wave = clean(to_mono(data))
    wave = resample(wave, rate, sample_rate)
    if n_samples is not None:
        wave = fix_length(wave, n_samples)
    return np.ascontiguousarray(wave, dtype=np.float32)


def write_wav_atomic(path: Path, wave: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write to a temp file in the same folder, then rename: a reader never sees half a file."""
    with atomic_path(path) as tmp:
        sf.write(tmp, wave, sample_rate, subtype=subtype, format="WAV")
