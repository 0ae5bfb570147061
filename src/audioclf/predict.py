"""`audioclf predict PATH...`: top-k labels for audio files or folders with a deployed ONNX model.

Needs only numpy, soundfile, scipy and onnxruntime — never torch (tests run it with `import torch`
made to fail). The model (`model.onnx`, raw waveform in, logits out) carries the features in its
graph; its sidecar (`model.onnx.json`) gives the classes, sample rate and clip length. Clips
longer than the model's clip are scored in sliding windows (a timeline) and labelled by the mean
of the window probabilities; shorter ones are zero-padded as in training.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audioclf.audio import AUDIO_SUFFIXES, fix_length, load_clip
from audioclf.deploy import (
    ONNX_CLASSES_KEY,
    ONNX_N_SAMPLES_KEY,
    ONNX_NAME,
    ONNX_SAMPLE_RATE_KEY,
    DeploySidecar,
    ort_session,
    read_deploy_sidecar,
    sidecar_path,
)
from audioclf.errors import ArgumentParser, AudioclfError, brief
from audioclf.metrics import softmax

DEFAULT_MODEL = Path("models") / ONNX_NAME
BATCH = 32  # windows per onnxruntime call: bounds memory on hour-long files


@dataclass(frozen=True)
class Deployed:
    """An onnxruntime session with the sidecar facts checked against the graph."""

    session: Any
    path: Path
    classes: list[str]
    sample_rate: int
    n_samples: int
    input_name: str
    output_name: str
    variant: str

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate


@dataclass
class Prediction:
    path: Path
    duration_s: float
    top: list[tuple[str, float]]  # aggregated over windows, best first
    segments: list[dict[str, Any]] = field(default_factory=list)  # start, end, label, probability


def load_model(model: Path, threads: int = 0) -> Deployed:
    """Open `model` and its sidecar and check they describe the same graph (input name and clip
    length, output name and number of classes) before any file is scored."""
    if not model.is_file():
        raise AudioclfError(f"{model}: model not found; pass --model PATH/model.onnx (dvc repro quantize builds one)")
    side = sidecar_path(model)
    meta = read_deploy_sidecar(side)
    try:
        sess = ort_session(model, threads)
    except Exception as exc:  # onnxruntime raises its own, unexported exception classes
        raise AudioclfError(
            f"{model}: onnxruntime cannot load it ({brief(exc)}); rebuild with dvc repro quantize"
        ) from exc
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    if [i.name for i in inputs] != [meta.input]:
        raise AudioclfError(
            f"{side}: input {meta.input!r} but {model} takes {[i.name for i in inputs]}; "
            "ship the sidecar written with this model"
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
            f"{side}: output {meta.output!r} but {model} gives {list(out)}; ship the sidecar written with this model"
        )
    n_out = out[meta.output].shape[-1]
    if not isinstance(n_out, int):  # a symbolic class axis: ask the graph itself
        probe = np.zeros((1, meta.n_samples), dtype=np.float32)
        n_out = sess.run([meta.output], {meta.input: probe})[0].shape[-1]
    if n_out != len(meta.classes):
        raise AudioclfError(
            f"{side}: {len(meta.classes)} classes but {model} outputs {n_out} logits; "
            "ship the sidecar written with this model"
        )
    _check_graph_metadata(sess, meta, model, side)
    return Deployed(
        session=sess,
        path=model,
        classes=meta.classes,
        sample_rate=meta.sample_rate,
        n_samples=meta.n_samples,
        input_name=meta.input,
        output_name=meta.output,
        variant=meta.variant,
    )


def _check_graph_metadata(sess: Any, meta: DeploySidecar, model: Path, side: Path) -> None:
    """A model exported by the quantize stage carries its classes, rate and clip length: they must
    be the sidecar's (the same class count alone would let another model's sidecar mislabel)."""
    props = sess.get_modelmeta().custom_metadata_map
    keys = {"classes": ONNX_CLASSES_KEY, "sample_rate": ONNX_SAMPLE_RATE_KEY, "n_samples": ONNX_N_SAMPLES_KEY}
    for field_name, key in keys.items():
        if key not in props:
            continue  # a model from elsewhere: the shape checks above are all there is
        try:
            graph_value = json.loads(props[key])
        except json.JSONDecodeError:
            raise AudioclfError(
                f"{model}: damaged {key} metadata in the graph; rebuild it (dvc repro quantize)"
            ) from None
        sidecar_value = getattr(meta, field_name)
        if field_name == "classes":
            graph_value, sidecar_value = [str(c) for c in graph_value], [str(c) for c in sidecar_value]
        if graph_value != sidecar_value:
            raise AudioclfError(
                f"{side}: {field_name} {_short(sidecar_value)} but {model} was exported with {_short(graph_value)}; "
                "ship the sidecar written with this model"
            )


def _short(value: object) -> str:
    return brief(json.dumps(value), 60)


def collect_inputs(paths: Sequence[Path]) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for each file to score; (path, reason) for a path that gives none. Folders
    are searched recursively for AUDIO_SUFFIXES, in sorted order so output is reproducible."""
    for path in paths:
        if path.is_dir():
            # dot-files skipped: macOS copies leave `._name.wav` resource forks that are not audio
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".") and p.is_file()
            )
            if not found:
                yield path, f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in this folder"
            yield from ((p, None) for p in found)
        elif path.exists():
            yield path, None
        else:
            yield path, "no such file or folder"


