"""The Python API for a deployed model: `load_model("models/model.onnx")`, then `predict`
(an array), `predict_file` (a path or a seekable buffer) or `stream` (an iterable of chunks).

Torch-free: numpy, soundfile, scipy and onnxruntime. The ONNX graph takes the raw waveform at
the model's rate (features inside); this module decodes, downmixes, resamples and cuts windows
in bounded memory (`streaming`), runs the graph with its output checked (shape, finiteness),
turns logits into calibrated probabilities (the sidecar's temperature) and labels, with
`unknown` for (near-)silence and for windows below `min_prob`.

    from audioclf import load_model
    model = load_model("models/model.onnx", min_prob=0.5)
    result = model.predict_file("street.wav", hop=0.5)
    print(result.label, result.probability, [(w.start_s, w.label) for w in result.windows])
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from audioclf.audio import MAX_RATE, MIN_RATE
from audioclf.deploy import (
    ONNX_CLASSES_KEY,
    ONNX_N_SAMPLES_KEY,
    ONNX_SAMPLE_RATE_KEY,
    DeploySidecar,
    ort_session,
    read_deploy_sidecar,
    sidecar_path,
)
from audioclf.errors import AudioclfError, brief
from audioclf.streaming import BLOCK_FRAMES, Window, Windower, file_blocks, mono_at_rate, open_audio

UNKNOWN = "unknown"
BATCH = 32  # windows per onnxruntime call: bounds memory, amortises the call overhead
SILENCE_DB = -60.0  # window RMS in dBFS below which the label is `unknown` (digital or near silence)
MAX_CHANNELS = 64  # an array wider than this is taken for channels-first by mistake
FOREIGN_HINT = "pass --allow-foreign-model (API: allow_foreign=True) to use it with the sidecar's facts"


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowResult:
    """One window of `n_samples` at the model's rate. `scores`: calibrated probabilities of every
    class (model order); `top`: the top-k (label, probability), best first; `label` is `unknown`
    when the window is silent (`rms_db` < the silence floor) or its best probability < min_prob."""

    start_s: float
    end_s: float  # end of the real audio in the window (a padded lone window ends early)
    label: str
    probability: float  # the best class's probability (also when the label is unknown)
    top: tuple[tuple[str, float], ...]
    scores: np.ndarray = field(repr=False)
    logits: np.ndarray = field(repr=False)
    rms_db: float = 0.0
    silent: bool = False


@dataclass(frozen=True)
class Event:
    """Consecutive windows of one label merged: onset, offset (s), label, mean probability."""

    onset_s: float
    offset_s: float
    label: str
    score: float
    n_windows: int


@dataclass(frozen=True)
class Prediction:
    """A clip or file: its windows, the aggregate (mean of the non-silent windows' probabilities;
    `unknown` when every window is silent or the mean's best is below min_prob) and its top-k."""

    source: str
    duration_s: float
    label: str
    probability: float
    top: tuple[tuple[str, float], ...]
    scores: np.ndarray = field(repr=False)
    windows: list[WindowResult] = field(repr=False)

    @property
    def events(self) -> list[Event]:
        return list(merge_events(self.windows))


@dataclass(frozen=True)
class Labeling:
    """How probabilities become labels. `min_prob`: below it the label is `unknown` (0 = never);
    `silence_db`: window RMS floor in dBFS (None = off)."""

    top_k: int = 3
    min_prob: float = 0.0
    silence_db: float | None = SILENCE_DB

    def __post_init__(self) -> None:
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise AudioclfError(f"top_k must be >= 1 (an integer), got {brief(repr(self.top_k), 40)}")
        if not (isinstance(self.min_prob, int | float) and 0.0 <= self.min_prob <= 1.0):
            raise AudioclfError(f"min_prob must be in [0, 1], got {brief(repr(self.min_prob), 40)}")
        if self.silence_db is not None and not (
            isinstance(self.silence_db, int | float) and math.isfinite(self.silence_db) and self.silence_db <= 0
        ):
            raise AudioclfError(f"silence_db must be a finite dBFS level <= 0 (or None), got {self.silence_db!r}")


class EventTracker:
    """Merges windows, fed in time order, into events as they close (works on a live stream): a
    run of consecutive windows with one label is one event from the first's start to the last's
    end, scored by their mean probability; `unknown` windows break events and make none."""

    def __init__(self) -> None:
        self._run: list[WindowResult] = []

    def _close(self) -> Event | None:
        run, self._run = self._run, []
        if not run:
            return None
        score = float(np.mean([w.probability for w in run]))
        return Event(run[0].start_s, run[-1].end_s, run[0].label, round(score, 6), len(run))

    def push(self, window: WindowResult) -> Event | None:
        closed = self._close() if self._run and window.label != self._run[0].label else None
        if window.label != UNKNOWN:
            self._run.append(window)
        return closed

    def finish(self) -> Event | None:
        return self._close()


def merge_events(windows: Iterable[WindowResult]) -> Iterator[Event]:
    """`EventTracker` over an iterable of windows, lazily."""
    tracker = EventTracker()
    for window in windows:
        if (event := tracker.push(window)) is not None:
            yield event
    if (event := tracker.finish()) is not None:
        yield event


# -- input checks -------------------------------------------------------------------------------


def as_waveform(wave: object, name: str = "waveform") -> np.ndarray:
    """(n,) or (n, channels) float32/float64 in [-1, 1] or int16 (scaled by 1/32768) → float32
    with the same shape. Anything else is a one-line error."""
    if not isinstance(wave, np.ndarray):
        raise AudioclfError(f"{name}: expected a numpy array, got {type(wave).__name__}; pass np.asarray(samples)")
    if wave.dtype == np.int16:
        out = wave.astype(np.float32) / 32768
    elif wave.dtype in (np.float32, np.float64):
        out = wave.astype(np.float32, copy=False)
    else:
        raise AudioclfError(
            f"{name}: dtype {wave.dtype} is not supported; pass float32/float64 in [-1, 1] or int16 PCM"
        )
    if out.ndim not in (1, 2) or out.shape[0] == 0 or (out.ndim == 2 and out.shape[1] == 0):
        raise AudioclfError(f"{name}: shape {out.shape}; pass (samples,) or (samples, channels) with samples > 0")
    if out.ndim == 2 and out.shape[1] > MAX_CHANNELS:
        raise AudioclfError(
            f"{name}: shape {out.shape} has {out.shape[1]} channels; pass (samples, channels), e.g. wave.T"
        )
    return out


def check_rate(sample_rate: object, name: str = "sample_rate") -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise AudioclfError(f"{name} must be an integer in Hz, got {brief(repr(sample_rate), 40)}")
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise AudioclfError(f"{name} {sample_rate} Hz is outside {MIN_RATE}..{MAX_RATE}")
    return int(sample_rate)


def rms_db(samples: np.ndarray) -> float:
    """RMS level in dBFS (full-scale sine: -3 dB); digital silence: -inf."""
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    return 10 * math.log10(power) if power > 0 else -math.inf


class ModelOutputError(AudioclfError):
    """The graph's output for some input is unusable (non-finite, wrong shape): a per-file error."""


# -- the model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A deployed model, checked against its sidecar. Build it with `load_model`."""

    session: Any = field(repr=False)
    path: Path
    classes: tuple[str, ...]
    sample_rate: int
    n_samples: int
    input_name: str
    output_name: str
    variant: str
    temperature: float = 1.0
    labeling: Labeling = Labeling()

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate

    def with_labeling(self, **changes: Any) -> Model:
        """The same session with other top_k / min_prob / silence_db."""
        return replace(self, labeling=replace(self.labeling, **changes))

    def hop_samples(self, hop: float | None) -> int:
        """Hop in seconds (None: half a clip, so every moment is seen by two windows) → samples."""
        hop_s = self.duration_s / 2 if hop is None else hop
        if not isinstance(hop_s, int | float) or not math.isfinite(hop_s) or not 0 < hop_s <= self.duration_s:
            raise AudioclfError(
                f"hop must be in (0, {self.duration_s:g}] s (the model's clip length), got {brief(repr(hop), 40)}"
            )
        return max(1, round(hop_s * self.sample_rate))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """(b, n_samples) float32 → (b, classes) float64 logits, checked: the graph must give one
        finite row per window (a NaN would otherwise print as a label with exit 0)."""
        out = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]
        if out.shape != (len(batch), len(self.classes)):
            raise ModelOutputError(
                f"the model {self.path} gave logits of shape {out.shape} for {len(batch)} windows (expected "
                f"({len(batch)}, {len(self.classes)})); the graph ignores its batch axis: re-export it"
            )
        if not np.isfinite(out).all():
            raise ModelOutputError(
                f"the model {self.path} gave non-finite logits (NaN/inf) on this audio; the model is broken, "
                "re-export it"
            )
        return out.astype(np.float64)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        z = logits / self.temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def _top(self, probs: np.ndarray) -> tuple[tuple[str, float], ...]:
        order = np.argsort(-probs, kind="stable")[: min(self.labeling.top_k, len(self.classes))]
        return tuple((self.classes[i], float(probs[i])) for i in order)

    def _results(self, windows: list[Window]) -> list[WindowResult]:
        logits = self.logits(np.stack([w.samples for w in windows]))
        probs = self.probabilities(logits)
        out = []
        floor, rate = self.labeling.silence_db, self.sample_rate
        for w, lg, p in zip(windows, logits, probs, strict=True):
            level = rms_db(w.samples[: w.n_real])
            silent = floor is not None and level < floor
            best = int(p.argmax())
            unsure = float(p[best]) < self.labeling.min_prob
            label = UNKNOWN if silent or unsure else self.classes[best]
            out.append(
                WindowResult(
                    round(w.start / rate, 6), round((w.start + w.n_real) / rate, 6), label, float(p[best]),
                    self._top(p), p, lg, round(level, 2) if math.isfinite(level) else level, silent,
                )
            )  # fmt: skip
        return out

    def _windows(self, mono: Iterable[np.ndarray], hop: int, batch: int) -> Iterator[WindowResult]:
        """Window results in time order; up to `batch` complete windows per graph call."""
        windower = Windower(self.n_samples, hop)
        pending: list[Window] = []
        for piece in mono:
            pending += windower.push(piece)
            while len(pending) >= batch:
                yield from self._results(pending[:batch])
                pending = pending[batch:]
            if pending and batch == 1:
                yield from self._results(pending)
                pending = []
        pending += windower.finish()
        for i in range(0, len(pending), max(1, batch)):
            yield from self._results(pending[i : i + batch])

    def _aggregate(self, source: str, duration_s: float, windows: list[WindowResult]) -> Prediction:
        if not windows:
            raise AudioclfError(f"{source}: no audio samples; pass at least one sample")
        loud = [w for w in windows if not w.silent] or windows
        mean = np.mean([w.scores for w in loud], axis=0)
        best = int(mean.argmax())
        silent = all(w.silent for w in windows)
        label = UNKNOWN if silent or mean[best] < self.labeling.min_prob else self.classes[best]
        return Prediction(source, round(duration_s, 6), label, float(mean[best]), self._top(mean), mean, windows)

    def predict(self, waveform: np.ndarray, sample_rate: int, hop: float | None = None) -> Prediction:
        """Score an array: (n,) or (n, channels), float32/float64 in [-1, 1] or int16, at any
        rate (resampled to the model's). Longer than one clip: windows every `hop` s and an
        aggregate; shorter: one zero-padded window."""
        wave, rate = as_waveform(waveform), check_rate(sample_rate)
        step = self.hop_samples(hop)
        blocks = (wave[i : i + BLOCK_FRAMES] for i in range(0, len(wave), BLOCK_FRAMES))
        windows = list(self._windows(mono_at_rate(blocks, rate, self.sample_rate), step, BATCH))
        return self._aggregate("waveform", len(wave) / rate, windows)

    def predict_file(
        self, source: str | Path | BinaryIO, hop: float | None = None, name: str | None = None
    ) -> Prediction:
        """Score an audio file (anything libsndfile decodes, any rate and channel count) or a
        seekable binary buffer, decoded in blocks: memory stays bounded whatever the length."""
        name = str(source) if name is None else name
        step = self.hop_samples(hop)
        with open_audio(source, name) as audio:
            rate, n_frames = audio.samplerate, audio.frames
            mono = mono_at_rate(file_blocks(audio, name), rate, self.sample_rate)
            try:
                windows = list(self._windows(mono, step, BATCH))
            except ModelOutputError as exc:
                raise ModelOutputError(f"{name}: {exc}") from None
        return self._aggregate(name, n_frames / rate if n_frames > 0 else windows[-1].end_s, windows)

    def stream(
        self, chunks: Iterable[np.ndarray], sample_rate: int, hop: float | None = None
    ) -> Iterator[WindowResult]:
        """Window results of a live stream of chunks ((n,) or (n, channels), any supported dtype,
        any sizes) as soon as each window is complete; when the chunks end, the last window
        follows `predict`'s rule (aligned to the end, or one padded window for a short stream)."""
        rate, step = check_rate(sample_rate), self.hop_samples(hop)
        checked = (as_waveform(chunk, "chunk") for chunk in chunks)
        yield from self._windows(mono_at_rate(checked, rate, self.sample_rate), step, 1)


