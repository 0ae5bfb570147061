"""train: fit the model chosen in params on the cached features of the train split; keep the
epoch with the best validation macro-F1. Writes models/model.pt + model.json and DVCLive logs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from audioclf.cache import load_cache, read_split
from audioclf.config import to_dict
from audioclf.modelio import save_model
from audioclf.stages.common import params, parser, say
from audioclf.training import (
    EpochStats,
    can_resume,
    configure_threads,
    fingerprint,
    select_device,
    train_model,
)


def main(argv: list[str] | None = None) -> None:
    p = parser("train", __doc__)
    p.add_argument("--features", type=Path, default=Path("data/features"))
    p.add_argument("--splits", type=Path, default=Path("data/splits"))
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--live", type=Path, default=Path("metrics/train"))
    args = p.parse_args(argv)
    cfg = params(args)
    from dvclive import Live

    cache = load_cache(args.features)
    train_rows = cache.rows_for(read_split(args.splits, "train"), "train")
    val_rows = cache.rows_for(read_split(args.splits, "val"), "val")
    device = select_device(cfg.runtime.device)
    threads = configure_threads(cfg.runtime.threads)
    checkpoints = args.models / "checkpoints"
    labels = cache.labels()
    run_id = fingerprint(cfg.train, tuple(cache.x.shape), cache.classes, train_rows)
    resuming = can_resume(checkpoints, run_id)

    with Live(str(args.live), dvcyaml=False, save_dvc_exp=False, resume=resuming) as live:

        def log_epoch(stats: EpochStats) -> None:
            for key, value in dataclasses.asdict(stats).items():
                if key != "epoch":
                    split, _, metric = key.partition("_")
                    live.log_metric(f"{split}/{metric}" if split in ("train", "val") else key, value)
            live.next_step()

        result = train_model(
            cache.x, labels, train_rows, val_rows, cache.classes, cfg.train, device,
            checkpoint_dir=checkpoints, on_epoch=log_epoch,
        )  # fmt: skip
        # the summary DVC shows is the shipped (best) epoch, not the last one
        live.summary = {
            "best": {
                "epoch": result.best_epoch,
                "val_f1_macro": result.best_val_f1,
                "val_accuracy": result.best_val_accuracy,
            },
            "epochs_run": len(result.history),
        }
        live.make_summary()

    sidecar = {
        "architecture": cfg.train.model,
        "model_params": {"channels": cfg.train.channels, "dropout": cfg.train.dropout},
        "classes": cache.classes,
        "input_shape": list(cache.x.shape[1:]),
        "feature_params": cache.meta["features"],
        "sample_rate": cache.meta["sample_rate"],
        "duration_s": cache.meta["duration_s"],
        "n_samples": cache.meta["n_samples"],
        "normalization": {
            "mean": result.model.mean.squeeze(0).squeeze(-1).tolist(),
            "std": result.model.std.squeeze(0).squeeze(-1).tolist(),
            "fitted_on": f"{len(train_rows)} training rows",
        },
        "train": to_dict(cfg.train),
        "best_epoch": result.best_epoch,
        "best_val_f1_macro": result.best_val_f1,
        "device": str(device),
    }
    save_model(result.model.cpu(), sidecar, args.models)
    resumed = f", resumed after epoch {result.resumed_from}" if result.resumed_from else ""
    say(
        "train",
        f"{cfg.train.model} on {device} ({threads} threads): best epoch {result.best_epoch}/"
        f"{len(result.history)} val macro-F1 {result.best_val_f1:.4f}{resumed} → {args.models}",
    )
