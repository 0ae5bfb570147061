"""ONNX export of the whole classifier (raw waveform in, logits out) and its quantized variants.

The exported graph contains the feature extraction (the same `FeatureExtractor` the pipeline
uses, exported with the dynamo exporter, which handles the STFT), the training normalisation
and the network, so deployment needs onnxruntime and a WAV reader, no Python DSP.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from audioclf.deploy import (
    INPUT_NAME,
    ONNX_CLASSES_KEY,
    ONNX_N_SAMPLES_KEY,
    ONNX_SAMPLE_RATE_KEY,
    OUTPUT_NAME,
    ort_session,
)
from audioclf.fileio import atomic_path


class WaveformClassifier(nn.Module):
    """(batch, samples) mono waveform at the model's rate → (batch, classes) logits."""

    def __init__(self, extractor: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.classifier = classifier

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.extractor(waveform))


def export_onnx(model: nn.Module, n_samples: int, path: Path, opset: int, output_name: str = OUTPUT_NAME) -> None:
    """Dynamo export of `model` ((batch, n_samples) float32 in) with a dynamic batch axis, input
    named `waveform`; written atomically as a single file. `output_name` lets a test export the
    `FeatureExtractor` alone."""
    model = model.eval().cpu()
    # batch 2 in the example: with 1 the exporter may specialise the batch axis to a constant
    example = torch.zeros(2, n_samples)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with atomic_path(path) as tmp:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[output_name],
            # positional, not keyed by INPUT_NAME: the keys must be forward()'s own argument
            # names, which differ between modules (FeatureExtractor.forward takes `wave`)
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            verbose=False,
        )
        program.save(str(tmp), external_data=False)
    onnx.checker.check_model(str(path))


def deploy_copy(src: Path, dst: Path, classes: list[str], sample_rate: int, n_samples: int) -> None:
    """Copy the chosen variant to `dst` (atomically) with the class list, rate and clip length in
    the graph's metadata: `audioclf predict` checks them against the sidecar, so a sidecar from
    another model (same class count, other names or order) is refused instead of mislabelling."""
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(
        {
            ONNX_CLASSES_KEY: json.dumps(list(classes)),
            ONNX_SAMPLE_RATE_KEY: str(sample_rate),
            ONNX_N_SAMPLES_KEY: str(n_samples),
        }
    )
    onnx.helper.set_model_props(model, props)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))


session = ort_session  # the deploy contract's helper: the model is measured as it will be served


def run_onnx(sess, waves: np.ndarray, batch_size: int = 64) -> np.ndarray:
    out = [
        sess.run([OUTPUT_NAME], {INPUT_NAME: waves[i : i + batch_size].astype(np.float32)})[0]
        for i in range(0, len(waves), batch_size)
    ]
    return np.concatenate(out)


def quantize_fp16_weights(src: Path, dst: Path) -> None:
    """Store large float32 initializers as float16 with a Cast back to float32 in front of their
    consumers: half the file size, float32 compute (CPUs have no fast fp16 kernels)."""
    model = onnx.load(str(src))
    graph = model.graph
    new_inits, casts = [], []
    for init in graph.initializer:
        array = onnx.numpy_helper.to_array(init)
        if array.dtype != np.float32 or array.size < 1024:
            new_inits.append(init)
            continue
        half_name = f"{init.name}__fp16"
        new_inits.append(onnx.numpy_helper.from_array(array.astype(np.float16), half_name))
        casts.append(onnx.helper.make_node("Cast", [half_name], [init.name], to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    onnx.checker.check_model(str(dst))


def quantize_int8_dynamic(src: Path, dst: Path) -> None:
    """Int8 weights, activations quantized at run time; after `quant_pre_process` like the static
    variant (without it onnxruntime warns and may quantize fewer nodes)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with atomic_path(dst.with_suffix(".pre.onnx")) as pre, atomic_path(dst) as tmp:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(str(pre), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv", "Gemm"])
    dst.with_suffix(".pre.onnx").unlink(missing_ok=True)


class _Calibration:
    """onnxruntime CalibrationDataReader over a fixed array of waveforms."""

    def __init__(self, waves: np.ndarray, batch_size: int = 16) -> None:
        self._batches = [waves[i : i + batch_size] for i in range(0, len(waves), batch_size)]
        self._it = iter(self._batches)

    def get_next(self):
        batch = next(self._it, None)
        return None if batch is None else {INPUT_NAME: batch.astype(np.float32)}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def quantize_int8_static(src: Path, dst: Path, calibration: np.ndarray) -> None:
    """QDQ, signed int8 activations and per-channel weights (onnxruntime's recommended CNN setup),
    after `quant_pre_process`. Only Conv/Gemm are quantized: the STFT and mel filterbank stay
    float, since int8 cannot hold a power spectrum's dynamic range."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with atomic_path(dst.with_suffix(".pre.onnx")) as pre, atomic_path(dst) as tmp:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(tmp),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Conv", "Gemm"],
        )
    dst.with_suffix(".pre.onnx").unlink(missing_ok=True)


def median_latency_ms(fn: Callable[[], object], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
