"""train: fit the model chosen in params on the cached features of the train split; keep the
epoch with the best validation macro-F1. Writes models/model.pt + model.json and DVCLive logs.

With `runtime.nproc > 1` the stage re-launches itself under torchrun (DDP, one process per
rank); rank 0 alone writes the model, the checkpoints and the DVCLive logs."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audioclf import distributed
from audioclf.cache import FeatureCache, load_cache, read_split
from audioclf.config import FeaturesConfig, Params, build_block
from audioclf.errors import AudioclfError, brief
from audioclf.fileio import atomic_dir, remove_stale_temps
from audioclf.modelio import save_model
from audioclf.runtime import configure_threads, select_device
from audioclf.sidecar import ModelSidecar
from audioclf.stages.common import params, parser, say
from audioclf.training import EpochStats, TrainResult, fit_rows, train_model

MODULE_ARGV = ("audioclf.cli", "stage", "train")  # how torchrun re-enters this stage


def log_metrics(live: Any, stats: EpochStats) -> None:
    """One DVCLive step per epoch (step = epoch - 1): train/{loss,accuracy,f1_macro}, val/{...}, lr."""
    live.step = stats.epoch - 1
    for key, value in dataclasses.asdict(stats).items():
        if key != "epoch":
            split, _, metric = key.partition("_")
            live.log_metric(f"{split}/{metric}" if split in ("train", "val") else key, value)
    live.next_step()


def model_sidecar(
    cfg: Params,
    cache: FeatureCache,
    result: TrainResult,
    n_train: int,
    device: torch.device,
    ctx: distributed.DistContext,
) -> ModelSidecar:
    """model.json: the architecture and its params whole, the data format, the normalisation."""
    try:
        features = build_block(FeaturesConfig, cache.meta.get("features") or {}, "features")
    except AudioclfError as exc:
        raise AudioclfError(f"data/features/meta.json: {brief(exc)}; rebuild it (dvc repro -f features)") from None
    return ModelSidecar(
        architecture=cfg.train.model,
        model_params=cfg.train.arch_params,
        classes=cache.classes,
        input_shape=list(cache.x.shape[1:]),
        normalization={
            "mean": result.model.mean.squeeze(0).squeeze(-1).tolist(),
            "std": result.model.std.squeeze(0).squeeze(-1).tolist(),
            "fitted_on": f"{n_train} training rows",
        },
        features=features,
        sample_rate=cache.meta["sample_rate"],
        duration_s=cache.meta["duration_s"],
        n_samples=cache.meta["n_samples"],
        # the rest of the train block: the architecture and its params are stored once, above
        train={k: v for k, v in cfg.train.resolved().items() if k not in ("model", "model_params")},
        best_epoch=result.best_epoch,
        best_val_f1_macro=result.best_val_f1,
        device=str(device),
        processes=ctx.world_size,
    )


def main(argv: list[str] | None = None) -> int | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = parser("train", __doc__)
    p.add_argument("--features", type=Path, default=Path("data/features"))
    p.add_argument("--splits", type=Path, default=Path("data/splits"))
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--live", type=Path, default=Path("metrics/train"))
    args = p.parse_args(argv)
    cfg = params(args)
    ctx = distributed.context_from_env(os.environ)
    if cfg.runtime.nproc > 1 and not ctx.enabled:
        say("train", f"launching {cfg.runtime.nproc} processes under torchrun (runtime.nproc)")
        return distributed.launch(cfg.runtime.nproc, [*MODULE_ARGV, *argv])

    if ctx.is_main:  # temp files a killed run left (a checkpoint or model.pt cut short)
        remove_stale_temps(args.models, args.models / "checkpoints")
    cache = load_cache(args.features)
    train_rows = cache.rows_for(read_split(args.splits, "train"), "train")
    val_rows = cache.rows_for(read_split(args.splits, "val"), "val")
    device = select_device(cfg.runtime.device, ctx.local_rank)
    threads = configure_threads(cfg.runtime.threads, processes=ctx.local_world_size)
    distributed.init_process_group(ctx, device)
    # the DVCLive logs go to a temp folder that replaces metrics/train only once the model is
    # saved: a failed run leaves the shipped model's logs as they were
    with atomic_dir(args.live) if ctx.is_main else contextlib.nullcontext() as live_dir:
        try:
            result = _train(args, cfg, cache, train_rows, val_rows, device, ctx, live_dir)
        finally:
            distributed.destroy_process_group()
        if not ctx.is_main:
            return None
        _ship(args, cfg, cache, fit_rows(train_rows, val_rows, cfg.train), result, device, ctx, threads)
    return None


def _ship(
    args: argparse.Namespace,
    cfg: Params,
    cache: FeatureCache,
    train_rows: np.ndarray,
    result: TrainResult,
    device: torch.device,
    ctx: distributed.DistContext,
    threads: int,
) -> None:
    """Write model.pt + model.json and the summary line (rank 0)."""
    sidecar = model_sidecar(cfg, cache, result, len(train_rows), device, ctx)
    save_model(result.model.cpu(), sidecar, args.models)
    resumed = f", resumed after epoch {result.resumed_from}" if result.resumed_from else ""
    where = f"{ctx.world_size} × {device.type}" if ctx.enabled else str(device)
    say(
        "train",
        f"{cfg.train.model} on {where} ({threads} threads each): best epoch {result.best_epoch}/"
        f"{len(result.history)} val macro-F1 {result.best_val_f1:.4f}{resumed} → {args.models}",
    )


def _train(
    args: argparse.Namespace,
    cfg: Params,
    cache: FeatureCache,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    device: torch.device,
    ctx: distributed.DistContext,
    live_dir: Path | None,
) -> TrainResult:
    """Run training with DVCLive into `live_dir` on rank 0 (other ranks log nothing)."""
    if ctx.is_main:
        from dvclive import Live

        # always a fresh log: a resumed train_model replays the checkpoint's epochs into it
        live_cm = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False)
    else:
        live_cm = contextlib.nullcontext()
    with live_cm as live:
        result = train_model(
            cache.x, cache.labels(), train_rows, val_rows, cache.classes, cfg.train, device,
            checkpoint_dir=args.models / "checkpoints", on_epoch=(lambda s: log_metrics(live, s)) if live else None,
            ctx=ctx, progress=ctx.is_main,
        )  # fmt: skip
        if live:
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
    return result
