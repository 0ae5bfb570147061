"""FeatureExtractor kinds and the precomputed cache: parallel == serial, one contiguous
memory-mappable array, never normalised, undecodable files skipped and reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audioclf.audio import write_wav_atomic
from audioclf.config import FeaturesConfig
from audioclf.errors import AudioclfError
from audioclf.features import FeatureExtractor, build_cache

SR = 8000
N = 2000  # 0.25 s


def cfg(**kw: object) -> FeaturesConfig:
    return FeaturesConfig(**{"n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 32, "n_mfcc": 13, **kw})


def waves(n: int = 3, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(N) / SR
    out = [0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.01 * rng.normal(size=N) for _ in range(n)]
    return torch.tensor(np.stack(out), dtype=torch.float32)


@pytest.mark.parametrize(
    ("kind", "shape"),
    [("logmel", (1, 32, 26)), ("mfcc", (1, 13, 26)), ("spectrogram", (1, 129, 26)), ("stft_complex", (2, 129, 26))],
)
def test_each_kind_has_its_shape_and_batch_equals_stacked_clips(kind, shape):
    ext = FeatureExtractor(cfg(kind=kind), SR).eval()
    w = waves()
    with torch.no_grad():
        batch = ext(w)
        single = torch.cat([ext(w[i : i + 1]) for i in range(len(w))])
    assert batch.shape == (3, *shape) and shape[0] == (2 if kind == "stft_complex" else 1)
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-4)


def test_stft_complex_is_real_and_imaginary_parts():
    c = cfg(kind="stft_complex")
    w = waves(1)
    with torch.no_grad():
        feats = FeatureExtractor(c, SR)(w)
    ref = torch.stft(w, 256, 80, 200, torch.hann_window(200), center=True, pad_mode="reflect", return_complex=True)
    torch.testing.assert_close(feats[:, 0], ref.real, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(feats[:, 1], ref.imag, rtol=1e-4, atol=1e-4)


def test_logmel_is_clamped_top_db_below_each_clips_peak():
    w = waves(2)
    w[1] *= 1e-3  # a quiet clip keeps its own 40 dB range, not the loud one's
    with torch.no_grad():
        feats = FeatureExtractor(cfg(top_db=40.0), SR)(w)
    for clip in feats:
        assert float(clip.max() - clip.min()) == pytest.approx(40.0, abs=1e-3)


def test_spectrogram_is_linear_power_or_magnitude():
    w = waves(1)
    with torch.no_grad():
        power = FeatureExtractor(cfg(kind="spectrogram", power=2.0), SR)(w)
        magnitude = FeatureExtractor(cfg(kind="spectrogram", power=1.0), SR)(w)
        complex_ = FeatureExtractor(cfg(kind="stft_complex"), SR)(w)
    assert float(power.min()) >= 0.0
    torch.testing.assert_close(power, magnitude**2, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(magnitude[:, 0], complex_.square().sum(1).sqrt(), rtol=1e-4, atol=1e-4)


@pytest.fixture
def wav_paths(tmp_path):
    data = waves(10, seed=1).numpy()
    paths = []
    for i, w in enumerate(data):
        path = tmp_path / "audio" / f"clip{i}.wav"
        write_wav_atomic(path, w, SR)
        paths.append(path)
    return paths


def test_parallel_cache_equals_serial_and_is_the_unnormalised_features(tmp_path, wav_paths):
    ext = FeatureExtractor(cfg(), SR)
    serial = build_cache(wav_paths, tmp_path / "a.npy", ext, SR, N, dtype="float32", batch_size=3, workers=1)
    parallel = build_cache(wav_paths, tmp_path / "b.npy", ext, SR, N, dtype="float32", batch_size=3, workers=2)
    a = np.load(tmp_path / "a.npy", mmap_mode="r")
    b = np.load(tmp_path / "b.npy", mmap_mode="r")
    assert isinstance(a, np.memmap) and a.flags["C_CONTIGUOUS"]
    assert serial.shape == parallel.shape == a.shape == (10, 1, 32, 26)
    assert serial.kept == parallel.kept == list(range(10))
    np.testing.assert_array_equal(a, b)
    from audioclf.audio import load_clip

    with torch.no_grad():
        direct = ext(torch.from_numpy(np.stack([load_clip(p, SR, N) for p in wav_paths]))).numpy()
    np.testing.assert_allclose(a, direct, rtol=1e-5, atol=1e-4)  # not normalised, nothing else applied
    assert not list(tmp_path.glob("*.part"))


def test_undecodable_files_are_skipped_reported_and_compacted(tmp_path, wav_paths):
    broken = tmp_path / "audio" / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    paths = [*wav_paths[:4], broken, *wav_paths[4:]]
    result = build_cache(paths, tmp_path / "f.npy", FeatureExtractor(cfg(), SR), SR, N, batch_size=4, workers=2)
    assert result.kept == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert [s["path"] for s in result.skipped] == [str(broken)] and "cannot decode" in result.skipped[0]["reason"]
    x = np.load(tmp_path / "f.npy", mmap_mode="r")
    assert x.shape == (10, 1, 32, 26) and x.dtype == np.float16
    ref = build_cache(wav_paths, tmp_path / "g.npy", FeatureExtractor(cfg(), SR), SR, N, workers=1)
    np.testing.assert_array_equal(x, np.load(tmp_path / "g.npy"))
    assert ref.skipped == []


def test_float16_overflow_names_the_dtype_param(tmp_path):
    loud = tmp_path / "loud.wav"
    write_wav_atomic(loud, np.ones(N, dtype=np.float32), SR, subtype="FLOAT")
    # a full-scale DC through a 1024-point window: power 512**2 > float16's 65504
    ext = FeatureExtractor(cfg(kind="spectrogram", n_fft=1024, win_length=1024, hop_length=256), SR)
    with pytest.raises(AudioclfError, match=r"features\.dtype") as err:
        build_cache([loud] * 3, tmp_path / "o.npy", ext, SR, N, dtype="float16", workers=1)
    assert str(loud) in str(err.value)
    assert not (tmp_path / "o.npy").exists()


def test_an_empty_selection_writes_an_empty_cache(tmp_path):
    result = build_cache([], tmp_path / "e.npy", FeatureExtractor(cfg(), SR), SR, N)
    assert result.shape == (0, 1, 32, 26) and np.load(tmp_path / "e.npy").shape == (0, 1, 32, 26)
