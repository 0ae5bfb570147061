"""quantize: export the raw-waveform ONNX model, check parity with PyTorch in onnxruntime, build
the quantized variants, measure size / F1 / latency of each (interleaved with PyTorch eager, so
the speed ratios hold on a busy machine), deploy the chosen one with the temperature the evaluate
stage fitted in its sidecar, and write its model card (models/model-card.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from audioclf import export, modelcard
from audioclf.audio import load_clip
from audioclf.cache import read_split
from audioclf.config import Params, QuantizeConfig, to_dict
from audioclf.deploy import ONNX_NAME, DeploySidecar, sidecar_path
from audioclf.errors import AudioclfError, brief
from audioclf.features import FeatureExtractor
from audioclf.fileio import atomic_paths, remove_stale_temps, write_json
from audioclf.headline import DETAILS_DIR, quantize_headline
from audioclf.metrics import classification_report, confusion_matrix, softmax
from audioclf.modelio import load_model
from audioclf.runtime import configure_threads
from audioclf.sidecar import ModelSidecar
from audioclf.stages.common import params, parser, say

PARITY_ATOL = 1e-3  # logits; fp32 ONNX vs eager differ by float reordering only
WARMUP = 10  # calls of each candidate before timing: first calls allocate and pick kernels
CARD_CONFUSION = "model-card-confusion.png"  # next to models/model-card.md


@dataclass(frozen=True)
class TestClips:
    splits: Path  # data/splits (train and val are read from it for the card)
    frame: pd.DataFrame  # the decodable test rows
    waves: np.ndarray
    y_true: np.ndarray


def split_folds(frame: pd.DataFrame) -> list[int]:
    return sorted(int(f) for f in pd.to_numeric(frame["fold"], errors="coerce").dropna().unique())


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


@dataclass(frozen=True)
class Reference:
    """The eager PyTorch model on the test clips: the logits each variant must match, and the
    latency batches."""

    logits: np.ndarray
    b1: np.ndarray
    b32: np.ndarray


def torch_reference(full: torch.nn.Module, test_waves: np.ndarray) -> Reference:
    with torch.inference_mode():
        logits = torch.cat([full(torch.from_numpy(test_waves[i : i + 64])) for i in range(0, len(test_waves), 64)])
    b1, b32 = test_waves[:1], np.resize(test_waves, (32, test_waves.shape[1]))
    return Reference(logits.numpy(), b1, b32)


def interleaved(
    full: torch.nn.Module,
    sessions: dict[str, object],
    ref: Reference,
    runs: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, dict[str, float]]:
    """{"b1": {name: ms}, "b32": {...}} for "torch" (eager, inference mode) and every variant,
    timed in interleaved rounds on the same clips."""
    out = {}
    for key, batch, rounds in (("b1", ref.b1, runs), ("b32", ref.b32, max(3, runs // 4))):
        wave = torch.from_numpy(batch)

        def eager(w: torch.Tensor = wave) -> object:
            with torch.inference_mode():
                return full(w)

        fns = {"torch": eager} | {v: (lambda s=s, b=batch: export.run_onnx(s, b)) for v, s in sessions.items()}
        out[key] = export.interleaved_latency_ms(fns, rounds, WARMUP, clock)
    return out


def measure_latency(full: torch.nn.Module, paths: dict[str, Path], ref: Reference, runs: int, threads: int) -> dict:
    """{"served": wall-clock ms with `threads` (what a caller waits), "cpu": CPU ms on one thread
    for both runtimes, timed by the calling thread's clock (both compute in it): blind to other
    processes, so the speed ratios the gate checks hold on a busy machine, where wall-clock
    ratios at several threads swing with the load}."""
    served = interleaved(full, {v: export.session(p, threads) for v, p in paths.items()}, ref, runs)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = {v: export.session(p, 1) for v, p in paths.items()}
        cpu = interleaved(full, single, ref, runs, time.thread_time)
    finally:
        torch.set_num_threads(before)
    return {"served": served, "cpu": cpu}


def build_variants(full: torch.nn.Module, n_samples: int, calib: np.ndarray, q: QuantizeConfig, out: Path) -> dict:
    """variant → its .onnx under `out`: fp32 exported, the others quantized from it."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.pre.onnx"):
        stale.unlink()
    paths = {v: out / f"{v}.onnx" for v in q.variants}
    export.export_onnx(full, n_samples, paths["fp32"], q.opset)
    builders = {
        "fp16": lambda: export.quantize_fp16_weights(paths["fp32"], paths["fp16"]),
        "int8_dynamic": lambda: export.quantize_int8_dynamic(paths["fp32"], paths["int8_dynamic"]),
        "int8_static": lambda: export.quantize_int8_static(paths["fp32"], paths["int8_static"], calib),
    }
    for variant in q.variants:
        if variant != "fp32":
            builders[variant]()
    return paths


