"""Generated bad inputs and helpers shared by the robustness tests.

Every audio case is built from a seed in milliseconds (the 10-minute clip too: a sine at 8 kHz).
`AUDIO_CASES` maps a case name to (builder, expected): "normalised" cases must decode to a finite
clip in [-1, 1]; "unusable" cases must be refused with a one-line reason containing the text.
"""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

RATE = 16_000
CLIP_S = 0.25


def _tone(seconds: float = CLIP_S, rate: int = RATE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * rng.uniform(300, 3000) * t) + 0.02 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def _wav_bytes(wave: np.ndarray, rate: int = RATE, **kw: object) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format=kw.pop("format", "WAV"), **kw)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _lying_riff(path: Path) -> Path:
    """RIFF and data chunk sizes claim 1 GB; the file holds 0.25 s."""
    data = bytearray(_wav_bytes(_tone(), subtype="PCM_16"))
    data[4:8] = struct.pack("<I", 10**9)
    data[40:44] = struct.pack("<I", 10**9)
    return _write(path, bytes(data))


def _damaged_header(path: Path) -> Path:
    """A WAV whose fmt chunk says 0 channels: no decoder can make sense of it."""
    data = bytearray(_wav_bytes(_tone(), subtype="PCM_16"))
    data[22:24] = struct.pack("<H", 0)
    return _write(path, bytes(data))


def _rate_1hz(path: Path) -> Path:
    """A header claiming 1 Hz (a damaged rate field): resampling would make hours of samples."""
    data = bytearray(_wav_bytes(_tone(), subtype="PCM_16"))
    data[24:28] = struct.pack("<I", 1)
    return _write(path, bytes(data))


def _non_finite(path: Path) -> Path:
    wave = _tone()
    wave[::50], wave[1::50], wave[2::50] = np.nan, np.inf, -np.inf
    wave[3] = 1e30  # finite, but would overflow a power spectrogram
    return _write(path, _wav_bytes(wave, subtype="FLOAT"))


