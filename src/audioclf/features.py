"""The one feature function: raw waveform → (channels, freq, frames).

`FeatureExtractor` is an `nn.Module` over torchaudio transforms, so the features stage, training
checks and the ONNX export (features inside the graph) all use the same code. `build_cache`
computes it for every row into one contiguous `.npy` (memory-mappable), never normalised:
normalisation is fitted per training run on its own training rows.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
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
from audioclf.fileio import atomic_path, preallocate
from audioclf.runtime import available_cores


class PerClip(nn.Module):
    """A torchaudio transform (B, S) → (B, F, T) as (B, 1, F, T), then an optional dB conversion
    (AmplitudeToDB's top_db then clamps each clip on its own peak)."""

    def __init__(self, spec: nn.Module, to_db: nn.Module | None = None) -> None:
        super().__init__()
        self.spec, self.to_db = spec, to_db

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.spec(wave).unsqueeze(1)
        return self.to_db(spec) if self.to_db is not None else spec


class ComplexParts(nn.Module):
    """A complex STFT (B, F, T) → its real and imaginary parts as two channels (B, 2, F, T)."""

    def __init__(self, spec: nn.Module) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.spec(wave)
        return torch.stack([spec.real, spec.imag], dim=1)


def _stft(cfg: FeaturesConfig) -> dict[str, int]:
    return {"n_fft": cfg.n_fft, "win_length": cfg.win_length, "hop_length": cfg.hop_length}


def _logmel(cfg: FeaturesConfig, sample_rate: int) -> nn.Module:
    """mel power (or magnitude, `power`) in dB, clamped `top_db` below each clip's peak; (B, 1, n_mels, T)."""
    spec = T.MelSpectrogram(
        sample_rate=sample_rate, n_mels=cfg.n_mels, f_min=cfg.f_min, f_max=cfg.f_max, power=cfg.power, **_stft(cfg)
    )
    return PerClip(spec, T.AmplitudeToDB(stype="power" if cfg.power == 2.0 else "magnitude", top_db=cfg.top_db))


def _mfcc(cfg: FeaturesConfig, sample_rate: int) -> nn.Module:
    """torchaudio's MFCC over the same mel settings; (B, 1, n_mfcc, T)."""
    melkwargs = {"n_mels": cfg.n_mels, "f_min": cfg.f_min, "f_max": cfg.f_max, **_stft(cfg)}
    return PerClip(T.MFCC(sample_rate=sample_rate, n_mfcc=cfg.n_mfcc, melkwargs=melkwargs))


def _spectrogram(cfg: FeaturesConfig, sample_rate: int) -> nn.Module:
    """linear-frequency |STFT|**power, not log-compressed (in dB power 1 and 2 would be
    identical); (B, 1, n_fft // 2 + 1, T)."""
    return PerClip(T.Spectrogram(power=cfg.power, **_stft(cfg)))


def _stft_complex(cfg: FeaturesConfig, sample_rate: int) -> nn.Module:
    """real and imaginary STFT parts as two channels; (B, 2, n_fft // 2 + 1, T)."""
    return ComplexParts(T.Spectrogram(power=None, **_stft(cfg)))


# The feature kinds: name → (features params, sample rate) → module (B, samples) → (B, C, F, T).
# config.FeatureKind lists the same names (a test ties the two), so params validation needs no torch.
FEATURE_KINDS: dict[str, Callable[[FeaturesConfig, int], nn.Module]] = {
    "logmel": _logmel,
    "mfcc": _mfcc,
    "spectrogram": _spectrogram,
    "stft_complex": _stft_complex,
}


class FeatureExtractor(nn.Module):
    """Waveform (batch, samples) float32 → features (batch, channels, freq, frames) float32, by
    the `FEATURE_KINDS` entry of `cfg.kind`. Every clip is processed independently of the batch
    (center=True, reflect padding)."""

    def __init__(self, cfg: FeaturesConfig, sample_rate: int) -> None:
        super().__init__()
        self.kind = cfg.kind
        self.transform = FEATURE_KINDS[cfg.kind](cfg, sample_rate)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.transform(wave)


@dataclass
class CacheResult:
    kept: list[int]  # indices into the input rows that decoded
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Job:
    """What a worker needs to turn paths into feature rows (sent once per worker)."""

    extractor: FeatureExtractor
    sample_rate: int
    n_samples: int
    dtype: str


_WORKER_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job
    torch.set_num_threads(1)  # one process per core already; more threads would oversubscribe


def _featurize(job: _Job, chunk: list[tuple[int, str]]) -> tuple[list[int], np.ndarray, list[tuple[int, str]]]:
    """Decode a chunk of (index, path) and compute its features in one batch.
    Returns (kept indices, features (kept, C, F, T) in the cache dtype, [(index, reason)] skipped)."""
    kept, waves, skipped = [], [], []
    for i, path in chunk:
        try:
            waves.append(load_clip(path, job.sample_rate, job.n_samples))
            kept.append(i)
        except AudioclfError as exc:
            skipped.append((i, str(exc)))
    with torch.no_grad():
        feats = job.extractor(torch.from_numpy(np.stack(waves))).numpy() if waves else None
    if feats is None:
        return kept, np.zeros((0,), dtype=job.dtype), skipped
    with np.errstate(over="ignore"):  # overflow is checked right below, with a useful message
        out = feats.astype(job.dtype)
    if not np.isfinite(out).all():
        row = int(np.flatnonzero(~np.isfinite(out.reshape(len(out), -1)).all(axis=1))[0])
        bad = dict(chunk)[kept[row]]
        raise AudioclfError(
            f"{bad}: features overflow features.dtype {job.dtype} (max {np.finfo(job.dtype).max:g}); "
            "set features.dtype: float32, or use kind logmel (dB)"
        )
    return kept, out, skipped


def _featurize_in_worker(chunk: list[tuple[int, str]]) -> tuple[list[int], np.ndarray, list[tuple[int, str]]]:
    if _WORKER_JOB is None:  # pragma: no cover - the pool initializer always runs first
        raise RuntimeError("worker not initialised")
    return _featurize(_WORKER_JOB, chunk)


def default_workers(workers: int) -> int:
    """0 = one per core available to this process."""
    return workers if workers > 0 else available_cores()


def _pool(n_workers: int, job: _Job) -> ProcessPoolExecutor:
    # fork: workers inherit the imported modules instead of re-importing torch (~2 s each)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(n_workers, multiprocessing.get_context(method), _init_worker, (job,))


def _compact(tmp: Path, n_rows: int) -> None:
    """Drop the unused tail rows (skipped files) of the .npy at `tmp`, streaming in chunks."""
    full = np.load(tmp, mmap_mode="r")
    part = tmp.with_name(tmp.name + ".compact")
    out = np.lib.format.open_memmap(part, mode="w+", dtype=full.dtype, shape=(n_rows, *full.shape[1:]))
    try:
        preallocate(part)  # a full disk: ENOSPC now, not SIGBUS at the first write into the map
        for start in range(0, n_rows, 1024):
            out[start : start + 1024] = full[start : min(n_rows, start + 1024)]
        out.flush()
    except BaseException:
        del out
        part.unlink(missing_ok=True)  # no half-written file left behind
        raise
    del out, full
    os.replace(part, tmp)


def build_cache(
    paths: Sequence[Path],
    out_path: Path,
    extractor: FeatureExtractor,
    sample_rate: int,
    n_samples: int,
    dtype: str = "float16",
    batch_size: int = 32,
    workers: int = 0,
    progress: bool = True,
) -> CacheResult:
    """Decode and featurise every path in `workers` processes (0 = one per core), each taking
    chunks of `batch_size` clips, and stream the rows into one contiguous (N, C, F, T) `.npy`
    at `out_path`, renamed into place when complete. Undecodable files are skipped and reported;
    nothing is normalised."""
    extractor = extractor.eval()
    with torch.no_grad():
        item_shape = tuple(extractor(torch.zeros(1, n_samples)).shape[1:])
    job = _Job(extractor, sample_rate, n_samples, dtype)
    indexed = [(i, str(p)) for i, p in enumerate(paths)]
    chunks = [indexed[i : i + batch_size] for i in range(0, len(indexed), batch_size)]
    result = CacheResult(kept=[])
    n_workers = min(default_workers(workers), len(chunks))
    with atomic_path(out_path) as tmp:
        if not paths:
            with open(tmp, "wb") as fh:  # mmap cannot map an empty array; np.save(path) would add .npy
                np.save(fh, np.zeros((0, *item_shape), dtype=dtype))
            result.shape = (0, *item_shape)
            return result
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(paths), *item_shape))
        preallocate(tmp)  # a full disk: ENOSPC now, not SIGBUS at the first write into the map
        pool = _pool(n_workers, job) if n_workers > 1 else None
        try:
            done = pool.map(_featurize_in_worker, chunks) if pool else (_featurize(job, c) for c in chunks)
            with tqdm(total=len(paths), desc="features", unit="clip", disable=not progress) as bar:
                for kept, feats, skipped in done:
                    out[len(result.kept) : len(result.kept) + len(kept)] = feats
                    result.kept.extend(kept)
                    result.skipped.extend({"path": str(paths[i]), "reason": r} for i, r in skipped)
                    bar.update(len(kept) + len(skipped))
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
        out.flush()
        del out  # unmap before the rename
        if result.skipped:
            _compact(tmp, len(result.kept))
    result.shape = (len(result.kept), *item_shape)
    return result
