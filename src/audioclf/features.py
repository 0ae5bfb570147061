"""The one feature function: raw waveform → (channels, freq, frames).

`FeatureExtractor` is an `nn.Module` over torchaudio transforms, so the features stage, training
checks and the ONNX export (features inside the graph) all use the same code. `build_cache`
computes it for every row into one contiguous `.npy` (memory-mappable), never normalised:
normalisation is fitted per training run on its own training rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchaudio.transforms as T
from torch import nn
from tqdm import tqdm

from audioclf.audio import load_clip
from audioclf.config import FeaturesConfig
from audioclf.errors import AudioclfError
from audioclf.fileio import atomic_path


class FeatureExtractor(nn.Module):
    """Waveform (batch, samples) float32 → features (batch, channels, freq, frames) float32.

    logmel / spectrogram / mfcc are one channel (dB, clamped `top_db` below each clip's peak);
    stft_complex is two (real, imaginary). Every clip is processed independently of the batch.
    """

    def __init__(self, cfg: FeaturesConfig, sample_rate: int) -> None:
        super().__init__()
        self.kind = cfg.kind
        stft = {"n_fft": cfg.n_fft, "win_length": cfg.win_length, "hop_length": cfg.hop_length}
        stype = "power" if cfg.power == 2.0 else "magnitude"
        if cfg.kind == "logmel":
            self.spec = T.MelSpectrogram(
                sample_rate=sample_rate, n_mels=cfg.n_mels, f_min=cfg.f_min, f_max=cfg.f_max,
                power=cfg.power, **stft,
            )  # fmt: skip
            self.to_db = T.AmplitudeToDB(stype=stype, top_db=cfg.top_db)
        elif cfg.kind == "spectrogram":
            self.spec = T.Spectrogram(power=cfg.power, **stft)
            self.to_db = T.AmplitudeToDB(stype=stype, top_db=cfg.top_db)
        elif cfg.kind == "mfcc":
            melkwargs = {"n_mels": cfg.n_mels, "f_min": cfg.f_min, "f_max": cfg.f_max, **stft}
            self.spec = T.MFCC(sample_rate=sample_rate, n_mfcc=cfg.n_mfcc, melkwargs=melkwargs)
            self.to_db = None
        elif cfg.kind == "stft_complex":
            self.spec = T.Spectrogram(power=None, **stft)
            self.to_db = None
        else:  # pragma: no cover - config validation rejects other kinds
            raise ValueError(cfg.kind)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.spec(wave)
        if self.kind == "stft_complex":
            return torch.stack([spec.real, spec.imag], dim=1)
        spec = spec.unsqueeze(1)  # (B, 1, F, T): AmplitudeToDB's top_db is then per clip
        if self.to_db is not None:
            spec = self.to_db(spec)
        return spec


def n_channels(kind: str) -> int:
    return 2 if kind == "stft_complex" else 1


@dataclass
class CacheResult:
    kept: list[int]  # indices into the input rows that decoded
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    shape: tuple[int, ...] = ()


def _decode(args: tuple[str, int, int]) -> tuple[np.ndarray | None, str | None]:
    path, sample_rate, n_samples = args
    try:
        return load_clip(path, sample_rate, n_samples), None
    except AudioclfError as exc:
        return None, str(exc)


def default_workers(workers: int) -> int:
    return workers if workers > 0 else max(1, os.cpu_count() or 1)


def build_cache(
    paths: Sequence[Path],
    out_path: Path,
    extractor: FeatureExtractor,
    sample_rate: int,
    n_samples: int,
    dtype: str = "float16",
    batch_size: int = 64,
    workers: int = 0,
) -> CacheResult:
    """Decode every path (in `workers` processes), compute features in batches, and write one
    (N, C, F, T) array to `out_path` atomically. Undecodable files are skipped and reported."""
    extractor = extractor.eval()
    with torch.no_grad():
        probe = extractor(torch.zeros(1, n_samples))
    item_shape = tuple(probe.shape[1:])
    jobs = [(str(p), sample_rate, n_samples) for p in paths]
    result = CacheResult(kept=[])
    waves: list[np.ndarray] = []
    chunks: list[np.ndarray] = []

    def flush() -> None:
        if waves:
            with torch.no_grad():
                feats = extractor(torch.from_numpy(np.stack(waves)))
            chunks.append(feats.numpy().astype(dtype))
            waves.clear()

    n_workers = default_workers(workers)
    pool = ProcessPoolExecutor(n_workers) if n_workers > 1 and len(jobs) > 64 else None
    try:
        decoded = pool.map(_decode, jobs, chunksize=16) if pool else map(_decode, jobs)
        for i, (wave, error) in enumerate(tqdm(decoded, total=len(jobs), desc="features", unit="clip")):
            if wave is None:
                result.skipped.append({"path": str(paths[i]), "reason": error})
                continue
            result.kept.append(i)
            waves.append(wave)
            if len(waves) == batch_size:
                flush()
        flush()
    finally:
        if pool:
            pool.shutdown()
    array = np.concatenate(chunks) if chunks else np.zeros((0, *item_shape), dtype=dtype)
    if not np.isfinite(array).all():
        raise RuntimeError("feature bug: non-finite values in the cache")  # load_clip cleans inputs
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array))
    result.shape = tuple(array.shape)
    return result