def _sine_minutes(path: Path, minutes: float = 10.0, rate: int = 8_000) -> Path:
    t = np.arange(int(rate * 60 * minutes), dtype=np.float32) / rate
    return _write(path, _wav_bytes((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, subtype="PCM_16"))


Builder = Callable[[Path], Path]
AUDIO_CASES: dict[str, tuple[Builder, str]] = {
    # name: (builder, "normalised" or the reason the refusal must give)
    "zero_bytes": (lambda p: _write(p, b""), "empty"),
    "header_no_data": (lambda p: _write(p, _wav_bytes(np.zeros(0, np.float32), subtype="PCM_16")), "no samples"),
    "truncated": (lambda p: _write(p, _wav_bytes(_tone(), subtype="PCM_16")[:3000]), "normalised"),
    "text_as_wav": (lambda p: _write(p, b"sample,label\nclip.wav,dog\n" * 20), "plain text"),
    "html_as_wav": (lambda p: _write(p, b"<!DOCTYPE html><html><body>Sign in</body></html>"), "HTML"),
    "riff_lies_about_size": (_lying_riff, "normalised"),
    "damaged_header": (_damaged_header, "RIFF/WAV header"),
    "rate_1hz_header": (_rate_1hz, "implausible"),
    "silence": (lambda p: _write(p, _wav_bytes(np.zeros(4000, np.float32), subtype="PCM_16")), "normalised"),
    "clipping": (lambda p: _write(p, _wav_bytes(np.clip(_tone() * 20, -1, 1), subtype="PCM_16")), "normalised"),
    "pcm_u8": (lambda p: _write(p, _wav_bytes(_tone(), subtype="PCM_U8")), "normalised"),
    "pcm_24": (lambda p: _write(p, _wav_bytes(_tone(), subtype="PCM_24")), "normalised"),
    "float32": (lambda p: _write(p, _wav_bytes(_tone(), subtype="FLOAT")), "normalised"),
    "float64": (lambda p: _write(p, _wav_bytes(_tone().astype(np.float64), subtype="DOUBLE")), "normalised"),
    "stereo": (lambda p: _write(p, _wav_bytes(np.stack([_tone(), -_tone(seed=1)], 1))), "normalised"),
    "six_channels": (lambda p: _write(p, _wav_bytes(np.stack([_tone(seed=s) for s in range(6)], 1))), "normalised"),
    "rate_8k": (lambda p: _write(p, _wav_bytes(_tone(rate=8000), 8000)), "normalised"),
    "rate_48k": (lambda p: _write(p, _wav_bytes(_tone(rate=48000), 48000, subtype="PCM_24")), "normalised"),
    "ten_ms": (lambda p: _write(p, _wav_bytes(_tone(seconds=0.01))), "normalised"),
    "ten_minutes": (_sine_minutes, "normalised"),
    "nan_inf_float": (_non_finite, "normalised"),
    "flac_as_wav": (lambda p: _write(p, _wav_bytes(_tone(), format="FLAC")), "normalised"),
    "ogg_as_wav": (lambda p: _write(p, _wav_bytes(_tone(), format="OGG", subtype="VORBIS")), "normalised"),
}
UNUSABLE = sorted(name for name, (_, expected) in AUDIO_CASES.items() if expected != "normalised")


def build_audio(root: Path, names: list[str] | None = None) -> dict[str, Path]:
    return {name: AUDIO_CASES[name][0](root / f"{name}.wav") for name in names or AUDIO_CASES}


def good_clips(root: Path, n: int, labels: tuple[str, ...] = ("a", "b"), rate: int = RATE) -> list[tuple[str, str]]:
    """`n` decodable clips per label under root/<label>/; returns (relative path, label) rows."""
    rows = []
    for li, label in enumerate(labels):
        for k in range(n):
            rel = f"{label}/{label}_{k}.wav"
            _write(root / rel, _wav_bytes(_tone(rate=rate, seed=100 * li + k), rate, subtype="PCM_16"))
            rows.append((rel, label))
    return rows


# -- params and a tiny project ------------------------------------------------------------------

TINY = {
    "data": {"sample_rate": RATE, "duration_s": CLIP_S},
    "split": {"strategy": "stratified", "val_frac": 0.25, "test_frac": 0.25},
    "features": {"n_fft": 256, "win_length": 256, "hop_length": 128, "n_mels": 16},
    "train": {
        "model": "convnet",
        "model_params": {"convnet": {"channels": [4, 8]}},
        "epochs": 2,
        "batch_size": 8,
        "patience": 5,
    },
    "runtime": {"workers": 1, "threads": 1, "device": "cpu"},
}


def write_params(path: Path, **blocks: dict) -> Path:
    """TINY merged with `blocks` (one level deep per block)."""
    params = {block: dict(values) for block, values in TINY.items()}
    for block, values in blocks.items():
        params.setdefault(block, {}).update(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def write_raw(raw: Path, rows: list[tuple[str, str]], folds: bool = True) -> Path:
    """data/raw as the download stage leaves it: the files (already there) and metadata.csv."""
    import pandas as pd

    frame = pd.DataFrame(
        {
            "path": [p for p, _ in rows],
            "label": [label for _, label in rows],
            "fold": [i % 5 + 1 for i in range(len(rows))] if folds else [None] * len(rows),
            "group": "",
        }
    )
    frame.to_csv(raw / "metadata.csv", index=False)
    return raw / "metadata.csv"


# -- checks -------------------------------------------------------------------------------------


def leftovers(root: Path) -> list[str]:
    """Temp files or half-written outputs anywhere under root (what a clean stage never leaves)."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and (".part" in p.name or p.name.endswith(".compact") or p.name.endswith(".pre.onnx"))
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(err: str) -> str:
    """The CLI's stderr for a user error: exactly one line, `audioclf: error: ...`."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("audioclf: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


def cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run `audioclf ARGV` in-process; (exit code, stderr)."""
    from audioclf.cli import main

    code = main(argv)
    _, err = capsys.readouterr()
    return code, err


# -- subprocesses -------------------------------------------------------------------------------


def start_stage(cwd: Path, stage: str, args: list[str]) -> subprocess.Popen:
    """`python -m audioclf stage STAGE ARGS` in `cwd`, SIGINT handled as Python's default (a
    harness that ignores SIGINT would otherwise pass that on)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    return subprocess.Popen(
        [sys.executable, "-m", "audioclf", "stage", stage, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def interrupt_when(proc: subprocess.Popen, ready: Callable[[], bool], sig: int, timeout_s: float = 120) -> str:
    """Once `ready()` (progress made), freeze the process (SIGSTOP), send `sig`, let it go on
    (SIGCONT), wait, and return stderr. Freezing first makes "mid-run" deterministic: the signal
    lands where the progress was seen, however fast the rest would have gone."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, f"finished before any progress was seen: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "no progress before the deadline"
        time.sleep(0.002)
    proc.send_signal(signal.SIGSTOP)
    assert proc.poll() is None, "finished before the interrupt"
    proc.send_signal(sig)
    if sig != signal.SIGKILL:
        proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    return err.decode(errors="replace")
