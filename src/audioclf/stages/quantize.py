"""quantize: export the raw-waveform ONNX model, check parity with PyTorch in onnxruntime, build
the quantized variants, measure size / F1 / latency of each, deploy the chosen one and write its
model card (models/model-card.md)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from audioclf import export, modelcard
from audioclf.audio import load_clip
from audioclf.cache import read_split
from audioclf.config import FeaturesConfig
from audioclf.errors import AudioclfError
from audioclf.features import FeatureExtractor
from audioclf.fileio import atomic_paths, remove_stale_temps, write_json
from audioclf.headline import DETAILS_DIR, quantize_headline
from audioclf.metrics import classification_report, confusion_matrix, softmax
from audioclf.modelio import load_model
from audioclf.stages.common import params, parser, say
from audioclf.training import configure_threads

PARITY_ATOL = 1e-3  # logits; fp32 ONNX vs eager differ by float reordering only
CARD_CONFUSION = "model-card-confusion.png"  # next to models/model-card.md


def split_folds(frame: pd.DataFrame) -> list[int]:
    return sorted(int(f) for f in pd.to_numeric(frame["fold"], errors="coerce").dropna().unique())


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
    with torch.no_grad():
        torch_b1 = export.median_latency_ms(lambda: full(torch.from_numpy(b1)), q.latency_runs)
        torch_b32 = export.median_latency_ms(lambda: full(torch.from_numpy(b32)), max(3, q.latency_runs // 4))

    variants_dir = args.models / "variants"
    variants_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(args.models, variants_dir, args.metrics, args.metrics / DETAILS_DIR)  # what a killed run left
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
    deployed_pred, deployed_per_class = None, {}
    for variant in q.variants:
        if variant != "fp32":
            builders[variant]()
        sess = export.session(paths[variant], threads)
        logits = export.run_onnx(sess, test_waves)
        headline, per_class = classification_report(y_true, softmax(logits), classes)
        if variant == q.deploy:
            deployed_pred, deployed_per_class = logits.argmax(1), per_class
        lat_b1 = export.median_latency_ms(lambda s=sess: export.run_onnx(s, b1), q.latency_runs)
        lat_b32 = export.median_latency_ms(lambda s=sess: export.run_onnx(s, b32), max(3, q.latency_runs // 4))
        report[variant] = {
            "size_mb": round(paths[variant].stat().st_size / 1e6, 4),
            "accuracy": headline["accuracy"],
            "f1_macro": headline["f1_macro"],
            "latency_ms_b1": round(lat_b1, 3),
            "latency_ms_b32": round(lat_b32, 3),
            "speedup_vs_torch_b1": round(torch_b1 / lat_b1, 3),
            "speedup_vs_torch_b32": round(torch_b32 / lat_b32, 3),
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
    report["torch_latency_ms"] = {"b1": round(torch_b1, 3), "b32": round(torch_b32, 3), "threads": threads}

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
    )
    # model and sidecar are replaced together: predict never pairs a new graph with an old sidecar
    with atomic_paths(deployed, args.models / "model.onnx.json") as (onnx_tmp, sidecar_tmp):
        export.deploy_copy(paths[q.deploy], onnx_tmp, classes, sample_rate, n_samples)
        sidecar_tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    write_json(args.metrics / DETAILS_DIR / "quantize.json", report)
    write_json(args.metrics / "quantize.json", quantize_headline(report))
    card = modelcard.CardInputs(
        dataset=cfg.data.dataset,
        classes=classes,
        split_sizes={"train": len(train), "val": len(read_split(args.splits, "val")), "test": len(test)},
        split_folds={name: split_folds(read_split(args.splits, name)) for name in ("train", "val", "test")},
        sample_rate=sample_rate,
        duration_s=meta["duration_s"],
        architecture=meta["architecture"],
        train=meta.get("train", {}),
        features=meta["feature_params"],
        best_epoch=meta.get("best_epoch", "?"),
        best_val_f1=meta.get("best_val_f1_macro", "?"),
        quantize=dataclasses.asdict(q),
        per_class=deployed_per_class,
        variants={v: report[v] for v in q.variants},
        deployed=q.deploy,
        commit=modelcard.git_provenance(Path.cwd()),
        confusion_png=CARD_CONFUSION,
    )
    modelcard.write(args.models / "model-card.md", card, confusion_matrix(y_true, deployed_pred, len(classes)))
    lines = [
        f"{v:>13}: {report[v]['size_mb']:.3f} MB, F1 {report[v]['f1_macro']:.4f}, "
        f"b1 {report[v]['latency_ms_b1']:.2f} ms, b32 {report[v]['latency_ms_b32']:.1f} ms "
        f"({report[v]['speedup_vs_torch_b1']:.2f}x torch at b1)"
        for v in q.variants
    ]
    say(
        "quantize",
        f"deployed {q.deploy} → {deployed}; {len(test)} test clips ({n_listed - len(test)} undecodable skipped); "
        f"torch eager b1 {torch_b1:.2f} ms\n" + "\n".join(lines),
    )
