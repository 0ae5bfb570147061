"""The raw-waveform ONNX export: its feature subgraph equals the pipeline's features, its logits
equal PyTorch's, and every quantized variant loads and runs in onnxruntime.

One tiny untrained model (8 kHz, 0.5 s clips, convnet [4, 8]) is exported once per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

from audioclf import export
from audioclf.audio import load_clip
from audioclf.config import FeaturesConfig
from audioclf.features import FeatureExtractor, build_cache
from tests.helpers import (
    CLASSES,
    N_SAMPLES,
    OPSET,
    SAMPLE_RATE,
    export_tiny_model,
    tiny_features,
    waveforms,
)

FEATURES = tiny_features()
DB_ATOL = 1e-2  # dB; float32 STFT reordering moves bins ~70 dB below the peak by ~1e-3 dB


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, export.WaveformClassifier]:
    return export_tiny_model(tmp_path_factory.mktemp("export"))


def test_graph_takes_a_raw_waveform_with_a_dynamic_batch(exported):
    path, _ = exported
    sess = export.session(path, 1)
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, out.name) == (export.INPUT_NAME, export.OUTPUT_NAME)
    assert isinstance(inp.shape[0], str) and inp.shape[1] == N_SAMPLES
    assert out.shape[1] == len(CLASSES)
    for batch in (1, 5):
        assert export.run_onnx(sess, waveforms(batch)[0]).shape == (batch, len(CLASSES))


def test_onnx_logits_match_pytorch(exported):
    path, full = exported
    waves, labels = waveforms(30, seed=1)  # clips the model never saw
    onnx_logits = export.run_onnx(export.session(path, 1), waves, batch_size=7)
    with torch.no_grad():
        torch_logits = full(torch.from_numpy(waves)).numpy()
    assert np.mean(torch_logits.argmax(1) == labels) >= 0.9  # it learned: argmax agreement is not vacuous
    assert np.array_equal(onnx_logits.argmax(1), torch_logits.argmax(1))  # 100 % agreement
    assert np.max(np.abs(onnx_logits - torch_logits)) < 1e-4


@pytest.mark.parametrize(
    ("kind", "power"),
    [
        ("logmel", 2.0),
        ("logmel", 1.0),
        ("mfcc", 2.0),
        ("spectrogram", 2.0),
        ("spectrogram", 1.0),
        ("stft_complex", 2.0),
    ],
)
def test_onnx_feature_subgraph_matches_pytorch(tmp_path, kind, power):
    """The exported front-end (a DFT Conv1d and a mel MatMul for every kind but mfcc) computes
    the pipeline's features."""
    cfg = FeaturesConfig(**{**FEATURES.__dict__, "kind": kind, "power": power})
    extractor = FeatureExtractor(cfg, SAMPLE_RATE).eval()
    path = tmp_path / f"{kind}.onnx"
    export.export_onnx(extractor, N_SAMPLES, path, OPSET, output_name="features")
    waves = waveforms(4, seed=2)[0]
    waves[-1] = 0  # silence: the top_db clamp's corner case
    got = export.session(path, 1).run(["features"], {export.INPUT_NAME: waves})[0]
    with torch.no_grad():
        want = extractor(torch.from_numpy(waves)).numpy()
    assert got.shape == want.shape
    atol = 1e-4 * np.abs(want).max() if kind in ("stft_complex", "spectrogram") else DB_ATOL
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ("STFT" in ops) == (kind == "mfcc")  # torchaudio's graph only where no faster one exists


def test_onnx_features_match_the_pipeline_cache(tmp_path):
    """Files → `build_cache` (the features stage) vs the same files → load_clip → ONNX features:
    deployment sees what training saw, including resampling, downmix and padding."""
    waves = waveforms(3, seed=3)[0]
    paths = []
    for i, wave in enumerate(waves):
        paths.append(tmp_path / f"clip{i}.wav")
        stereo_16k = np.stack([wave, wave], 1).repeat(2, axis=0)  # other rate and two channels
        sf.write(paths[-1], stereo_16k[: 3000 + 1000 * i], 2 * SAMPLE_RATE, subtype="FLOAT")
    extractor = FeatureExtractor(FEATURES, SAMPLE_RATE)
    build_cache(paths, tmp_path / "features.npy", extractor, SAMPLE_RATE, N_SAMPLES, dtype="float32", workers=1)
    cached = np.load(tmp_path / "features.npy")
    onnx_path = tmp_path / "features.onnx"
    export.export_onnx(extractor, N_SAMPLES, onnx_path, OPSET, output_name="features")
    clips = np.stack([load_clip(p, SAMPLE_RATE, N_SAMPLES) for p in paths])
    got = export.session(onnx_path, 1).run(["features"], {export.INPUT_NAME: clips})[0]
    np.testing.assert_allclose(got, cached, rtol=0, atol=DB_ATOL)


