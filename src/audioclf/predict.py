"""`audioclf predict PATH... | - | --stream`: labels for audio files, folders, a file on stdin or
a live raw-PCM stream, with a deployed ONNX model. A thin layer over `audioclf.inference`.

Needs only numpy, soundfile, scipy and onnxruntime — never torch (tests run it with `import torch`
made to fail). Output formats (table, `--json`, `--csv`, JSON lines for `--stream`) follow the
versioned schema in docs/deployment.md (`SCHEMA_VERSION`).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from audioclf.audio import AUDIO_SUFFIXES
from audioclf.deploy import ONNX_NAME
from audioclf.errors import ArgumentParser, AudioclfError, brief
from audioclf.inference import (
    SILENCE_DB,
    Event,
    EventTracker,
    Model,
    Prediction,
    WindowResult,
    load_model,
)
from audioclf.streaming import PcmDecoder, pcm_blocks, read_bounded

DEFAULT_MODEL = Path("models") / ONNX_NAME
SCHEMA_VERSION = 2  # 2: calibrated probabilities, `unknown`, all scores, events, stdin and streams
STDIN = "-"
STDIN_MAX_MB = 256  # a 2-hour 16 kHz 16-bit mono WAV is 230 MB
PRECISION = 6  # decimals of probabilities in JSON and CSV


def collect_inputs(paths: Sequence[Path]) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for each file to score; (path, reason) for a path that gives none. Folders
    are searched recursively for AUDIO_SUFFIXES, in sorted order so output is reproducible."""
    for path in paths:
        if str(path) == STDIN:
            yield path, None
        elif path.is_dir():
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


# -- JSON ---------------------------------------------------------------------------------------


def _top(top: tuple[tuple[str, float], ...]) -> list[dict[str, Any]]:
    return [{"label": label, "probability": round(p, PRECISION)} for label, p in top]


def _scores(model: Model, scores: Any) -> dict[str, float]:
    return {c: round(float(p), PRECISION) for c, p in zip(model.classes, scores, strict=True)}


def window_dict(model: Model, w: WindowResult, all_scores: bool) -> dict[str, Any]:
    out = {"start": w.start_s, "end": w.end_s, "label": w.label, "probability": round(w.probability, PRECISION)}
    out["top_k"] = _top(w.top)
    if all_scores:
        out["scores"] = _scores(model, w.scores)
    return out


def event_dict(e: Event) -> dict[str, Any]:
    return {"onset": e.onset_s, "offset": e.offset_s, "label": e.label, "score": e.score, "windows": e.n_windows}


def prediction_dict(model: Model, pred: Prediction, all_scores: bool, events: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "path": pred.source,
        "duration_s": round(pred.duration_s, 3),
        "label": pred.label,
        "probability": round(pred.probability, PRECISION),
        "top_k": _top(pred.top),
        "segments": [window_dict(model, w, all_scores) for w in pred.windows],
    }
    if all_scores:
        out["scores"] = _scores(model, pred.scores)
    if events:
        out["events"] = [event_dict(e) for e in pred.events]
    return out


def header(model: Model) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "model": str(model.path),
        "variant": model.variant,
        "sample_rate": model.sample_rate,
        "window_s": model.duration_s,
        "temperature": model.temperature,
        "min_prob": model.labeling.min_prob,
        "silence_db": model.labeling.silence_db,
    }


def dumps(obj: Any, indent: int | None = None) -> str:
    """JSON that is valid JSON: a NaN or inf is a bug here (outputs are checked), never `NaN`."""
    return json.dumps(obj, indent=indent, allow_nan=False)


# -- table and CSV ------------------------------------------------------------------------------

TOP_WIDTH = 22  # "label 0.123" per top-k column in the table


def table_header(width: int, k: int) -> str:
    tops = "  ".join(f"{f'top-{i + 1}':<{TOP_WIDTH}}" for i in range(k)).rstrip()
    return f"{'file':<{width}}  {'duration':>9}  {'label':<{TOP_WIDTH}}  {tops}"


def table_lines(model: Model, pred: Prediction, width: int, all_scores: bool, events: bool) -> list[str]:
    """One line per file (label, then the top-k); a long file adds its timeline, indented."""
    tops = "  ".join(f"{f'{label} {prob:.3f}':<{TOP_WIDTH}}" for label, prob in pred.top).rstrip()
    label = f"{pred.label} {pred.probability:.3f}"
    lines = [f"{pred.source:<{width}}  {pred.duration_s:>7.2f} s  {label:<{TOP_WIDTH}}  {tops}"]
    pad = " " * (width + 13)
    if all_scores:
        lines.append(pad + "scores: " + " ".join(f"{c} {p:.3f}" for c, p in _all(model, pred.scores)))
    if len(pred.windows) > 1:
        for w in pred.windows:
            span = f"{w.start_s:.2f}-{w.end_s:.2f} s"
            lines.append(f"{span:>{width + 11}}  {w.label} {w.probability:.3f}")  # under "duration"
    if events:
        lines += [f"{pad}event {e.onset_s:.2f}-{e.offset_s:.2f} s {e.label} {e.score:.3f}" for e in pred.events]
    return lines


