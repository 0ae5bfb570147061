"""The inference API (`audioclf.load_model`) and its bounded-memory input: arrays of any rate,
channel count and supported dtype; chunked files; live streams (in-process and a subprocess
writing PCM in uneven chunks to `audioclf predict --stream`); stdin; `unknown` for silence and
low confidence; events; foreign, NaN, float64 and batch-ignoring models.

The model is test_export's tiny one (8 kHz, 0.5 s clips; hum / whistle / hiss).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper

from audioclf import load_model
from audioclf.audio import load_clip, resample
from audioclf.cli import main
from audioclf.deploy import ONNX_CLASSES_KEY, ONNX_N_SAMPLES_KEY, ONNX_SAMPLE_RATE_KEY
from audioclf.errors import AudioclfError
from audioclf.inference import SILENCE_DB, UNKNOWN
from audioclf.streaming import PcmDecoder, StreamResampler, Windower, window_starts
from tests.helpers import CLASSES, N_SAMPLES, SAMPLE_RATE, export_tiny_model, synth_clip
from tests.unit.test_predict import NO_TORCH

HUM, WHISTLE, HISS = range(3)
LOGIT_ATOL = 1e-5


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = export_tiny_model(tmp_path_factory.mktemp("model"))
    return path


@pytest.fixture(scope="module")
def model(model_path: Path):
    return load_model(model_path, threads=1)


@pytest.fixture(scope="module")
def long_wave() -> np.ndarray:
    """hum | whistle | hiss | hum, 0.5 s each, plus 0.13 s so the last window is end-aligned."""
    rng = np.random.default_rng(11)
    parts = [synth_clip(label, rng) for label in (HUM, WHISTLE, HISS, HUM)]
    return np.concatenate([*parts, synth_clip(HUM, rng, n=1040)])


def test_resampler_in_uneven_chunks_is_bit_exact_with_resampling_the_whole_signal():
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(30000)).astype(np.float32)
    for orig, target in [(44100, 16000), (16000, 8000), (8000, 22050), (11025, 8000)]:
        resampler, parts, i = StreamResampler(orig, target), [], 0
        while i < len(x):
            step = int(rng.integers(1, 2500))
            parts.append(resampler.push(x[i : i + step]))
            i += step
        parts.append(resampler.finish())
        assert np.array_equal(np.concatenate(parts), resample(x, orig, target)), (orig, target)
        assert len(resampler._buf) < 2 * resampler.reach + resampler.down  # bounded, not the whole signal


@pytest.mark.parametrize("n_total", [300, 400, 401, 1200, 1234])
@pytest.mark.parametrize("hop", [100, 300, 400])
def test_windower_places_windows_as_window_starts_does(n_total, hop):
    rng = np.random.default_rng(n_total + hop)
    x = rng.standard_normal(n_total).astype(np.float32)
    windower, windows, i = Windower(400, hop), [], 0
    while i < n_total:
        step = int(rng.integers(1, 450))
        windows += windower.push(x[i : i + step])
        i += step
    windows += windower.finish()
    assert [w.start for w in windows] == window_starts(n_total, 400, hop)
    for w in windows:
        np.testing.assert_array_equal(
            w.samples, np.pad(x[w.start : w.start + 400], (0, max(0, w.start + 400 - n_total)))
        )


def test_pcm_decoder_carries_partial_frames_over():
    frames = (np.arange(12, dtype=np.int16).reshape(6, 2) - 6) * 1000
    data = frames.tobytes()
    decoder = PcmDecoder("s16le", 2)
    got = [decoder.push(data[i : i + 3]) for i in range(0, len(data), 3)]  # cuts inside samples
    np.testing.assert_array_equal(np.concatenate(got), frames / 32768)
    assert decoder.pending == 0
    decoder.push(b"\x01\x02\x03")
    assert decoder.pending == 3


def test_array_file_and_stream_score_the_same_windows(model, long_wave, tmp_path):
    """An array, the file of it (decoded in blocks) and a stream of uneven chunks give the same
    windows, at the same positions, with logits within 1e-5; the aggregate is their mean."""
    path = tmp_path / "long.wav"
    sf.write(path, long_wave, SAMPLE_RATE, subtype="FLOAT")
    from_array = model.predict(long_wave, SAMPLE_RATE, hop=0.25)
    from_file = model.predict_file(path, hop=0.25)
    rng = np.random.default_rng(3)
    cuts = np.cumsum(rng.integers(1, 700, size=200))
    chunks = np.split(long_wave, cuts[cuts < len(long_wave)])
    streamed = list(model.stream(iter(chunks), SAMPLE_RATE, hop=0.25))
    starts = [s / SAMPLE_RATE for s in window_starts(len(long_wave), N_SAMPLES, N_SAMPLES // 2)]
    for windows in (from_array.windows, from_file.windows, streamed):
        assert [w.start_s for w in windows] == pytest.approx(starts)
        np.testing.assert_allclose(
            np.stack([w.logits for w in windows]), np.stack([w.logits for w in from_file.windows]), atol=LOGIT_ATOL
        )
    direct = model.logits(np.stack([long_wave[round(s * SAMPLE_RATE) :][:N_SAMPLES] for s in starts]))
    np.testing.assert_allclose(np.stack([w.logits for w in streamed]), direct, atol=LOGIT_ATOL)
    assert [w.label for w in streamed[::2][:4]] == ["hum", "whistle", "hiss", "hum"]
    np.testing.assert_allclose(from_file.scores, np.mean([w.scores for w in from_file.windows], axis=0))
    assert from_file.duration_s == pytest.approx(len(long_wave) / SAMPLE_RATE)


@pytest.mark.parametrize("layout", ["stereo float64", "int16 mono", "16 kHz stereo int16", "11025 Hz mono"])
def test_arrays_of_any_rate_channel_count_and_dtype(model, long_wave, tmp_path, layout):
    """Each layout equals the same audio written to a file and decoded as the pipeline does."""
    rate = {"16 kHz stereo int16": 16000, "11025 Hz mono": 11025}.get(layout, SAMPLE_RATE)
    mono = resample(long_wave, SAMPLE_RATE, rate) if rate != SAMPLE_RATE else long_wave
    wave = np.stack([mono, mono], 1) if "stereo" in layout else mono
    if "int16" in layout:
        wave = np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)
    elif "float64" in layout:
        wave = wave.astype(np.float64)
    pred = model.predict(wave, rate, hop=0.5)
    path = tmp_path / "x.wav"
    sf.write(path, wave, rate, subtype="PCM_16" if wave.dtype == np.int16 else "FLOAT")
    reference = load_clip(path, SAMPLE_RATE, None)  # the pipeline's decode, downmix and resampling
    starts = window_starts(len(reference), N_SAMPLES, N_SAMPLES)
    want = model.logits(np.stack([reference[s : s + N_SAMPLES] for s in starts]))
    np.testing.assert_allclose(np.stack([w.logits for w in pred.windows]), want, atol=1e-4)
    assert pred.label == "hum" and pred.duration_s == pytest.approx(len(wave) / rate)


@pytest.mark.parametrize(
    ("wave", "message"),
    [
        (np.zeros(100, dtype=np.int32), "dtype int32 is not supported; pass float32/float64 in [-1, 1] or int16"),
        (np.zeros(100, dtype=np.uint8), "dtype uint8 is not supported"),
        ([0.0, 0.1], "expected a numpy array, got list"),
        (np.zeros((2, 100, 1), dtype=np.float32), "shape (2, 100, 1); pass (samples,) or (samples, channels)"),
        (np.zeros((2, 4000), dtype=np.float32), "has 4000 channels; pass (samples, channels), e.g. wave.T"),
        (np.zeros(0, dtype=np.float32), "shape (0,)"),
    ],
)
def test_bad_arrays_are_one_line_errors(model, wave, message):
    with pytest.raises(AudioclfError) as info:
        model.predict(wave, SAMPLE_RATE)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_rates_and_hops_are_one_line_errors(model):
    wave = np.zeros(100, dtype=np.float32)
    for rate, message in [(8000.0, "sample_rate must be an integer"), (10, "sample_rate 10 Hz is outside")]:
        with pytest.raises(AudioclfError, match=message):
            model.predict(wave, rate)
    with pytest.raises(AudioclfError, match=r"hop must be in \(0, 0.5\] s"):
        model.predict(wave, SAMPLE_RATE, hop=2.0)
    with pytest.raises(AudioclfError, match="min_prob must be in"):
        model.with_labeling(min_prob=1.5)


def test_silence_and_near_silence_are_unknown_at_the_documented_floor(model, long_wave):
    """Digital silence and noise below SILENCE_DB (-60 dBFS RMS) are `unknown` whatever the
    softmax says; the same noise 20 dB louder gets a label. Silent windows stay out of the mean."""
    assert SILENCE_DB == -60.0
    rng = np.random.default_rng(5)
    noise = rng.standard_normal(N_SAMPLES).astype(np.float32)
    quiet = noise * 10 ** (-70 / 20)  # -70 dBFS RMS
    loud = noise * 10 ** (-40 / 20)
    for wave in (np.zeros(N_SAMPLES, np.float32), quiet):
        pred = model.predict(wave, SAMPLE_RATE)
        assert pred.label == UNKNOWN and pred.windows[0].silent and pred.windows[0].label == UNKNOWN
        assert pred.top[0][0] in CLASSES  # the scores are still there
    assert model.predict(loud, SAMPLE_RATE).label in CLASSES
    assert model.with_labeling(silence_db=None).predict(np.zeros(N_SAMPLES, np.float32), SAMPLE_RATE).label in CLASSES
    padded = np.concatenate([long_wave[:N_SAMPLES], np.zeros(3 * N_SAMPLES, np.float32)])  # ESC-50-like padding
    pred = model.predict(padded, SAMPLE_RATE, hop=0.5)
    assert [w.label for w in pred.windows] == ["hum", UNKNOWN, UNKNOWN, UNKNOWN]
    assert pred.label == "hum" and pred.probability == pytest.approx(pred.windows[0].probability)


def test_min_prob_makes_unsure_windows_unknown(model, long_wave):
    pred = model.predict(long_wave, SAMPLE_RATE, hop=0.25)
    threshold = float(np.median([w.probability for w in pred.windows]))
    strict = model.with_labeling(min_prob=threshold).predict(long_wave, SAMPLE_RATE, hop=0.25)
    for a, b in zip(pred.windows, strict.windows, strict=True):
        assert b.label == (a.label if a.probability >= threshold else UNKNOWN)
    assert any(w.label == UNKNOWN for w in strict.windows) and any(w.label != UNKNOWN for w in strict.windows)


def test_events_merge_consecutive_windows_and_unknown_breaks_them(model, long_wave):
    rng = np.random.default_rng(8)
    wave = np.concatenate([long_wave[: 2 * N_SAMPLES], np.zeros(N_SAMPLES, np.float32), synth_clip(HUM, rng)])
    events = model.predict(wave, SAMPLE_RATE, hop=0.5).events
    assert [(e.onset_s, e.offset_s, e.label) for e in events] == [
        (0, 0.5, "hum"),
        (0.5, 1.0, "whistle"),
        (1.5, 2.0, "hum"),
    ]
    hum_twice = np.concatenate([synth_clip(HUM, rng), synth_clip(HUM, rng)])
    (event,) = model.predict(hum_twice, SAMPLE_RATE, hop=0.25).events
    assert (event.onset_s, event.offset_s, event.n_windows) == (0, 1.0, 3) and 0 < event.score <= 1


def test_temperature_from_the_sidecar_calibrates_the_probabilities(model_path, long_wave, tmp_path):
    hot = tmp_path / "model.onnx"
    hot.write_bytes(model_path.read_bytes())
    side = json.loads(model_path.with_name("model.onnx.json").read_text())
    (tmp_path / "model.onnx.json").write_text(json.dumps({**side, "temperature": 2.0}))
    plain, warm = load_model(model_path), load_model(hot)
    a, b = plain.predict(long_wave, SAMPLE_RATE), warm.predict(long_wave, SAMPLE_RATE)
    np.testing.assert_allclose(a.windows[0].logits, b.windows[0].logits)
    assert b.windows[0].probability < a.windows[0].probability  # softer, same argmax
    assert [w.label for w in a.windows] == [w.label for w in b.windows]
    (tmp_path / "model.onnx.json").write_text(json.dumps({**side, "temperature": -1}))
    with pytest.raises(AudioclfError, match="invalid temperature"):
        load_model(hot)


# -- models predict must not trust ------------------------------------------------------------


def graph(path: Path, nodes, inits, in_type=TensorProto.FLOAT, out_shape=("batch", 3), metadata=True) -> Path:
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info("waveform", in_type, ["batch", N_SAMPLES])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(out_shape))],
            inits,
        ),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    model.ir_version = 9
    if metadata:
        meta = {
            ONNX_CLASSES_KEY: json.dumps(CLASSES),
            ONNX_SAMPLE_RATE_KEY: str(SAMPLE_RATE),
            ONNX_N_SAMPLES_KEY: str(N_SAMPLES),
        }
        helper.set_model_props(model, meta)
    onnx.save(model, str(path))
    side = {
        "classes": CLASSES,
        "sample_rate": SAMPLE_RATE,
        "duration_s": 0.5,
        "n_samples": N_SAMPLES,
        "input": "waveform",
        "output": "logits",
        "variant": "fp32",
    }
    path.with_name(path.name + ".json").write_text(json.dumps(side))
    return path


def matmul(path: Path, weight: np.ndarray, **kw) -> Path:
    w = numpy_helper.from_array(weight.astype(np.float32), "W")
    return graph(path, [helper.make_node("MatMul", ["waveform", "W"], ["logits"])], [w], **kw)


def weights(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((N_SAMPLES, 3)) * 0.01


def test_a_foreign_model_needs_the_opt_in(tmp_path, capsys):
    foreign = matmul(tmp_path / "foreign.onnx", weights(), metadata=False)
    with pytest.raises(AudioclfError, match=r"lacks audioclf's graph metadata .* allow_foreign=True"):
        load_model(foreign)
    assert load_model(foreign, allow_foreign=True).classes == tuple(CLASSES)
    clip = tmp_path / "clip.wav"
    sf.write(clip, synth_clip(HUM, np.random.default_rng(0)), SAMPLE_RATE)
    assert main(["predict", str(clip), "--model", str(foreign)]) == 2
    assert "--allow-foreign-model" in capsys.readouterr().err
    assert main(["predict", str(clip), "--model", str(foreign), "--allow-foreign-model"]) == 0


def test_non_finite_outputs_are_a_per_file_error_and_json_stays_valid(tmp_path, capsys):
    # sqrt of the waveform: finite on silence (the load-time probe), NaN on any negative sample
    w = numpy_helper.from_array(weights().astype(np.float32), "W")
    nodes = [helper.make_node("Sqrt", ["waveform"], ["root"]), helper.make_node("MatMul", ["root", "W"], ["logits"])]
    nan_model = graph(tmp_path / "nan.onnx", nodes, [w])
    rng = np.random.default_rng(0)
    good, bad = tmp_path / "silent.wav", tmp_path / "tone.wav"
    sf.write(good, np.zeros(N_SAMPLES, np.float32), SAMPLE_RATE)
    sf.write(bad, synth_clip(HUM, rng) + 0.1, SAMPLE_RATE, subtype="FLOAT")
    code = main(["predict", str(good), str(bad), "--model", str(nan_model), "--json"])
    out, err = capsys.readouterr()
    doc = json.loads(out)  # strict: a NaN would not parse with allow_nan=False semantics below
    json.loads(out, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert code == 1 and [p["path"] for p in doc["predictions"]] == [str(good)]
    (error,) = doc["errors"]
    assert error["path"] == str(bad) and "non-finite logits" in error["error"]
    assert err.count("\n") == 1 and "NaN" in err


def test_float64_or_batch_ignoring_models_are_one_line_errors(tmp_path, capsys):
    f64 = tmp_path / "f64.onnx"
    w = numpy_helper.from_array(weights(), "W")  # float64 weights and input
    graph(
        f64,
        [helper.make_node("MatMul", ["waveform", "W"], ["m"]), helper.make_node("Cast", ["m"], ["logits"], to=1)],
        [w],
        in_type=TensorProto.DOUBLE,
    )
    # takes the first window only: (1, 3) whatever the batch
    first = tmp_path / "first.onnx"
    starts, ends = (numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((0, "s"), (1, "e")))
    nodes = [
        helper.make_node("Slice", ["waveform", "s", "e"], ["one"]),
        helper.make_node("MatMul", ["one", "W"], ["logits"]),
    ]
    graph(first, nodes, [numpy_helper.from_array(weights().astype(np.float32), "W"), starts, ends], out_shape=(1, 3))
    clip = tmp_path / "clip.wav"
    sf.write(clip, np.zeros(N_SAMPLES, np.float32), SAMPLE_RATE)
    for path, message in [(f64, "takes tensor(double) input"), (first, "ignores its batch axis")]:
        code = main(["predict", str(clip), "--model", str(path)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err


# -- stdin and live streams, in a subprocess (torch made unimportable) -------------------------


def _default_sigint() -> None:
    # a child inherits an ignored SIGINT (a shell's background job); Python then installs no Ctrl-C
    # handler, so restore the default a terminal user has
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", NO_TORCH, "predict", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_default_sigint,
        **kw,
    )


WRITER = """
import sys, time, numpy as np
data = np.load(sys.argv[1]).tobytes()
rng = np.random.default_rng(1)
i = 0
while i < len(data):
    n = int(rng.integers(1, 3001))  # uneven, cutting frames and samples
    sys.stdout.buffer.write(data[i : i + n]); sys.stdout.buffer.flush(); i += n
    time.sleep(0.001)
