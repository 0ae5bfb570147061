"""The built-in dataset: procedurally synthesised sound events over background noise.

Pure numpy, deterministic from a seed: clip `k` of class `c` is always the same waveform,
whatever else is selected, so a download of a subset fetches exactly the rows of the full set.
Each class has real within-class variability (pitch, duration, onset, envelope, harmonics) and
the parameter ranges of some classes overlap (a shallow tremolo is almost a whistle, a slow
siren almost a chirp), so low-SNR clips are genuinely ambiguous and the metrics do not saturate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SAMPLE_RATE = 16_000
DURATION_S = 1.0
N_FOLDS = 5
CLIPS_PER_SOURCE = 4  # clips rendered from one "source" (shared base parameters) form a group
SNR_DB = (-10.0, 15.0)

Rng = np.random.Generator


def _time(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _envelope(n: int, rng: Rng) -> np.ndarray:
    attack = max(1, int(n * rng.uniform(0.01, 0.3)))
    release = max(1, int(n * rng.uniform(0.05, 0.5)))
    env = np.ones(n)
    env[:attack] = np.linspace(0.0, 1.0, attack)
    env[n - release :] *= np.linspace(1.0, 0.0, release)
    return env


def _sine_from_freq(freq: np.ndarray, rng: Rng) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE + rng.uniform(0, 2 * np.pi)
    return np.sin(phase)


def _harmonics(freq: np.ndarray, n_harm: int, decay: float, rng: Rng) -> np.ndarray:
    out = np.zeros_like(freq)
    for h in range(1, n_harm + 1):
        # harmonics above Nyquist would alias; drop them sample by sample
        out += np.where(h * freq < SAMPLE_RATE / 2, _sine_from_freq(h * freq, rng), 0.0) / h**decay
    return out


def whistle(n: int, base: dict, rng: Rng) -> np.ndarray:
    f0 = base["f0"] * rng.uniform(0.9, 1.1)
    vib = 1 + rng.uniform(0.0, 0.01) * np.sin(2 * np.pi * rng.uniform(3, 7) * _time(n))
    return _harmonics(np.full(n, f0) * vib, rng.integers(1, 3), 2.0, rng)


def tremolo(n: int, base: dict, rng: Rng) -> np.ndarray:
    f0 = base["f0"] * rng.uniform(0.9, 1.1)
    depth = rng.uniform(0.35, 1.0)  # shallow tremolo overlaps `whistle`
    am = 1 - depth * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(4, 14) * _time(n)))
    return am * _sine_from_freq(np.full(n, f0), rng)


def chirp_up(n: int, base: dict, rng: Rng) -> np.ndarray:
    f0 = base["f0"] * rng.uniform(0.6, 1.0)
    f1 = f0 * rng.uniform(1.3, 3.0)
    return _harmonics(np.geomspace(f0, f1, n), rng.integers(1, 3), 2.0, rng)


def chirp_down(n: int, base: dict, rng: Rng) -> np.ndarray:
    f0 = base["f0"] * rng.uniform(1.0, 1.6)
    f1 = f0 / rng.uniform(1.3, 3.0)
    return _harmonics(np.geomspace(f0, f1, n), rng.integers(1, 3), 2.0, rng)


def siren(n: int, base: dict, rng: Rng) -> np.ndarray:
    f0 = base["f0"] * rng.uniform(0.9, 1.1)
    depth = rng.uniform(0.08, 0.4)
    rate = rng.uniform(0.8, 4.0)  # a slow siren over a short event looks like a chirp
    freq = f0 * (1 + depth * np.sin(2 * np.pi * rate * _time(n) + rng.uniform(0, 2 * np.pi)))
    return _harmonics(freq, rng.integers(1, 4), 1.5, rng)


def buzz(n: int, base: dict, rng: Rng) -> np.ndarray:
    f0 = base["f0"] / 4 * rng.uniform(0.85, 1.15)  # low fundamental, rich spectrum
    return _harmonics(np.full(n, f0), int(rng.integers(6, 16)), rng.uniform(0.7, 1.3), rng)


def chord(n: int, base: dict, rng: Rng) -> np.ndarray:
    f0 = base["f0"] / 2 * rng.uniform(0.9, 1.1)
    ratios = rng.choice([1.25, 1.333, 1.5, 1.6, 2.0], size=rng.integers(1, 3), replace=False)
    freqs = [f0] + [f0 * r for r in ratios]
    return sum(_harmonics(np.full(n, f), 3, 1.5, rng) for f in freqs) / len(freqs)


def clicks(n: int, base: dict, rng: Rng) -> np.ndarray:
    rate = rng.uniform(6, 30)
    period = max(1, int(SAMPLE_RATE / rate))
    out = np.zeros(n)
    out[rng.integers(0, period) :: period] = 1.0
    kernel_len = int(rng.integers(8, 64))
    ring = np.exp(-np.arange(kernel_len) / (kernel_len / 4)) * np.sin(
        2 * np.pi * base["f0"] * 2 * np.arange(kernel_len) / SAMPLE_RATE
    )
    return np.convolve(out, ring, mode="same")


def knock(n: int, base: dict, rng: Rng) -> np.ndarray:
    out = np.zeros(n)
    t = _time(n)
    for _ in range(int(rng.integers(1, 5))):
        start = int(rng.integers(0, max(1, n - 200)))
        f = base["f0"] * rng.uniform(0.4, 1.0)
        decay = rng.uniform(15, 60)
        tt = t[: n - start]
        out[start:] += np.exp(-decay * tt) * np.sin(2 * np.pi * f * tt) * rng.uniform(0.5, 1.0)
    return out


def hiss(n: int, base: dict, rng: Rng) -> np.ndarray:
    noise = rng.standard_normal(n)
    spec = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    centre = base["f0"] * rng.uniform(1.5, 4.0)
    width = centre * rng.uniform(0.2, 0.8)
    spec *= np.exp(-0.5 * ((freqs - centre) / width) ** 2)
    return np.fft.irfft(spec, n)


CLASSES: dict[str, Callable[[int, dict, Rng], np.ndarray]] = {
    "whistle": whistle,
    "tremolo": tremolo,
    "chirp_up": chirp_up,
    "chirp_down": chirp_down,
    "siren": siren,
    "buzz": buzz,
    "chord": chord,
    "clicks": clicks,
    "knock": knock,
    "hiss": hiss,
}


def _background(n: int, rng: Rng) -> np.ndarray:
    """White, pink or brown noise, sometimes with mains hum: the "room" every clip is in."""
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    slope = rng.choice([0.0, 0.5, 1.0])  # 1/f^slope power: white, pink, brown-ish
    spec[1:] /= freqs[1:] ** (slope / 2)
    noise = np.fft.irfft(spec, n)
    if rng.random() < 0.3:
        noise += 0.3 * np.std(noise) * np.sin(2 * np.pi * rng.choice([50, 60]) * _time(n))
    return noise / (np.std(noise) + 1e-12)


def clip_rng(seed: int, class_index: int, clip_index: int) -> Rng:
    return np.random.default_rng([seed, class_index, clip_index])


def render_clip(label: str, clip_index: int, seed: int) -> np.ndarray:
    """One clip of `label`, float32 in [-1, 1], `DURATION_S` long at `SAMPLE_RATE`."""
    class_index = list(CLASSES).index(label)
    source_rng = np.random.default_rng([seed, class_index, clip_index // CLIPS_PER_SOURCE, 7])
    base = {"f0": float(np.exp(source_rng.uniform(np.log(300.0), np.log(1600.0))))}
    rng = clip_rng(seed, class_index, clip_index)
    n = int(SAMPLE_RATE * DURATION_S)
    event_len = int(n * rng.uniform(0.25, 0.9))
    onset = int(rng.integers(0, n - event_len + 1))
    event = CLASSES[label](event_len, base, rng) * _envelope(event_len, rng)
    event /= np.sqrt(np.mean(event**2)) + 1e-12
    snr_db = rng.uniform(*SNR_DB)
    clip = _background(n, rng) * 10 ** (-snr_db / 20) * np.sqrt(event_len / n)
    clip[onset : onset + event_len] += event
    return (0.5 * clip / (np.max(np.abs(clip)) + 1e-12)).astype(np.float32)


def clip_fold(clip_index: int, clips_per_class: int) -> int:
    """Folds 1..5 in contiguous blocks, so every clip of a source (group) shares one fold."""
    per_fold = -(-clips_per_class // N_FOLDS)
    return clip_index // per_fold + 1


def metadata_rows(clips_per_class: int, seed: int) -> list[dict]:
    rows = []
    for label in CLASSES:
        for k in range(clips_per_class):
            fold = clip_fold(k, clips_per_class)
            rows.append(
                {
                    "path": f"audio/{label}/{label}-{k:04d}.wav",
                    "label": label,
                    "fold": fold,
                    "group": f"{label}-f{fold}-src{k // CLIPS_PER_SOURCE:03d}",
                    "clip_index": k,
                    "seed": seed,
                }
            )
    return rows