CSV_COLUMNS = ("path", "scope", "start_s", "end_s", "rank", "label", "probability", "decision")


def _ranked(path: str, scope: str, start: float, end: float, top, decision: str) -> list[list[object]]:
    return [
        [path, scope, start, end, r, label, f"{p:.{PRECISION}f}", decision] for r, (label, p) in enumerate(top, start=1)
    ]


def _all(model: Model, scores: Any) -> list[tuple[str, float]]:
    return sorted(zip(model.classes, map(float, scores), strict=True), key=lambda cp: -cp[1])


def csv_window_rows(model: Model, path: str, w: WindowResult, all_scores: bool) -> list[list[object]]:
    """A window's ranked scores (top-1, or every class); `decision` is its label or `unknown`."""
    return _ranked(path, "window", w.start_s, w.end_s, _all(model, w.scores) if all_scores else w.top[:1], w.label)


def csv_event_row(path: str, e: Event) -> list[object]:
    return [path, "event", e.onset_s, e.offset_s, 1, e.label, f"{e.score:.{PRECISION}f}", e.label]


def csv_rows(model: Model, pred: Prediction, all_scores: bool, events: bool) -> list[list[object]]:
    """Long format: `scope=clip` rows hold the file's top-k (every class with --all-scores),
    `scope=window` rows the timeline's top-1 (files longer than one clip; every class and every
    file with --all-scores), `scope=event` rows the events (--events). `decision` is the label
    the file/window/event gets: the best class, or `unknown`."""
    path, end = pred.source, round(pred.duration_s, 3)
    rows = _ranked(path, "clip", 0.0, end, _all(model, pred.scores) if all_scores else pred.top, pred.label)
    if len(pred.windows) > 1 or all_scores:
        for w in pred.windows:
            rows += csv_window_rows(model, path, w, all_scores)
    if events:
        rows += [csv_event_row(path, e) for e in pred.events]
    return rows


# -- the command --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="audioclf predict",
        description="Labels for audio files, folders (searched recursively), a WAV/FLAC on stdin (PATH -) or a "
        "raw PCM stream on stdin (--stream) with the deployed ONNX model. Files longer than the model's clip "
        "get a timeline of windows.",
    )
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="audio files or folders; - reads stdin")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model.onnx with MODEL.json next to it")
    p.add_argument("--top-k", type=int, default=3, help="labels per file and window (default: %(default)s)")
    p.add_argument("--hop", type=float, default=None, help="hop in seconds between windows (default: half a clip)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON document (JSON lines with --stream)")
    fmt.add_argument("--csv", action="store_true", help="CSV rows (path,scope,start_s,end_s,rank,label,probability)")
    p.add_argument("--all-scores", action="store_true", help="the probability of every class, per file and window")
    p.add_argument("--min-prob", type=float, default=0.0, help="below this probability the label is `unknown`")
    p.add_argument(
        "--silence-db",
        type=float,
        default=SILENCE_DB,
        help="window RMS (dBFS) below which it is `unknown` (%(default)s)",
    )
    p.add_argument("--events", action="store_true", help="merge consecutive windows of one label into events")
    p.add_argument("--allow-foreign-model", action="store_true", help="accept an ONNX file without audioclf metadata")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads; 0 = one per core")
    p.add_argument("--stdin-max-mb", type=int, default=STDIN_MAX_MB, help="buffer limit for PATH - (%(default)s MiB)")
    live = p.add_argument_group("live stream (--stream): raw interleaved PCM on stdin, one JSON line per window")
    live.add_argument("--stream", action="store_true", help="read raw PCM from stdin until EOF or Ctrl-C")
    live.add_argument("--rate", type=int, default=None, help="sample rate of the stream in Hz (required)")
    live.add_argument("--channels", type=int, default=1, help="interleaved channels (default: %(default)s)")
    live.add_argument("--format", default="s16le", help="sample format: s16le | f32le (default: %(default)s)")
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.stream:
        if args.paths:
            raise AudioclfError("--stream reads stdin: drop the PATH arguments (or drop --stream)")
        if args.rate is None:
            raise AudioclfError("--stream needs --rate R, the stream's sample rate in Hz (e.g. --rate 16000)")
        if not 1 <= args.channels <= 64:
            raise AudioclfError(f"--channels must be in 1..64, got {args.channels}")
    elif not args.paths:
        raise AudioclfError("name at least one PATH (a file, a folder, or - for stdin), or pass --stream")
    if sum(str(p) == STDIN for p in args.paths) > 1:
        raise AudioclfError("- (stdin) can be named only once")
    if args.stdin_max_mb < 1:
        raise AudioclfError(f"--stdin-max-mb must be >= 1, got {args.stdin_max_mb}")


