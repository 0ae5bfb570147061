"""quantize: export the raw-waveform ONNX model, check parity with PyTorch in onnxruntime, build
the quantized variants, measure size / F1 / latency of each (interleaved with PyTorch eager, so
the speed ratios hold on a busy machine), and deploy the chosen one with the temperature the
evaluate stage fitted in its sidecar."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from audioclf import export
from audioclf.audio import load_clip
from audioclf.cache import read_split
from audioclf.config import FeaturesConfig
from audioclf.errors import AudioclfError, brief
from audioclf.features import FeatureExtractor
from audioclf.fileio import atomic_paths, remove_stale_temps, write_json
from audioclf.metrics import classification_report, softmax
from audioclf.modelio import load_model
from audioclf.stages.common import params, parser, say
from audioclf.training import configure_threads

PARITY_ATOL = 1e-3  # logits; fp32 ONNX vs eager differ by float reordering only
WARMUP = 10  # calls of each candidate before timing: first calls allocate and pick kernels


def read_calibration(path: Path) -> dict:
    """The evaluate stage's temperature (metrics/calibration.json)."""
    try:
        calib = json.loads(path.read_text())
        temperature = float(calib["temperature"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AudioclfError(f"{path}: no readable temperature ({brief(exc)}); run the evaluate stage first") from exc
    if not np.isfinite(temperature) or temperature <= 0:
        raise AudioclfError(f"{path}: temperature {temperature} is not > 0; rerun the evaluate stage")
    return calib


def measure_latency(
    full: torch.nn.Module,
    sessions: dict[str, object],
    b1: np.ndarray,
    b32: np.ndarray,
    runs: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[str, float]]:
    """{"b1": {name: ms}, "b32": {...}} for "torch" (eager, inference mode) and every variant,
    timed in interleaved rounds on the same clips."""
    out = {}
    for key, batch, rounds in (("b1", b1, runs), ("b32", b32, max(3, runs // 4))):
        wave = torch.from_numpy(batch)

        def eager(w: torch.Tensor = wave) -> object:
            with torch.inference_mode():
                return full(w)

        fns = {"torch": eager} | {v: (lambda s=s, b=batch: export.run_onnx(s, b)) for v, s in sessions.items()}
        out[key] = export.interleaved_latency_ms(fns, rounds, WARMUP, clock)
    return out


def speed_ratios(full: torch.nn.Module, paths: dict[str, Path], b1: np.ndarray, b32: np.ndarray, runs: int) -> dict:
    """The speed ratios the gate checks, on one thread for both runtimes, timed by the calling
    thread's CPU time (both compute in it): blind to other processes, so they hold on a busy
    machine, where wall-clock ratios at several threads swing with the load."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = {v: export.session(p, 1) for v, p in paths.items()}
        return measure_latency(full, single, b1, b32, runs, time.thread_time)
    finally:
        torch.set_num_threads(before)


def load_waves(
    raw: Path, frame: pd.DataFrame, sample_rate: int, n_samples: int, desc: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """The clips of `frame` that decode, and those rows. Undecodable files were already counted,
    listed and bounded by the features stage (meta.json `skipped`), which evaluate drops too;
    failing here instead would block deployment on a file the rest of the pipeline accepted."""
    waves, kept = [], []
    for i, path in enumerate(tqdm(frame["path"], desc=desc, unit="clip")):
        try:
            waves.append(load_clip(raw / path, sample_rate, n_samples))
            kept.append(i)
        except AudioclfError:
            continue
    array = np.stack(waves) if waves else np.zeros((0, n_samples), dtype=np.float32)
    return array, frame.iloc[kept]


def main(argv: list[str] | None = None) -> None:
    p = parser("quantize", __doc__)
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--splits", type=Path, default=Path("data/splits"))
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--metrics", type=Path, default=Path("metrics"))
    args = p.parse_args(argv)
    calib = read_calibration(args.metrics / "calibration.json")
    cfg = params(args)
    q = cfg.quantize
    threads = configure_threads(cfg.runtime.threads)
    model, meta = load_model(args.models)
    sidecar_path = args.models / "model.json"
    missing = [k for k in ("feature_params", "sample_rate", "n_samples", "duration_s") if k not in meta]
    if missing:  # the graph computes the features itself: it needs their exact settings
        raise AudioclfError(f"{sidecar_path}: lacks {', '.join(missing)}; retrain (dvc repro -f train)")
    sample_rate, n_samples, classes = meta["sample_rate"], meta["n_samples"], meta["classes"]
    try:
        feature_cfg = FeaturesConfig(**meta["feature_params"])
    except (TypeError, AudioclfError) as exc:
        raise AudioclfError(f"{sidecar_path}: invalid feature_params ({exc}); retrain (dvc repro -f train)") from exc
    extractor = FeatureExtractor(feature_cfg, sample_rate)
    full = export.WaveformClassifier(extractor, model).eval()

    test = read_split(args.splits, "test")
    test = test[test["label"].isin(classes)]
    n_listed = len(test)
    train = read_split(args.splits, "train")
    calib_rows = train.sample(n=min(q.calibration_samples, len(train)), random_state=0)
    test_waves, test = load_waves(args.raw, test, sample_rate, n_samples, "test audio")
    calib_waves, _ = load_waves(args.raw, calib_rows, sample_rate, n_samples, "calibration audio")
    if len(test_waves) == 0 or len(calib_waves) == 0:
        raise AudioclfError(
            f"{args.splits}: no decodable test or training clips under {args.raw}; rerun dvc repro download split"
        )
    y_true = test["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()

    with torch.no_grad():
        torch_logits = torch.cat(
            [full(torch.from_numpy(test_waves[i : i + 64])) for i in range(0, len(test_waves), 64)]
        )
    torch_logits = torch_logits.numpy()
    b1, b32 = test_waves[:1], np.resize(test_waves, (32, n_samples))

    variants_dir = args.models / "variants"
    variants_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(args.models, variants_dir, args.metrics)  # what a killed run left
    for stale in variants_dir.glob("*.pre.onnx"):
        stale.unlink()
    paths = {v: variants_dir / f"{v}.onnx" for v in q.variants}
    export.export_onnx(full, n_samples, paths["fp32"], q.opset)
    builders = {
        "fp16": lambda: export.quantize_fp16_weights(paths["fp32"], paths["fp16"]),
        "int8_dynamic": lambda: export.quantize_int8_dynamic(paths["fp32"], paths["int8_dynamic"]),
        "int8_static": lambda: export.quantize_int8_static(paths["fp32"], paths["int8_static"], calib_waves),
    }
    report: dict[str, object] = {}
    sessions = {}
    for variant in q.variants:
        if variant != "fp32":
            builders[variant]()
        sessions[variant] = export.session(paths[variant], threads)
    latency = measure_latency(full, sessions, b1, b32, q.latency_runs)
    torch_b1, torch_b32 = latency["b1"]["torch"], latency["b32"]["torch"]
    cpu = speed_ratios(full, paths, b1, b32, q.latency_runs)
    for variant, sess in sessions.items():
        logits = export.run_onnx(sess, test_waves)
        headline, _ = classification_report(y_true, softmax(logits), classes)
        lat_b1, lat_b32 = latency["b1"][variant], latency["b32"][variant]
        report[variant] = {
            "size_mb": round(paths[variant].stat().st_size / 1e6, 4),
            "accuracy": headline["accuracy"],
            "f1_macro": headline["f1_macro"],
            "latency_ms_b1": round(lat_b1, 3),
            "latency_ms_b32": round(lat_b32, 3),
            "speedup_vs_torch_b1": round(cpu["b1"]["torch"] / cpu["b1"][variant], 3),
            "speedup_vs_torch_b32": round(cpu["b32"]["torch"] / cpu["b32"][variant], 3),
            "speedup_vs_fp32_b1": round(cpu["b1"]["fp32"] / cpu["b1"][variant], 3),
            "speedup_vs_fp32_b32": round(cpu["b32"]["fp32"] / cpu["b32"][variant], 3),
            "wall_speedup_vs_torch_b1": round(torch_b1 / lat_b1, 3),
            "argmax_agreement": float(np.mean(logits.argmax(1) == torch_logits.argmax(1))),
            "max_abs_diff": float(np.max(np.abs(logits - torch_logits))),
        }
    fp32 = report["fp32"]
    if fp32["argmax_agreement"] < 1.0 or fp32["max_abs_diff"] > PARITY_ATOL:
        raise RuntimeError(
            f"export bug: fp32 ONNX disagrees with PyTorch (agreement {fp32['argmax_agreement']:.4f}, "
            f"max |Δlogit| {fp32['max_abs_diff']:.2e})"
        )
    for variant in q.variants:
        report[variant]["f1_drop"] = round(fp32["f1_macro"] - report[variant]["f1_macro"], 4)
        report[variant]["within_tolerance"] = report[variant]["f1_drop"] <= q.f1_tolerance
    if not report[q.deploy]["within_tolerance"]:
        raise AudioclfError(
            f"params: `quantize.deploy` is {q.deploy}, which loses {report[q.deploy]['f1_drop']:.4f} macro-F1 "
            f"(> quantize.f1_tolerance {q.f1_tolerance}); deploy another variant or raise the tolerance"
        )
    report["deployed"] = q.deploy
    report["torch_latency_ms"] = {
        "b1": round(torch_b1, 3),
        "b32": round(torch_b32, 3),
        "threads": threads,
        "rounds_b1": q.latency_runs,
        "cpu_1thread_b1": round(cpu["b1"]["torch"], 3),
        "cpu_1thread_b32": round(cpu["b32"]["torch"], 3),
    }

    deployed = args.models / "model.onnx"
    sidecar = export.deployment_sidecar(
        classes,
        sample_rate,
        meta["duration_s"],
        n_samples,
        q.deploy,
        architecture=meta["architecture"],
        feature_params=meta["feature_params"],
        test_f1_macro=report[q.deploy]["f1_macro"],
        temperature=calib["temperature"],
        calibration={"fitted_on": "val", **{k: v for k, v in calib.items() if k != "temperature"}},
    )
    # model and sidecar are replaced together: predict never pairs a new graph with an old sidecar
    with atomic_paths(deployed, args.models / "model.onnx.json") as (onnx_tmp, sidecar_tmp):
        export.deploy_copy(paths[q.deploy], onnx_tmp, classes, sample_rate, n_samples)
        sidecar_tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    write_json(args.metrics / "quantize.json", report)
    lines = [
        f"{v:>13}: {report[v]['size_mb']:.3f} MB, F1 {report[v]['f1_macro']:.4f}, "
        f"b1 {report[v]['latency_ms_b1']:.2f} ms, b32 {report[v]['latency_ms_b32']:.1f} ms "
        f"({report[v]['speedup_vs_torch_b1']:.2f}x torch at b1, {report[v]['speedup_vs_torch_b32']:.2f}x at b32)"
        for v in q.variants
    ]
    say(
        "quantize",
        f"deployed {q.deploy} → {deployed}; {len(test)} test clips ({n_listed - len(test)} undecodable skipped); "
        f"torch eager b1 {torch_b1:.2f} ms\n" + "\n".join(lines),
    )