# -- loading ------------------------------------------------------------------------------------


def _open_session(model: Path, threads: int) -> Any:
    try:
        return ort_session(model, threads)
    except Exception as exc:  # onnxruntime raises its own, unexported exception classes
        raise AudioclfError(
            f"{model}: onnxruntime cannot load it ({brief(exc)}); rebuild with dvc repro quantize"
        ) from exc


def _check_io(sess: Any, meta: DeploySidecar, model: Path, side: Path) -> None:
    """Input name, dtype and clip length; output name and class count: the sidecar's."""
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    if [i.name for i in inputs] != [meta.input]:
        raise AudioclfError(
            f"{side}: input {brief(meta.input, 60)!r} but {model} takes {brief(str([i.name for i in inputs]), 80)}; "
            "ship the sidecar written with this model"
        )
    if inputs[0].type != "tensor(float)":
        raise AudioclfError(
            f"{model}: takes {inputs[0].type} input, but audioclf feeds float32 waveforms; re-export it with float32"
        )
    in_shape = inputs[0].shape
    if len(in_shape) != 2 or (isinstance(in_shape[1], int) and in_shape[1] != meta.n_samples):
        raise AudioclfError(
            f"{side}: n_samples {meta.n_samples} but {model} takes input shape {in_shape}; "
            "ship the sidecar written with this model"
        )
    out = {o.name: o for o in outputs}
    if meta.output not in out:
        raise AudioclfError(
            f"{side}: output {brief(meta.output, 60)!r} but {model} gives {brief(str(list(out)), 80)}; "
            "ship the sidecar written with this model"
        )
    n_out = out[meta.output].shape[-1] if out[meta.output].shape else None
    if not isinstance(n_out, int):  # a symbolic class axis: ask the graph itself (below)
        return
    if n_out != len(meta.classes):
        raise AudioclfError(
            f"{side}: {len(meta.classes)} classes but {model} outputs {n_out} logits; "
            "ship the sidecar written with this model"
        )


