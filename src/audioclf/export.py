"""ONNX export of the whole classifier (raw waveform in, logits out) and its quantized variants.

The exported graph contains the feature extraction (the same `FeatureExtractor` the pipeline
uses, exported with the dynamo exporter, which handles the STFT), the training normalisation
and the network, so deployment needs onnxruntime and a WAV reader, no Python DSP.
"""

from __future__ import annotations

import json
import math
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
from audioclf.features import FeatureExtractor
from audioclf.fileio import atomic_path


class ConvSpectrum(nn.Module):
    """The STFT as one strided Conv1d whose kernel is the windowed DFT (cosine and sine rows), so
    onnxruntime runs it as one im2col + GEMM (its `STFT` op took a third of a 5 s clip's time).
    Same framing as `torch.stft(center=True, pad_mode="reflect")`: the window of `win_length`
    sits centred in the `n_fft` frame, so only its non-zero taps are kept in the kernel.
    (batch, samples) → real, imaginary parts, each (batch, n_fft // 2 + 1, frames)."""

    def __init__(self, n_fft: int, hop_length: int, window: torch.Tensor) -> None:
        super().__init__()
        win = window.detach().to(torch.float64)
        self.n_fft, self.hop, self.offset = n_fft, hop_length, (n_fft - len(win)) // 2
        self.n_freq = n_fft // 2 + 1
        taps = torch.arange(len(win), dtype=torch.float64) + self.offset
        angle = 2 * math.pi * torch.outer(torch.arange(self.n_freq, dtype=torch.float64), taps) / n_fft
        kernel = torch.cat([torch.cos(angle) * win, -torch.sin(angle) * win])  # built in float64
        self.register_buffer("kernel", kernel.to(torch.float32).unsqueeze(1), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        pad = self.n_fft // 2
        padded = nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect")
        n_frames = 1 + (wave.shape[-1] + 2 * pad - self.n_fft) // self.hop
        padded = padded[..., self.offset : self.offset + (n_frames - 1) * self.hop + self.kernel.shape[-1]]
        out = nn.functional.conv1d(padded, self.kernel, stride=self.hop)
        return out[:, : self.n_freq], out[:, self.n_freq :]


class ExportFeatures(nn.Module):
    """`FeatureExtractor`'s logmel, spectrogram and stft_complex kinds with the STFT as a Conv1d
    and the mel filterbank as a MatMul: the same numbers (tests/unit/test_export.py), a faster
    ONNX graph. Built from an extractor's own window, filterbank and settings."""

    def __init__(self, extractor: FeatureExtractor) -> None:
        super().__init__()
        self.kind = extractor.kind
        transform = extractor.transform  # features.PerClip / ComplexParts over a torchaudio transform
        spec = transform.spec.spectrogram if self.kind == "logmel" else transform.spec
        self.power = spec.power
        if spec.normalized or not spec.center or spec.pad_mode != "reflect" or spec.onesided is False:
            raise ValueError("ExportFeatures reproduces center=True, reflect, onesided, unnormalised STFTs only")
        self.stft = ConvSpectrum(spec.n_fft, spec.hop_length, spec.window)
        if self.kind == "logmel":
            self.register_buffer("mel_fb", transform.spec.mel_scale.fb.detach().clone(), persistent=False)
            to_db = transform.to_db
            self.db_multiplier = to_db.multiplier
            self.amin = to_db.amin
            self.top_db = to_db.top_db

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(wave)
        if self.kind == "stft_complex":
            return torch.stack([real, imag], dim=1)
        spec = real * real + imag * imag
        if self.power != 2.0:
            spec = spec.pow(self.power / 2)
        if self.kind == "spectrogram":
            return spec.unsqueeze(1)
        mel = torch.matmul(spec.transpose(1, 2), self.mel_fb).transpose(1, 2).unsqueeze(1)
        db = self.db_multiplier * torch.log10(torch.clamp(mel, min=self.amin))
        if self.top_db is not None:  # per clip, as AmplitudeToDB does on (B, 1, F, T)
            db = torch.maximum(db, db.amax(dim=(1, 2, 3), keepdim=True) - self.top_db)
        return db


def export_friendly(model: nn.Module) -> nn.Module:
    """`model` with its `FeatureExtractor` replaced by `ExportFeatures` where that kind has one
    (mfcc keeps torchaudio's graph): what `export_onnx` exports."""
    if isinstance(model, FeatureExtractor):
        return ExportFeatures(model).eval() if model.kind != "mfcc" else model
    if isinstance(model, WaveformClassifier):
        return WaveformClassifier(export_friendly(model.extractor), model.classifier).eval()
    return model


class WaveformClassifier(nn.Module):
    """(batch, samples) mono waveform at the model's rate → (batch, classes) logits."""

    def __init__(self, extractor: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.classifier = classifier

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.extractor(waveform))


def export_onnx(
    model: nn.Module, n_samples: int, path: Path, opset: int, output_name: str = OUTPUT_NAME, friendly: bool = True
) -> None:
    """Dynamo export of `model` ((batch, n_samples) float32 in) with a dynamic batch axis, input
    named `waveform`; written atomically as a single file. `output_name` lets a test export the
    `FeatureExtractor` alone; `friendly=False` keeps torchaudio's graph (the STFT op), for the bench."""
    model = model.eval().cpu()
    model = export_friendly(model) if friendly else model
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


FRONT_END_WEIGHTS = ("stft.kernel", "mel_fb")  # ExportFeatures' buffers: kept float32 in every variant


def front_end_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that apply the front-end's DFT kernel or filterbank: quantizing them
    would cost the spectrum its dynamic range (int8 holds ~48 dB, the log-mel spans 80)."""
    return [n.name for n in model.graph.node if any(i.endswith(FRONT_END_WEIGHTS) for i in n.input)]


def quantize_fp16_weights(src: Path, dst: Path) -> None:
    """Store the network's large float32 initializers as float16 with a Cast back to float32 in
    front of their consumers: smaller file, float32 compute (CPUs have no fast fp16 kernels). The
    front-end's DFT kernel stays float32: rounded to fp16 it moves quiet bins by tenths of a dB."""
    model = onnx.load(str(src))
    graph = model.graph
    new_inits, casts = [], []
    for init in graph.initializer:
        array = onnx.numpy_helper.to_array(init)
        if array.dtype != np.float32 or array.size < 256 or init.name.endswith(FRONT_END_WEIGHTS):
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
        quantize_dynamic(
            str(pre),
            str(tmp),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm"],
            nodes_to_exclude=front_end_nodes(onnx.load(str(pre))),
        )
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
    after `quant_pre_process`. Only the network's Conv/Gemm are quantized: the STFT (a Conv1d
    here) and mel filterbank stay float, since int8 cannot hold a power spectrum's dynamic range."""
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
            # 7-bit weights: x86 CPUs without VNNI (AVX2's u8s8 multiply-add) saturate 8-bit
            # products, which took the built-in model's int8 F1 from 0.905 to 0.594 on an AVX2 EPYC
            reduce_range=True,
            op_types_to_quantize=["Conv", "Gemm"],
            nodes_to_exclude=front_end_nodes(onnx.load(str(pre))),
        )
    dst.with_suffix(".pre.onnx").unlink(missing_ok=True)


def interleaved_latency_ms(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median milliseconds per call of each function, timed in interleaved rounds (each round
    calls every function once, in a rotated order), so a load spike or a CPU frequency change
    hits all of them alike and their ratios stay stable on a shared machine. `clock`:
    `time.thread_time` measures the CPU time of single-threaded work, blind to other processes."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = clock()
            fns[name]()
            times[name].append((clock() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def median_latency_ms(fn: Callable[[], object], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