def measure(
    path: Path, waves: np.ndarray, y_true: np.ndarray, classes: list[str], ref: Reference, lat: dict, v: str
) -> dict:
    """Size, test F1, latency, speed ratios and agreement with eager PyTorch of variant `v`."""
    logits = export.run_onnx(export.session(path, 1), waves)
    headline, _ = classification_report(y_true, softmax(logits), classes)
    served, cpu = lat["served"], lat["cpu"]
    return {
        "size_mb": round(path.stat().st_size / 1e6, 4),
        "accuracy": headline["accuracy"],
        "f1_macro": headline["f1_macro"],
        "latency_ms_b1": round(served["b1"][v], 3),
        "latency_ms_b32": round(served["b32"][v], 3),
        "speedup_vs_torch_b1": round(cpu["b1"]["torch"] / cpu["b1"][v], 3),
        "speedup_vs_torch_b32": round(cpu["b32"]["torch"] / cpu["b32"][v], 3),
        "speedup_vs_fp32_b1": round(cpu["b1"]["fp32"] / cpu["b1"][v], 3),
        "speedup_vs_fp32_b32": round(cpu["b32"]["fp32"] / cpu["b32"][v], 3),
        "wall_speedup_vs_torch_b1": round(served["b1"]["torch"] / served["b1"][v], 3),
        "argmax_agreement": float(np.mean(logits.argmax(1) == ref.logits.argmax(1))),
        "max_abs_diff": float(np.max(np.abs(logits - ref.logits))),
    }


def check_report(report: dict, q: QuantizeConfig) -> None:
    """fp32 must match eager PyTorch (else the export is wrong); add each variant's F1 drop and
    refuse to deploy one that loses more than the tolerance."""
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


def deploy(src: Path, deployed: Path, meta: ModelSidecar, variant: str, test_f1: float, calib: dict) -> None:
    """model.onnx (the chosen variant, with the graph metadata) and its DeploySidecar, replaced
    together: predict never pairs a new graph with an old sidecar."""
    sidecar = DeploySidecar(
        classes=meta.classes,
        sample_rate=meta.sample_rate,
        n_samples=meta.n_samples,
        duration_s=meta.duration_s,
        variant=variant,
        architecture=meta.architecture,
        feature_params=to_dict(meta.features),
        test_f1_macro=test_f1,
        temperature=calib["temperature"],
        calibration={"fitted_on": "val", **{k: v for k, v in calib.items() if k != "temperature"}},
    )
    with atomic_paths(deployed, sidecar_path(deployed)) as (onnx_tmp, sidecar_tmp):
        export.deploy_copy(src, onnx_tmp, meta.classes, meta.sample_rate, meta.n_samples)
        sidecar_tmp.write_text(sidecar.to_json())