def _check_graph_metadata(sess: Any, meta: DeploySidecar, model: Path, side: Path, allow_foreign: bool) -> None:
    """A model exported by the quantize stage carries its classes, rate and clip length: they
    must be the sidecar's (the class count alone would let another model's sidecar mislabel). A
    model without them is refused unless `allow_foreign`."""
    props = sess.get_modelmeta().custom_metadata_map
    keys = {"classes": ONNX_CLASSES_KEY, "sample_rate": ONNX_SAMPLE_RATE_KEY, "n_samples": ONNX_N_SAMPLES_KEY}
    missing = [key for key in keys.values() if key not in props]
    if missing and not allow_foreign:
        raise AudioclfError(
            f"{model}: lacks audioclf's graph metadata ({', '.join(missing)}): not a model the quantize stage "
            f"exported, so its sidecar's classes cannot be trusted; {FOREIGN_HINT}"
        )
    for field_name, key in keys.items():
        if key not in props:
            continue
        try:
            graph_value = json.loads(props[key])
        except json.JSONDecodeError:
            raise AudioclfError(
                f"{model}: damaged {key} metadata in the graph; rebuild it (dvc repro quantize)"
            ) from None
        sidecar_value = getattr(meta, field_name)
        if field_name == "classes" and isinstance(graph_value, list):
            graph_value, sidecar_value = [str(c) for c in graph_value], [str(c) for c in sidecar_value]
        if graph_value != sidecar_value:
            raise AudioclfError(
                f"{side}: {field_name} {brief(json.dumps(sidecar_value), 60)} but {model} was exported with "
                f"{brief(json.dumps(graph_value), 60)}; ship the sidecar written with this model"
            )