def window_starts(n_total: int, n_window: int, hop: int) -> list[int]:
    """Window start samples covering the whole clip: every `hop` samples, plus one window ending
    at the clip's end when the hops do not land there (every window is then full audio, as in
    training). A clip no longer than a window is one window."""
    if n_total <= n_window:
        return [0]
    starts = list(range(0, n_total - n_window + 1, hop))
    if starts[-1] + n_window < n_total:
        starts.append(n_total - n_window)
    return starts


def _logits(model: Deployed, wave: np.ndarray, starts: list[int]) -> np.ndarray:
    """Logits (windows, classes) of the `n_samples` windows at `starts`; `wave` is at least one
    window long. Windows are copied BATCH at a time, so memory stays flat on long files."""
    view = np.lib.stride_tricks.sliding_window_view(wave, model.n_samples)
    out = [
        model.session.run([model.output_name], {model.input_name: np.ascontiguousarray(view[starts[i : i + BATCH]])})[0]
        for i in range(0, len(starts), BATCH)
    ]
    return np.concatenate(out).astype(np.float64)


def predict_file(model: Deployed, path: Path, hop_s: float, top_k: int) -> Prediction:
    """Decode (any rate, any channel count), resample to the model's rate and score windows."""
    wave = load_clip(path, model.sample_rate, None)
    n = model.n_samples
    hop = max(1, round(hop_s * model.sample_rate))
    starts = window_starts(len(wave), n, hop)
    probs = softmax(_logits(model, fix_length(wave, n) if len(wave) < n else wave, starts))
    mean = probs.mean(axis=0)
    order = np.argsort(-mean, kind="stable")[: min(top_k, len(model.classes))]
    top = [(model.classes[i], float(mean[i])) for i in order]
    rate = model.sample_rate
    segments = [
        {
            "start": round(s / rate, 3),
            "end": round(min(s + n, len(wave)) / rate, 3),
            "label": model.classes[int(p.argmax())],
            "probability": float(p.max()),
        }
        for s, p in zip(starts, probs, strict=True)
    ]
    return Prediction(path=path, duration_s=round(len(wave) / rate, 3), top=top, segments=segments)


def _as_dict(pred: Prediction) -> dict[str, Any]:
    return {
        "path": str(pred.path),
        "duration_s": pred.duration_s,
        "label": pred.top[0][0],
        "probability": round(pred.top[0][1], 6),
        "top_k": [{"label": label, "probability": round(p, 6)} for label, p in pred.top],
        "segments": [{**s, "probability": round(s["probability"], 6)} for s in pred.segments],
    }


TOP_WIDTH = 22  # "label 0.123" per top-k column in the table


def table_header(width: int, k: int) -> str:
    tops = "  ".join(f"{f'top-{i + 1}':<{TOP_WIDTH}}" for i in range(k)).rstrip()
    return f"{'file':<{width}}  {'duration':>9}  {tops}"


def table_lines(pred: Prediction, width: int) -> list[str]:
    """One line per file (top-k with probabilities); a long file adds its timeline, indented."""
    tops = "  ".join(f"{f'{label} {prob:.3f}':<{TOP_WIDTH}}" for label, prob in pred.top).rstrip()
    lines = [f"{pred.path!s:<{width}}  {pred.duration_s:>7.2f} s  {tops}"]
    if len(pred.segments) > 1:
        for s in pred.segments:
            span = f"{s['start']:.2f}-{s['end']:.2f} s"
            lines.append(f"{span:>{width + 11}}  {s['label']} {s['probability']:.3f}")  # under "duration"
    return lines