@pytest.fixture(scope="module")
def variants(exported, tmp_path_factory) -> dict[str, Path]:
    fp32, _ = exported
    out = tmp_path_factory.mktemp("variants")
    paths = {v: out / f"{v}.onnx" for v in ("fp16", "int8_dynamic", "int8_static")}
    export.quantize_fp16_weights(fp32, paths["fp16"])
    export.quantize_int8_dynamic(fp32, paths["int8_dynamic"])
    export.quantize_int8_static(fp32, paths["int8_static"], waveforms(15, seed=4)[0])
    return {"fp32": fp32, **paths}


@pytest.mark.parametrize("variant", ["fp16", "int8_dynamic", "int8_static"])
def test_variants_load_and_run(variants, variant):
    waves, _ = waveforms(12, seed=5)
    reference = export.run_onnx(export.session(variants["fp32"], 1), waves)
    logits = export.run_onnx(export.session(variants[variant], 1), waves)
    assert logits.shape == reference.shape and np.isfinite(logits).all()
    # three well-separated classes: quantization noise must not flip a prediction
    assert np.array_equal(logits.argmax(1), reference.argmax(1))
    if variant == "fp16":  # weights rounded to half precision, compute in float32
        np.testing.assert_allclose(logits, reference, rtol=0, atol=5e-2)
    assert not variants[variant].with_suffix(".pre.onnx").exists()  # int8_static's temp file is cleaned


def test_variant_graphs_are_what_they_claim(variants):
    import onnx

    def ops(v: str) -> set[str]:
        return {n.op_type for n in onnx.load(str(variants[v])).graph.node}

    assert "ConvInteger" in ops("int8_dynamic")
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops("int8_static")
    # the features stay float inside every variant: the DFT Conv1d and the mel MatMul take float32
    for v in ("int8_static", "int8_dynamic"):
        model = onnx.load(str(variants[v]))
        front = [n for n in model.graph.node if n.name in set(export.front_end_nodes(model))]
        assert {n.op_type for n in front} == {"Conv", "MatMul"}
        assert all(i.endswith(export.FRONT_END_WEIGHTS) for n in front for i in n.input[1:2])
    fp16_inits = onnx.load(str(variants["fp16"])).graph.initializer
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in fp16_inits)
    assert variants["fp16"].stat().st_size < variants["fp32"].stat().st_size


def test_deployment_sidecar_describes_the_graph(exported):
    path, _ = exported
    side = json.loads(path.with_name("model.onnx.json").read_text())
    sess = export.session(path, 1)
    assert side["input"] == sess.get_inputs()[0].name and side["output"] == sess.get_outputs()[0].name
    assert side["n_samples"] == round(side["duration_s"] * side["sample_rate"]) == N_SAMPLES
    assert side["classes"] == CLASSES and side["variant"] == "fp32"


def test_interleaved_latency_rotates_the_order_and_takes_each_candidates_median():
    """A fake clock: candidate `a` costs 2 s per call, `b` 1 s, and one round's first call is
    hit by a 10 s spike; the rotation spreads the spikes, the medians ignore them."""
    now, calls = [0.0], []

    def candidate(name: str, cost: float):
        def run() -> None:
            calls.append(name)
            spike = 10.0 if len(calls) == 2 * 3 + 1 else 0.0  # the first timed call
            now[0] += cost + spike

        return run

    ms = export.interleaved_latency_ms(
        {"a": candidate("a", 2.0), "b": candidate("b", 1.0)}, rounds=5, warmup=3, clock=lambda: now[0]
    )
    assert ms == {"a": 2000.0, "b": 1000.0}
    timed = calls[6:]
    assert timed[:4] == ["a", "b", "b", "a"] and len(timed) == 10  # rotated each round