def write_card(
    card: Path, meta: ModelSidecar, cfg: Params, report: dict, deployed: Path, test: TestClips, threads: int
) -> None:
    """models/model-card.md of the deployed variant: its per-class scores and confusion on the test
    clips, the variant table, the data, the split and the params."""
    logits = export.run_onnx(export.session(deployed, threads), test.waves)
    _, per_class = classification_report(test.y_true, softmax(logits), meta.classes)
    frames = {name: read_split(test.splits, name) for name in ("train", "val")}
    inputs = modelcard.CardInputs(
        dataset=cfg.data.dataset,
        classes=meta.classes,
        split_sizes={**{n: len(f) for n, f in frames.items()}, "test": len(test.y_true)},
        split_folds={**{n: split_folds(f) for n, f in frames.items()}, "test": split_folds(test.frame)},
        sample_rate=meta.sample_rate,
        duration_s=meta.duration_s,
        architecture=meta.architecture,
        train={  # the recipe and the architecture's params, as params.yaml spells them
            "model": meta.architecture,
            **{f"model_params.{meta.architecture}.{k}": v for k, v in to_dict(meta.model_params).items()},
            **meta.train,
        },
        features=to_dict(meta.features),
        best_epoch=meta.best_epoch,
        best_val_f1=meta.best_val_f1_macro,
        quantize=to_dict(cfg.quantize),
        per_class=per_class,
        variants={v: report[v] for v in cfg.quantize.variants},
        deployed=cfg.quantize.deploy,
        commit=modelcard.git_provenance(Path.cwd()),
        confusion_png=CARD_CONFUSION,
    )
    modelcard.write(card, inputs, confusion_matrix(test.y_true, logits.argmax(1), len(meta.classes)))


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
    # the graph computes the features itself, with the exact settings model.json holds
    full = export.WaveformClassifier(FeatureExtractor(meta.features, meta.sample_rate), model).eval()

    test = read_split(args.splits, "test")
    test = test[test["label"].isin(meta.classes)]
    n_listed = len(test)
    train = read_split(args.splits, "train")
    calib_rows = train.sample(n=min(q.calibration_samples, len(train)), random_state=0)
    test_waves, test = load_waves(args.raw, test, meta.sample_rate, meta.n_samples, "test audio")
    calib_waves, _ = load_waves(args.raw, calib_rows, meta.sample_rate, meta.n_samples, "calibration audio")
    if len(test_waves) == 0 or len(calib_waves) == 0:
        raise AudioclfError(
            f"{args.splits}: no decodable test or training clips under {args.raw}; rerun dvc repro download split"
        )
    y_true = test["label"].map({c: i for i, c in enumerate(meta.classes)}).to_numpy()

    ref = torch_reference(full, test_waves)
    (args.models / "variants").mkdir(parents=True, exist_ok=True)
    remove_stale_temps(args.models, args.models / "variants", args.metrics, args.metrics / DETAILS_DIR)
    paths = build_variants(full, meta.n_samples, calib_waves, q, args.models / "variants")
    lat = measure_latency(full, paths, ref, q.latency_runs, threads)
    report: dict[str, object] = {
        v: measure(paths[v], test_waves, y_true, meta.classes, ref, lat, v) for v in q.variants
    }
    check_report(report, q)
    report["deployed"] = q.deploy
    report["torch_latency_ms"] = {
        "b1": round(lat["served"]["b1"]["torch"], 3),
        "b32": round(lat["served"]["b32"]["torch"], 3),
        "threads": threads,
        "cpu_1thread_b1": round(lat["cpu"]["b1"]["torch"], 3),
        "cpu_1thread_b32": round(lat["cpu"]["b32"]["torch"], 3),
        "rounds_b1": q.latency_runs,
    }
    deploy(paths[q.deploy], args.models / ONNX_NAME, meta, q.deploy, report[q.deploy]["f1_macro"], calib)
    write_json(args.metrics / DETAILS_DIR / "quantize.json", report)
    write_json(args.metrics / "quantize.json", quantize_headline(report))
    clips = TestClips(args.splits, test, test_waves, y_true)
    write_card(args.models / "model-card.md", meta, cfg, report, paths[q.deploy], clips, threads)
    lines = [
        f"{v:>13}: {report[v]['size_mb']:.3f} MB, F1 {report[v]['f1_macro']:.4f}, "
        f"b1 {report[v]['latency_ms_b1']:.2f} ms, b32 {report[v]['latency_ms_b32']:.1f} ms "
        f"({report[v]['speedup_vs_torch_b1']:.2f}x torch at b1, {report[v]['speedup_vs_torch_b32']:.2f}x at b32)"
        for v in q.variants
    ]
    say(
        "quantize",
        f"deployed {q.deploy} → {args.models / ONNX_NAME}; {len(test)} test clips ({n_listed - len(test)} undecodable "
        f"skipped); torch eager b1 {lat['served']['b1']['torch']:.2f} ms\n" + "\n".join(lines),
    )