def _probe(model: Model, side: Path) -> None:
    """Run two silent windows: the graph must honour the batch axis and give one logit per
    class before any file is scored. (Non-finite logits are checked per file, where they occur.)"""
    try:
        out = model.session.run([model.output_name], {model.input_name: np.zeros((2, model.n_samples), np.float32)})[0]
    except Exception as exc:  # onnxruntime's own failures (a shape it cannot take, a bad kernel)
        raise AudioclfError(f"{model.path}: fails on a batch of 2 windows ({brief(exc)}); re-export it") from exc
    if out.ndim != 2 or out.shape[0] != 2:
        raise AudioclfError(
            f"{model.path}: gave logits of shape {out.shape} for a batch of 2 windows; the graph ignores its "
            "batch axis: re-export it with a dynamic batch"
        )
    if out.shape[1] != len(model.classes):
        raise AudioclfError(
            f"{side}: {len(model.classes)} classes but {model.path} outputs {out.shape[1]} logits; "
            "ship the sidecar written with this model"
        )


def load_model(
    path: str | Path,
    *,
    threads: int = 0,
    allow_foreign: bool = False,
    top_k: int = 3,
    min_prob: float = 0.0,
    silence_db: float | None = SILENCE_DB,
) -> Model:
    """Open a deployed `model.onnx` and its sidecar (`model.onnx.json` next to it) and check they
    describe the same graph (input name, dtype and clip length, output name and class count, the
    graph's audioclf metadata) and that it runs on a batch, before anything is scored.
    `threads`: onnxruntime intra-op threads (0 = one per core)."""
    labeling = Labeling(top_k, min_prob, silence_db)
    model = Path(path)
    if not model.is_file():
        raise AudioclfError(f"{model}: model not found; pass --model PATH/model.onnx (dvc repro quantize builds one)")
    if not isinstance(threads, int) or threads < 0:
        raise AudioclfError(f"threads must be >= 0 (0 = one per core), got {brief(repr(threads), 40)}")
    side = sidecar_path(model)
    meta = read_deploy_sidecar(side)
    sess = _open_session(model, threads)
    _check_io(sess, meta, model, side)
    _check_graph_metadata(sess, meta, model, side, allow_foreign)
    loaded = Model(
        session=sess,
        path=model,
        classes=tuple(str(c) for c in meta.classes),
        sample_rate=meta.sample_rate,
        n_samples=meta.n_samples,
        input_name=meta.input,
        output_name=meta.output,
        variant=str(meta.variant),
        temperature=float(meta.temperature),
        labeling=labeling,
    )
    _probe(loaded, side)
    return loaded
