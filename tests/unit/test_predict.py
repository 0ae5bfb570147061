"""`audioclf predict`: generated clips of three kinds (shorter than, exactly, and 3× the model's
clip), folders, a corrupt file, the three output formats, sidecar checks, and a run where
`import torch` fails.

The model is test_export's tiny one (8 kHz, 0.5 s clips; classes hum / whistle / hiss), trained
for a few steps so predicted labels are meaningful, exported once for this module.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclf.audio import fix_length, load_clip
from audioclf.cli import main
from audioclf.metrics import softmax
from audioclf.streaming import window_starts
from tests.helpers import CLASSES, DURATION_S, N_SAMPLES, SAMPLE_RATE, export_tiny_model, synth_clip

HUM, WHISTLE, HISS = range(3)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = export_tiny_model(tmp_path_factory.mktemp("model"))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder of clips (one nested), the long one being hum | whistle | hiss, 0.5 s each."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(7)
    paths = {
        "short": root / "short.wav",  # 0.2 s: padded as in training
        "exact": root / "exact.flac",  # exactly the model's 0.5 s
        "long": root / "long.wav",  # 1.5 s: a timeline
        "ogg": root / "nested" / "whistle_16k_stereo.ogg",  # other rate, two channels, lossy
        "corrupt": root / "corrupt.wav",
    }
    sf.write(paths["short"], synth_clip(WHISTLE, rng, n=1600), SAMPLE_RATE)
    sf.write(paths["exact"], synth_clip(HUM, rng), SAMPLE_RATE)
    long = np.concatenate([synth_clip(label, rng) for label in (HUM, WHISTLE, HISS)])
    sf.write(paths["long"], long, SAMPLE_RATE, subtype="FLOAT")
    paths["ogg"].parent.mkdir()
    tone = np.sin(2 * np.pi * 2500 * np.arange(16000) / 16000) * 0.4
    sf.write(paths["ogg"], np.stack([tone, tone], 1), 16000, format="OGG", subtype="VORBIS")
    paths["corrupt"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 20)
    (root / "notes.txt").write_text("not audio: folders are searched by suffix")
    (root / "._exact.flac").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork, skipped
    return paths


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def predict_json(paths: list[Path], model: Path, capsys, *extra: str) -> dict:
    code, out, err = run([*map(str, paths), "--model", str(model), "--json", *extra], capsys)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize(
    ("n_total", "hop", "expected"),
    [
        (300, 100, [0]),  # shorter than a window: one padded window
        (400, 100, [0]),  # exactly one window
        (1200, 400, [0, 400, 800]),
        (1200, 200, [0, 200, 400, 600, 800]),
        (1200, 300, [0, 300, 600, 800]),  # the last hop falls short: one window ends at the end
        (401, 400, [0, 1]),
    ],
)
def test_window_starts_cover_the_clip(n_total, hop, expected):
    starts = window_starts(n_total, 400, hop)
    assert starts == expected
    assert starts[-1] + 400 >= n_total and all(b - a <= hop for a, b in itertools.pairwise(starts))


def test_folder_with_a_corrupt_file_predicts_the_others_and_exits_1(model, clips, capsys):
    missing = clips["long"].parent / "missing.wav"
    code, out, err = run([str(clips["long"].parent), str(missing), "--model", str(model)], capsys)
    assert code == 1
    errors = err.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"audioclf: error: {clips['corrupt']}: cannot decode audio")
    assert errors[1] == f"audioclf: error: {missing}: no such file or folder"
    lines = {line.split()[0]: line for line in out.splitlines() if not line.startswith(" ")}
    for name in ("short", "exact", "long", "ogg"):
        assert str(clips[name]) in lines  # recursive, and not stopped by the corrupt file
    assert lines[str(clips["exact"])].split()[3] == "hum"
    assert lines[str(clips["ogg"])].split()[3] == "whistle"
    assert "notes.txt" not in out and "._exact" not in out + err


def test_long_clip_gives_a_timeline_of_windows(model, clips, capsys):
    doc = predict_json([clips["long"]], model, capsys, "--hop", "0.5")
    (pred,) = doc["predictions"]
    assert pred["duration_s"] == pytest.approx(3 * DURATION_S)
    assert [(s["start"], s["end"]) for s in pred["segments"]] == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5)]
    assert [s["label"] for s in pred["segments"]] == ["hum", "whistle", "hiss"]
    assert doc["errors"] == [] and doc["window_s"] == DURATION_S and doc["variant"] == "fp32"


def test_default_hop_is_half_a_clip_and_odd_hops_end_at_the_end(model, clips, capsys):
    default = predict_json([clips["long"]], model, capsys)["predictions"][0]["segments"]
    assert [s["start"] for s in default] == [0.0, 0.25, 0.5, 0.75, 1.0]
    odd = predict_json([clips["long"]], model, capsys, "--hop", "0.4")["predictions"][0]["segments"]
    assert [(s["start"], s["end"]) for s in odd] == [(0.0, 0.5), (0.4, 0.9), (0.8, 1.3), (1.0, 1.5)]


def test_windows_and_aggregate_equal_scoring_the_cut_clips(model, clips, capsys):
    """Each segment is the model on that slice of the file; the file's label is the mean of the
    window probabilities."""
    import onnxruntime as ort

    pred = predict_json([clips["long"]], model, capsys, "--hop", "0.5", "--top-k", "3")["predictions"][0]
    wave = load_clip(clips["long"], SAMPLE_RATE, None)
    windows = np.stack([wave[i * N_SAMPLES : (i + 1) * N_SAMPLES] for i in range(3)])
    probs = softmax(ort.InferenceSession(str(model)).run(None, {"waveform": windows})[0].astype(np.float64))
    assert [s["probability"] for s in pred["segments"]] == pytest.approx(probs.max(1).tolist(), abs=1e-5)
    mean = probs.mean(0)
    assert {t["label"]: t["probability"] for t in pred["top_k"]} == pytest.approx(
        dict(zip(CLASSES, mean.tolist(), strict=True)), abs=1e-5
    )
    assert pred["label"] == CLASSES[int(mean.argmax())]


def test_short_and_exact_clips_are_one_window_padded_as_in_training(model, clips, capsys):
    import onnxruntime as ort

    doc = predict_json([clips["short"], clips["exact"]], model, capsys, "--top-k", "1")
    short, exact = doc["predictions"]
    assert short["duration_s"] == 0.2 and len(short["top_k"]) == 1
    (segment,) = short["segments"]
    assert (segment["start"], segment["end"], segment["label"]) == (0.0, 0.2, "whistle")
    assert segment["probability"] == pytest.approx(short["probability"])  # one window: it is the clip
    padded = fix_length(load_clip(clips["short"], SAMPLE_RATE, None), N_SAMPLES)[None]
    want = softmax(ort.InferenceSession(str(model)).run(None, {"waveform": padded})[0].astype(np.float64))[0]
    assert short["probability"] == pytest.approx(want.max(), abs=1e-5)
    assert [(s["start"], s["end"]) for s in exact["segments"]] == [(0.0, 0.5)] and exact["label"] == "hum"


def test_csv_output_parses(model, clips, capsys):
    code, out, _ = run(
        [str(clips["exact"]), str(clips["long"]), "--model", str(model), "--csv", "--hop", "0.5"], capsys
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    clip_rows = [r for r in rows if r["scope"] == "clip"]
    window_rows = [r for r in rows if r["scope"] == "window"]
    assert [(r["path"], r["rank"]) for r in clip_rows] == [
        (str(p), str(k)) for p in (clips["exact"], clips["long"]) for k in (1, 2, 3)
    ]
    assert sum(float(r["probability"]) for r in clip_rows[:3]) == pytest.approx(1, abs=1e-4)  # all 3 classes
    assert [(float(r["start_s"]), float(r["end_s"]), r["label"]) for r in window_rows] == [
        (0.0, 0.5, "hum"),
        (0.5, 1.0, "whistle"),
        (1.0, 1.5, "hiss"),
    ]


def test_a_model_can_be_shipped_alone_under_any_name(model, clips, tmp_path, capsys):
    shipped = tmp_path / "ship" / "sounds.onnx"
    shipped.parent.mkdir()
    shutil.copy(model, shipped)
    shutil.copy(model.with_name("model.onnx.json"), tmp_path / "ship" / "sounds.onnx.json")
    code, out, _ = run([str(clips["exact"]), "--model", str(shipped)], capsys)
    assert code == 0 and "hum" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": ["hum", "whistle"]}, "2 classes but"),
        ({"n_samples": 8000, "duration_s": 1.0}, "n_samples 8000 but"),
        ({"input": "audio"}, "input 'audio' but"),
        ({"output": "probs"}, "output 'probs' but"),
        ({"n_samples": 4001}, "≠ n_samples 4001"),
        ({"sample_rate": "8k"}, "missing or invalid sample_rate"),
        ({"format": 99}, "format 99 is not one this version reads (1..2); re-run quantize"),
        (None, "sidecar not found"),
    ],
)
def test_sidecar_that_disagrees_with_the_model_is_one_clear_error(model, clips, tmp_path, capsys, change, message):
    bad = tmp_path / "model.onnx"
    shutil.copy(model, bad)
    if change is not None:
        side = json.loads(model.with_name("model.onnx.json").read_text())
        (tmp_path / "model.onnx.json").write_text(json.dumps({**side, **change}))
    code, out, err = run([str(clips["exact"]), "--model", str(bad)], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"audioclf: error: {tmp_path / 'model.onnx.json'}: ") and err.count("\n") == 1
    assert message in err


def test_a_sidecar_written_before_the_format_version_still_loads(model, clips, tmp_path, capsys):
    old = tmp_path / "model.onnx"
    shutil.copy(model, old)
    side = json.loads(model.with_name("model.onnx.json").read_text())
    assert side.pop("format") == 2
    (tmp_path / "model.onnx.json").write_text(json.dumps(side))
    assert predict_json([clips["exact"]], old, capsys)["predictions"][0]["label"] in CLASSES


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hop", "0.6"], "--hop must be in (0, 0.5]"),
        (["--hop", "0"], "--hop must be in"),
        (["--top-k", "0"], "--top-k must be >= 1"),
    ],
)
def test_bad_options_exit_2(model, clips, capsys, argv, message):
    code, _, err = run([str(clips["exact"]), "--model", str(model), *argv], capsys)
    assert code == 2 and message in err


def test_missing_or_broken_model_exit_2(clips, tmp_path, capsys):
    code, _, err = run([str(clips["exact"]), "--model", str(tmp_path / "none.onnx")], capsys)
    assert code == 2 and "none.onnx: model not found" in err
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    (tmp_path / "broken.onnx.json").write_text(
        json.dumps(
            {"classes": CLASSES, "sample_rate": 8000, "n_samples": 4000, "input": "waveform", "output": "logits"}
        )
    )
    code, _, err = run([str(clips["exact"]), "--model", str(broken)], capsys)
    assert code == 2 and "broken.onnx: onnxruntime cannot load it" in err and err.count("\n") == 1


# A meta-path hook, not `sys.modules["torch"] = None`: scipy's array-API helpers look torch up in
# sys.modules and would crash on the None, a failure no torch-free install ever sees.
NO_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed here")

sys.meta_path.insert(0, NoTorch())
from audioclf.cli import main
code = main(sys.argv[1:])
assert not [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchaudio"))]
sys.exit(code)
"""


def test_predict_runs_where_torch_cannot_be_imported(model, clips, tmp_path):
    argv = ["predict", str(clips["long"]), str(clips["ogg"]), "--model", str(model), "--json", "--threads", "1"]
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [p["label"] for p in doc["predictions"]][1] == "whistle"
    assert len(doc["predictions"][0]["segments"]) == 5