FLAG_NAMES = {"top_k": "--top-k", "min_prob": "--min-prob", "silence_db": "--silence-db", "threads": "--threads"}


def _as_flags(exc: AudioclfError) -> AudioclfError:
    """The API's parameter names in a message → the command's option names."""
    text = str(exc)
    for api, flag in {**FLAG_NAMES, "hop": "--hop"}.items():
        if text.startswith(f"{api} must"):
            text = flag + text.removeprefix(api)
    return AudioclfError(text)


def open_model(args: argparse.Namespace) -> Model:
    options = {"top_k": args.top_k, "min_prob": args.min_prob, "silence_db": args.silence_db}
    try:
        model = load_model(args.model, threads=args.threads, allow_foreign=args.allow_foreign_model, **options)
        if args.hop is not None:
            model.hop_samples(args.hop)  # a bad --hop is a usage error before anything is read
    except AudioclfError as exc:
        raise _as_flags(exc) from None
    return model


def score(model: Model, path: Path, args: argparse.Namespace) -> Prediction:
    if str(path) == STDIN:
        buffer = read_bounded(sys.stdin.buffer, args.stdin_max_mb * 2**20, STDIN)
        return model.predict_file(buffer, args.hop, name=STDIN)
    return model.predict_file(path, args.hop)


def run_files(model: Model, args: argparse.Namespace, out: TextIO) -> int:
    """Exit code 0 when every file was scored, 1 when any failed (each gets one stderr line)."""
    inputs = list(collect_inputs(args.paths))
    width = max(len(str(path)) for path, _ in inputs)
    writer = csv.writer(out, lineterminator="\n") if args.csv else None
    if writer:
        writer.writerow(CSV_COLUMNS)
    elif not args.json:
        print(table_header(width, min(args.top_k, len(model.classes))), file=out)
    preds, errors = [], []
    for path, problem in inputs:
        if problem is None:
            try:
                pred = score(model, path, args)
            except AudioclfError as exc:
                problem = str(exc).removeprefix(f"{path}: ")  # the messages start with the file name
            except OSError as exc:
                problem = f"cannot read ({brief(exc.strerror or exc)})"
        if problem is not None:
            errors.append({"path": str(path), "error": problem})
            out.flush()  # keep the error line after the lines already printed
            print(f"audioclf: error: {path}: {problem}", file=sys.stderr, flush=True)
            continue
        if args.json:
            preds.append(prediction_dict(model, pred, args.all_scores, args.events))
        elif writer:
            writer.writerows(csv_rows(model, pred, args.all_scores, args.events))
        else:
            print("\n".join(table_lines(model, pred, width, args.all_scores, args.events)), file=out, flush=True)
    if args.json:
        print(dumps({**header(model), "predictions": preds, "errors": errors}, indent=2), file=out)
    out.flush()
    return 1 if errors else 0


def _stream_line(model: Model, args: argparse.Namespace, item: WindowResult | Event, writer) -> str | None:
    if writer is not None:
        rows = csv_window_rows(model, STDIN, item, args.all_scores) if isinstance(item, WindowResult) else None
        writer.writerows(rows if rows is not None else [csv_event_row(STDIN, item)])
        return None
    if isinstance(item, WindowResult):
        return dumps({"type": "window", **window_dict(model, item, args.all_scores)})
    return dumps({"type": "event", **event_dict(item)})


def run_stream(model: Model, args: argparse.Namespace, out: TextIO) -> int:
    """One line per window as soon as it is complete (and per event as it closes, --events)."""
    decoder = PcmDecoder(args.format, args.channels)
    writer = csv.writer(out, lineterminator="\n") if args.csv else None
    if writer:
        writer.writerow(CSV_COLUMNS)
    else:
        print(dumps({"type": "header", **header(model), "stream_rate": args.rate}), file=out, flush=True)
    tracker = EventTracker() if args.events else None
    windows = model.stream(pcm_blocks(sys.stdin.buffer, decoder), args.rate, args.hop)
    try:
        for window in windows:
            items: list[WindowResult | Event] = [window]
            if tracker is not None and (event := tracker.push(window)) is not None:
                items.append(event)
            for item in items:
                if (line := _stream_line(model, args, item, writer)) is not None:
                    print(line, file=out)
            out.flush()
    except KeyboardInterrupt:
        print("audioclf: stream interrupted; the lines above are complete", file=sys.stderr, flush=True)
        return 130
    last = tracker.finish() if tracker is not None else None
    if last is not None and (line := _stream_line(model, args, last, writer)) is not None:
        print(line, file=out)
    out.flush()
    if decoder.pending:
        print(f"audioclf: warning: the stream ended inside a frame; its last {decoder.pending} bytes were dropped",
              file=sys.stderr)  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """Model, sidecar and option problems raise AudioclfError (the CLI exits 2)."""
    args = build_parser().parse_args(argv)
    check_args(args)
    model = open_model(args)
    return run_stream(model, args, sys.stdout) if args.stream else run_files(model, args, sys.stdout)