CSV_COLUMNS = ("path", "scope", "start_s", "end_s", "rank", "label", "probability")


def csv_rows(pred: Prediction) -> list[list[object]]:
    """Long format: `scope=clip` rows hold the top-k of the whole file (rank 1..k), `scope=window`
    rows the timeline's top-1 per window (only for files longer than the model's clip)."""
    rows: list[list[object]] = [
        [pred.path, "clip", 0.0, pred.duration_s, rank, label, f"{prob:.6f}"]
        for rank, (label, prob) in enumerate(pred.top, start=1)
    ]
    if len(pred.segments) > 1:
        rows += [
            [pred.path, "window", s["start"], s["end"], 1, s["label"], f"{s['probability']:.6f}"] for s in pred.segments
        ]
    return rows


def json_document(preds: list[Prediction], errors: list[dict[str, str]], model: Deployed) -> dict[str, Any]:
    return {
        "model": str(model.path),
        "variant": model.variant,
        "sample_rate": model.sample_rate,
        "window_s": model.duration_s,
        "predictions": [_as_dict(p) for p in preds],
        "errors": errors,
    }


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="audioclf predict",
        description="Top-k labels for audio files or folders (searched recursively) with the deployed ONNX model. "
        "Files longer than the model's clip get a timeline of windows.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="audio files (WAV, FLAC, OGG, ...) or folders")
    p.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help="model.onnx with its sidecar MODEL.json next to it (default: %(default)s)",
    )
    p.add_argument("--top-k", type=int, default=3, help="labels per file (default: %(default)s)")
    p.add_argument("--hop", type=float, default=None, help="hop in seconds for long files (default: half a clip)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document on stdout")
    fmt.add_argument("--csv", action="store_true", help="CSV rows on stdout (path,scope,start_s,end_s,rank,...)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads; 0 = one per core")
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit code 0 when every file was scored, 1 when any failed (each gets one stderr line);
    model, sidecar and option problems raise AudioclfError (the CLI exits 2)."""
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise AudioclfError(f"--top-k must be >= 1, got {args.top_k}")
    if args.threads < 0:
        raise AudioclfError(f"--threads must be >= 0 (0 = one per core), got {args.threads}")
    model = load_model(args.model, args.threads)
    # half a clip: every moment is seen by two windows, so an event on a window edge still counts
    hop_s = model.duration_s / 2 if args.hop is None else args.hop
    if not 0 < hop_s <= model.duration_s or not math.isfinite(hop_s):
        raise AudioclfError(f"--hop must be in (0, {model.duration_s:g}] s (the model's clip length), got {hop_s:g}")

    inputs = list(collect_inputs(args.paths))
    width = max(len(str(path)) for path, _ in inputs)
    csv_out = csv.writer(sys.stdout, lineterminator="\n") if args.csv else None
    # table and CSV stream one file at a time; JSON is one document, written at the end
    if csv_out:
        csv_out.writerow(CSV_COLUMNS)
    elif not args.json:
        print(table_header(width, min(args.top_k, len(model.classes))))
    preds: list[Prediction] = []
    errors: list[dict[str, str]] = []
    for path, problem in inputs:
        if problem is None:
            try:
                pred = predict_file(model, path, hop_s, args.top_k)
            except AudioclfError as exc:
                # audio.py's messages already start with the file name
                problem = str(exc).removeprefix(f"{path}: ")
            except OSError as exc:
                problem = f"cannot read ({exc.strerror or exc})"
        if problem is not None:
            errors.append({"path": str(path), "error": problem})
            sys.stdout.flush()  # keep the error line after the lines already printed
            print(f"audioclf: error: {path}: {problem}", file=sys.stderr, flush=True)
            continue
        if args.json:
            preds.append(pred)
        elif csv_out:
            csv_out.writerows(csv_rows(pred))
        else:
            print("\n".join(table_lines(pred, width)), flush=True)
    if args.json:
        json.dump(json_document(preds, errors, model), sys.stdout, indent=2)
        print()
    sys.stdout.flush()
    return 1 if errors else 0
