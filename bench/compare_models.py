"""Acceptance comparison on a pipeline's feature cache: convnet vs resnet18, with and without
SpecAugment + mixup, each trained on the train split (early stopping on val) and scored on test.

    python bench/compare_models.py                       # data/features + data/splits, params.yaml's train block
    python bench/compare_models.py --epochs 8 --models resnet18 --out metrics/compare.json

Every variant starts from params.yaml's `train` block; only the model and the augmentation change.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from audioclf.cache import load_cache, read_split
from audioclf.config import AugmentConfig, TrainConfig, load_params
from audioclf.metrics import macro_f1
from audioclf.runtime import configure_threads, select_device
from audioclf.training import predict_logits, train_model

NO_AUGMENT = AugmentConfig(time_shift=0.0, freq_masks=0, time_masks=0, mask_frac=0.0, mixup_alpha=0.0)


def augment_variants(base: AugmentConfig, mixup_alpha: float) -> dict[str, AugmentConfig]:
    """none; the params' SpecAugment + time shift with mixup on."""
    return {"none": NO_AUGMENT, "specaugment+mixup": dataclasses.replace(base, mixup_alpha=mixup_alpha)}


def run_variant(cache, train_rows, val_rows, test_rows, cfg: TrainConfig, device) -> dict[str, float]:
    labels = cache.labels()
    start = time.perf_counter()
    result = train_model(
        cache.x, labels, train_rows, val_rows, cache.classes, cfg, device, progress=False
    )  # no checkpoint dir: every variant trains from scratch
    seconds = time.perf_counter() - start
    pred = predict_logits(result.model, cache.x, test_rows, device).argmax(1)
    return {
        "test_f1_macro": round(macro_f1(labels[test_rows], pred, len(cache.classes)), 4),
        "test_accuracy": round(float(np.mean(pred == labels[test_rows])), 4),
        "best_val_f1_macro": round(result.best_val_f1, 4),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "train_s": round(seconds, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--features", type=Path, default=Path("data/features"))
    p.add_argument("--splits", type=Path, default=Path("data/splits"))
    p.add_argument("--models", nargs="+", default=["convnet", "resnet18"])
    p.add_argument("--augment", nargs="+", default=["none", "specaugment+mixup"])
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs (resnets are slow on CPU)")
    p.add_argument("--mixup-alpha", type=float, default=0.2)
    p.add_argument("--out", type=Path, default=None, help="write the table as JSON here too")
    args = p.parse_args()

    params = load_params(args.params)
    configure_threads(params.runtime.threads)
    device = select_device(params.runtime.device)
    cache = load_cache(args.features)
    rows = {name: cache.rows_for(read_split(args.splits, name), name) for name in ("train", "val", "test")}
    base = params.train if args.epochs is None else dataclasses.replace(params.train, epochs=args.epochs)
    table = {}
    for model in args.models:
        for aug_name, aug in augment_variants(base.augment, args.mixup_alpha).items():
            if aug_name not in args.augment:
                continue
            cfg = dataclasses.replace(base, model=model, augment=aug)
            scores = run_variant(cache, rows["train"], rows["val"], rows["test"], cfg, device)
            table[f"{model} / {aug_name}"] = scores
            print(f"{model:10s} {aug_name:18s} " + " ".join(f"{k}={v}" for k, v in scores.items()), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"epochs": base.epochs, "device": str(device), "results": table}, indent=2))


if __name__ == "__main__":
    main()