"""


@pytest.mark.parametrize(("rate", "fmt"), [(SAMPLE_RATE, "f32le"), (16000, "s16le")])
def test_stream_from_a_subprocess_equals_the_file_path(model, model_path, long_wave, tmp_path, rate, fmt):
    """A writer process sends stereo PCM in uneven chunks; `predict --stream` gives one JSON line
    per window whose scores equal the file path's windows at the same positions (at the model's
    rate and resampled: the streaming resampler is exact)."""
    mono = resample(long_wave, SAMPLE_RATE, rate) if rate != SAMPLE_RATE else long_wave
    stereo = np.stack([mono, mono], 1)
    if fmt == "s16le":
        stereo = np.round(stereo * 32767).astype("<i2")
    np.save(tmp_path / "pcm.npy", stereo.astype("<f4") if fmt == "f32le" else stereo)
    path = tmp_path / "same.wav"
    sf.write(path, stereo, rate, subtype="FLOAT" if fmt == "f32le" else "PCM_16")
    want = model.predict_file(path, hop=0.25).windows

    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "pcm.npy")], stdout=subprocess.PIPE)
    args = ["--stream", "--rate", str(rate), "--channels", "2", "--format", fmt, "--model", str(model_path)]
    reader = cli([*args, "--hop", "0.25", "--all-scores", "--events", "--threads", "1"], stdin=writer.stdout)
    writer.stdout.close()
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0 and writer.wait() == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["schema_version"] == 2
    windows = [line for line in lines if line["type"] == "window"]
    assert [w["start"] for w in windows] == [w.start_s for w in want]
    got = np.array([[w["scores"][c] for c in CLASSES] for w in windows])
    np.testing.assert_allclose(got, np.stack([w.scores for w in want]), atol=2e-6)  # 6 decimals printed
    events = [line for line in lines if line["type"] == "event"]
    assert [e["label"] for e in events][:4] == ["hum", "whistle", "hiss", "hum"]


def test_stream_ctrl_c_and_partial_frames(model_path):
    """SIGINT mid-stream: exit 130, every line printed is whole JSON. EOF inside a frame: the
    partial frame is dropped with a warning, exit 0."""
    reader = cli(["--stream", "--rate", str(SAMPLE_RATE), "--model", str(model_path)], stdin=subprocess.PIPE)
    rng = np.random.default_rng(2)
    pcm = (np.concatenate([synth_clip(HUM, rng) for _ in range(4)]) * 32767).astype("<i2").tobytes()
    reader.stdin.write(pcm)
    reader.stdin.flush()
    first = [reader.stdout.readline() for _ in range(3)]  # header + the first windows, before EOF
    time.sleep(0.2)
    reader.send_signal(signal.SIGINT)
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 130 and "stream interrupted" in err.decode()
    assert all(json.loads(line) for line in first + out.splitlines())
    odd = subprocess.run(
        [sys.executable, "-c", NO_TORCH, "predict", "--stream", "--rate", str(SAMPLE_RATE), "--model", str(model_path)],
        input=pcm[:-1],
        capture_output=True,
        timeout=60,
    )
    assert odd.returncode == 0 and "last 1 bytes were dropped" in odd.stderr.decode()
    lines = [json.loads(line) for line in odd.stdout.decode().splitlines()]
    # 15999 whole frames: the last window ends at the last whole frame (the end-aligned rule)
    assert [w["start"] for w in lines[1:]] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, (15999 - N_SAMPLES) / SAMPLE_RATE]


def test_predict_reads_a_wav_or_flac_from_stdin(model, model_path, long_wave, tmp_path):
    for suffix in ("wav", "flac"):
        path = tmp_path / f"clip.{suffix}"
        sf.write(path, long_wave, SAMPLE_RATE)
        proc = subprocess.run(
            [sys.executable, "-c", NO_TORCH, "predict", "-", "--model", str(model_path), "--json", "--hop", "0.5"],
            input=path.read_bytes(),
            capture_output=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        (pred,) = json.loads(proc.stdout)["predictions"]
        want = model.predict_file(path, hop=0.5)
        assert pred["path"] == "-" and [s["label"] for s in pred["segments"]] == [w.label for w in want.windows]
        assert pred["probability"] == pytest.approx(want.probability, abs=1e-6)
    big = subprocess.run(
        [sys.executable, "-c", NO_TORCH, "predict", "-", "--model", str(model_path), "--stdin-max-mb", "1"],
        input=b"\0" * (2 * 2**20),
        capture_output=True,
        timeout=60,
    )
    assert big.returncode == 1 and "more than 1 MiB on stdin" in big.stderr.decode()
