"""Training on cached features: normalisation fitted on the training rows, SpecAugment + time
shift + mixup, AdamW with a one-cycle (or warm-up/linear) schedule, early stopping on validation
macro-F1 keeping the best epoch, and a per-epoch checkpoint for automatic resume.

Every random draw comes from generators seeded by `train.seed` whose states are checkpointed, so
a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from audioclf.config import AugmentConfig, TrainConfig, to_dict
from audioclf.errors import AudioclfError
from audioclf.fileio import atomic_path
from audioclf.metrics import macro_f1
from audioclf.models import Classifier, backbone_parameters, build_model

CHECKPOINT_NAME = "last.pt"


def select_device(preference: str) -> torch.device:
    """`auto` → CUDA when present, else CPU. Asking for CUDA without one is a user error."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise AudioclfError("runtime.device is cuda but no CUDA device is visible; use auto or cpu")
        return torch.device("cuda")
    return torch.device("cpu")


def configure_threads(threads: int) -> int:
    """0 = one intra-op thread per core (torch's default may be lower inside containers)."""
    n = threads if threads > 0 else max(1, os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def fit_normalization(x: np.ndarray, rows: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per (channel, freq bin) over the given rows and all frames, in float64."""
    total = np.zeros(x.shape[1:3], dtype=np.float64)
    total_sq = np.zeros_like(total)
    count = 0
    for start in range(0, len(rows), chunk):
        block = np.asarray(x[np.sort(rows[start : start + chunk])], dtype=np.float64)
        total += block.sum(axis=(0, 3))
        total_sq += (block**2).sum(axis=(0, 3))
        count += block.shape[0] * block.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def spec_augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random time roll, then `freq_masks`/`time_masks` masks per clip (set to the clip's mean,
    i.e. ~0 after normalisation). x: (B, C, F, T) normalised features."""
    b, _, n_freq, n_time = x.shape
    if cfg.time_shift > 0:
        max_shift = max(1, int(cfg.time_shift * n_time))
        shifts = torch.randint(-max_shift, max_shift + 1, (b,), generator=gen)
        idx = (torch.arange(n_time)[None, :] - shifts[:, None]) % n_time
        x = torch.gather(x, 3, idx[:, None, None, :].expand_as(x).to(x.device))
    keep = torch.ones(b, 1, n_freq, n_time, dtype=torch.bool)
    for axis, count, size in ((2, cfg.freq_masks, n_freq), (3, cfg.time_masks, n_time)):
        width_max = int(cfg.mask_frac * size)
        if width_max < 1:
            continue
        for _ in range(count):
            width = torch.randint(0, width_max + 1, (b,), generator=gen)
            start = (torch.rand(b, generator=gen) * (size - width + 1)).long()
            pos = torch.arange(size)[None, :]
            band = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # (B, size)
            band = band[:, None, :, None] if axis == 2 else band[:, None, None, :]
            keep &= ~band
    return x * keep.to(x.device)


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_f1_macro: float
    lr: float


@dataclass
class TrainResult:
    model: Classifier
    best_epoch: int
    best_val_f1: float
    best_val_accuracy: float
    history: list[EpochStats] = field(default_factory=list)
    resumed_from: int | None = None


def _make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=cfg.warmup_frac
        )
    warmup = max(1, int(cfg.warmup_frac * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _batches(x: np.ndarray, rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


def _load(x: np.ndarray, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    # sorted reads are sequential on a memmap; restore the requested order afterwards
    order = np.argsort(rows, kind="stable")
    block = np.empty((len(rows), *x.shape[1:]), dtype=np.float32)
    block[order] = x[rows[order]]
    return torch.from_numpy(block).to(device, non_blocking=True)


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: np.ndarray, rows: np.ndarray, device: torch.device, batch_size: int = 256
) -> np.ndarray:
    model.eval()
    out = [model(_load(x, chunk, device)).float().cpu().numpy() for chunk in _batches(x, rows, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def fingerprint(cfg: TrainConfig, x_shape: tuple, classes: list[str], train_rows: np.ndarray) -> str:
    """Identifies a run, so a checkpoint from other params or data is never resumed."""
    blob = json.dumps(
        [to_dict(cfg), list(x_shape), classes, hashlib.sha256(np.asarray(train_rows).tobytes()).hexdigest()],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def can_resume(checkpoint_dir: Path, run_id: str) -> bool:
    """True when a checkpoint of exactly this run (same params, data and split) exists."""
    path = checkpoint_dir / CHECKPOINT_NAME
    if not path.is_file():
        return False
    try:
        return torch.load(path, map_location="cpu", weights_only=True).get("fingerprint") == run_id
    except (RuntimeError, EOFError, ValueError, KeyError):
        return False  # a torn or foreign checkpoint: start afresh


def _rng_state(gen: torch.Generator, np_rng: np.random.Generator) -> dict:
    return {
        "gen": gen.get_state(),
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(np_rng.bit_generator.state),
    }


def _set_rng_state(state: dict, gen: torch.Generator, np_rng: np.random.Generator) -> None:
    gen.set_state(state["gen"])
    torch.set_rng_state(state["torch"])
    np_rng.bit_generator.state = json.loads(state["numpy"])


def train_model(
    x: np.ndarray,
    y: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    classes: list[str],
    cfg: TrainConfig,
    device: torch.device,
    checkpoint_dir: Path | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """x: (N, C, F, T) features (a memmap is fine), y: (N,) class ids. Rows index into both."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    np_rng = np.random.default_rng(cfg.seed)
    n_classes = len(classes)
    mean, std = fit_normalization(x, train_rows)
    model = build_model(
        cfg.model, x.shape[1], n_classes, torch.from_numpy(mean), torch.from_numpy(std),
        channels=cfg.channels, dropout=cfg.dropout, pretrained=cfg.pretrained,
    ).to(device)  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_rows) / cfg.batch_size)
    scheduler = _make_scheduler(cfg, optimizer, cfg.epochs * steps_per_epoch)
    weights = None
    if cfg.class_weights:
        counts = np.bincount(y[train_rows], minlength=n_classes).astype(np.float32)
        weights = torch.from_numpy(counts.sum() / np.maximum(counts, 1) / n_classes).to(device)
    use_amp = device.type == "cuda"

    result = TrainResult(model=model, best_epoch=0, best_val_f1=-1.0, best_val_accuracy=0.0)
    best_state = copy.deepcopy(model.state_dict())
    bad_epochs, start_epoch = 0, 1
    run_id = fingerprint(cfg, tuple(x.shape), classes, train_rows)
    ckpt_path = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir else None
    if checkpoint_dir and can_resume(checkpoint_dir, run_id):
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        best_state = ckpt["best_state"]
        _set_rng_state(ckpt["rng"], gen, np_rng)
        result.best_epoch, result.best_val_f1 = ckpt["best_epoch"], ckpt["best_val_f1"]
        result.best_val_accuracy = ckpt["best_val_accuracy"]
        result.history = [EpochStats(**h) for h in ckpt["history"]]
        bad_epochs, start_epoch = ckpt["bad_epochs"], ckpt["epoch"] + 1
        result.resumed_from = ckpt["epoch"]

    frozen = backbone_parameters(cfg.model, model.net) if cfg.freeze_epochs > 0 else []
    bar = tqdm(total=cfg.epochs, initial=start_epoch - 1, desc="train", unit="epoch")
    for epoch in range(start_epoch, cfg.epochs + 1):
        if bad_epochs >= cfg.patience:
            break
        for p in frozen:
            p.requires_grad_(epoch > cfg.freeze_epochs)
        model.train()
        perm = train_rows[torch.randperm(len(train_rows), generator=gen).numpy()]
        loss_sum, correct, seen = 0.0, 0, 0
        for rows in _batches(x, perm, cfg.batch_size):
            feats = _load(x, rows, device)
            targets = torch.from_numpy(y[rows]).to(device)
            # augment in normalised space (a mask is then the training mean), feed model.net
            feats = spec_augment((feats - model.mean) / model.std, cfg.augment, gen)
            lam, partner = 1.0, None
            if cfg.augment.mixup_alpha > 0:
                lam = float(np_rng.beta(cfg.augment.mixup_alpha, cfg.augment.mixup_alpha))
                partner = torch.randperm(len(rows), generator=gen).to(device)
                feats = lam * feats + (1 - lam) * feats[partner]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model.net(feats)
            logits = logits.float()
            loss = F.cross_entropy(logits, targets, weight=weights, label_smoothing=cfg.label_smoothing)
            if partner is not None:
                loss = lam * loss + (1 - lam) * F.cross_entropy(
                    logits, targets[partner], weight=weights, label_smoothing=cfg.label_smoothing
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(rows)
            correct += int((logits.argmax(1) == targets).sum())
            seen += len(rows)

        val_logits = predict_logits(model, x, val_rows, device)
        val_true = y[val_rows]
        val_pred = val_logits.argmax(1)
        val_loss = float(F.cross_entropy(torch.from_numpy(val_logits), torch.from_numpy(val_true)))
        stats = EpochStats(
            epoch=epoch,
            train_loss=loss_sum / seen,
            train_accuracy=correct / seen,
            val_loss=val_loss,
            val_accuracy=float(np.mean(val_pred == val_true)),
            val_f1_macro=macro_f1(val_true, val_pred, n_classes),
            lr=float(scheduler.get_last_lr()[0]),
        )
        result.history.append(stats)
        if stats.val_f1_macro > result.best_val_f1:
            result.best_epoch, result.best_val_f1 = epoch, stats.val_f1_macro
            result.best_val_accuracy = stats.val_accuracy
            best_state = copy.deepcopy(model.state_dict())
            bad_epochs = 0
        else:
            bad_epochs += 1
        bar.update(1)
        bar.set_postfix(loss=f"{stats.train_loss:.3f}", val_f1=f"{stats.val_f1_macro:.3f}")
        if on_epoch:
            on_epoch(stats)
        if ckpt_path:
            ckpt = {
                "fingerprint": run_id,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "best_state": best_state,
                "best_epoch": result.best_epoch,
                "best_val_f1": result.best_val_f1,
                "best_val_accuracy": result.best_val_accuracy,
                "bad_epochs": bad_epochs,
                "history": [dataclasses.asdict(h) for h in result.history],
                "rng": _rng_state(gen, np_rng),
            }
            with atomic_path(ckpt_path) as tmp:
                torch.save(ckpt, tmp)

    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return result
