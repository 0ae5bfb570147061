"""Antiphase stereo (left = -right, a miswired cable or a polarity-flipped microphone) would
average to silence. `audio.downmix` detects cancelling channels and aligns their polarity before
averaging; the features stage reports such files in meta.json; predict and the documented client
snippet use the same rule. Ordinary stereo and mono keep the plain channel mean, bit for bit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf import audio, inference, streaming
from audioclf.audio import downmix, load_clip
from audioclf.stages import features
from tests.robustness.bad_inputs import good_clips, write_params, write_raw

RATE = 16_000
DOCS = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def tone(seed: int, n: int = 4000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    return (0.3 * np.sin(2 * np.pi * rng.uniform(300, 3000) * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def energy(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


CASES = {
    # name: (frames x channels, cancelled?)
    "antiphase": (lambda: np.stack([tone(0), -tone(0)], 1), True),
    "antiphase_unequal_gain": (lambda: np.stack([tone(0), -0.9 * tone(0)], 1), True),
    "antiphase_right_louder": (lambda: np.stack([-0.95 * tone(1), tone(1)], 1), True),
    "half_gain_antiphase": (lambda: np.stack([-0.5 * tone(1), tone(1)], 1), False),  # mean at -12 dB: no cancel
    "antiphase_in_six_channels": (lambda: np.stack([tone(2), -tone(2)] + [np.zeros(4000, np.float32)] * 4, 1), True),
    "antiphase_plus_noise": (
        lambda: np.stack([tone(3), -tone(3) + 0.01 * np.random.default_rng(9).standard_normal(4000)], 1), True),
    "identical_channels": (lambda: np.stack([tone(4), tone(4)], 1), False),
    "independent_channels": (lambda: np.stack([tone(5), tone(6)], 1), False),
    "one_silent_channel": (lambda: np.stack([tone(7), np.zeros(4000, np.float32)], 1), False),
    "silence": (lambda: np.zeros((4000, 2), np.float32), False),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_downmix_never_cancels_and_leaves_ordinary_audio_alone(name: str) -> None:
    data, cancelled = CASES[name][0]().astype(np.float32), CASES[name][1]
    mono, flag = downmix(data)
    assert flag is cancelled and mono.dtype == np.float32 and mono.shape == (len(data),)
    if cancelled:
        assert energy(mono) > 0.25 * energy(data)  # not near silence: the mean channel energy, or more
    else:
        assert np.array_equal(mono, data.mean(axis=1))  # the plain mean, bit for bit


def test_exact_antiphase_gives_the_signal_itself() -> None:
    left = tone(0)
    mono, flag = downmix(np.stack([left, -left], 1))
    assert flag and np.array_equal(mono, left)


def test_mono_is_passed_through_bit_for_bit() -> None:
    wave = tone(8)
    for data in (wave, wave[:, None]):
        mono, flag = downmix(data)
        assert not flag and np.array_equal(mono, wave)


def test_features_stage_reports_antiphase_files_and_keeps_their_signal(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw"
    rows = good_clips(raw, 6)
    left = tone(11, RATE // 4)
    sf.write(raw / "a" / "flipped.wav", np.stack([left, -left], 1), RATE, subtype="FLOAT")
    sf.write(raw / "a" / "mono.wav", left, RATE, subtype="FLOAT")
    write_raw(raw, [*rows, ("a/flipped.wav", "a"), ("a/mono.wav", "a")])
    out = tmp_path / "features"
    features.main(["--params", str(write_params(tmp_path / "params.yaml")), "--raw", str(raw), "--out", str(out)])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["antiphase"] == ["a/flipped.wav"]
    x = np.load(out / "features.npy")
    assert np.array_equal(x[-2], x[-1])  # the flipped stereo file features like its left channel
    assert float(x[-2].astype(np.float32).std()) > 1.0  # not a flat dB floor


def test_no_antiphase_key_when_there_is_none(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw"
    write_raw(raw, good_clips(raw, 4))
    out = tmp_path / "features"
    features.main(["--params", str(write_params(tmp_path / "params.yaml")), "--raw", str(raw), "--out", str(out)])
    assert "antiphase" not in json.loads((out / "meta.json").read_text())  # default outputs unchanged


def test_predict_scores_the_aligned_downmix(tmp_path: Path) -> None:
    left = tone(12, 8000)
    sf.write(tmp_path / "flipped.wav", np.stack([left, -left], 1), RATE, subtype="FLOAT")
    seen: list[np.ndarray] = []

    class Session:  # records what the model is fed; logits favour class 1 when the input is not silent
        def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            wave = next(iter(feeds.values()))
            seen.append(wave)
            loud = np.sqrt(np.mean(wave.astype(np.float64) ** 2, axis=1))
            return [np.stack([np.zeros_like(loud), 100 * loud], 1).astype(np.float32)]

    model = inference.Model(Session(), tmp_path / "m.onnx", ("silence", "sound"), RATE, 4000, "wave", "logits", "fp32")
    result = model.predict_file(tmp_path / "flipped.wav", hop=0.25)
    assert result.label == "sound"  # the antiphase pair did not cancel to silence
    # the blocks predict decodes are downmixed by the pipeline's own function: the first window is
    # exactly the features stage's clip
    assert np.array_equal(seen[0][0], load_clip(tmp_path / "flipped.wav", RATE, 4000))
    assert streaming.downmix is audio.downmix


def test_the_documented_client_snippet_downmixes_the_same_way() -> None:
    code = re.search(r"(def downmix\(wave\):.*?\n    return mono\n)", DOCS.read_text(), re.S)
    assert code, "docs/deployment.md lost its downmix function"
    scope: dict = {"np": np}
    exec(code.group(1), scope)
    for name, (build, _) in CASES.items():
        data = build().astype(np.float32)
        assert np.array_equal(scope["downmix"](data), downmix(data)[0]), name
