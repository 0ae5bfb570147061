"""Training on cached features: normalisation fitted on the training rows, SpecAugment + time
shift + mixup, AdamW with a one-cycle (or warm-up/linear) schedule, early stopping on validation
macro-F1 keeping the best epoch, and a per-epoch checkpoint for automatic resume.

Reproducibility: every random draw of epoch `e` on rank `r` comes from generators seeded by
(train.seed, e, r) at the start of that epoch, and the shuffle is `DistributedSampler`'s
(seed + epoch). The RNG state at any epoch boundary is therefore a function of the epoch number
alone, so a checkpoint's epoch restores it exactly (CPU and CUDA alike), and a resumed run ends
with the same weights as an uninterrupted one.

Past one machine: given a `DistContext` of an initialised process group, the same loop runs under
DDP: each rank trains on its `DistributedSampler` shard with `batch_size / world_size` rows per
step (so the global batch and the schedule do not change), metrics are summed over ranks, and
only rank 0 writes checkpoints and calls `on_epoch`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from audioclf.config import AugmentConfig, TrainConfig, to_dict
from audioclf.distributed import SINGLE, DistContext, all_reduce_sum, broadcast_buffers, wrap
from audioclf.errors import AudioclfError
from audioclf.fileio import atomic_path
from audioclf.metrics import confusion_matrix, per_class_scores
from audioclf.modelio import save_torch
from audioclf.models import Classifier, backbone_parameters, build_model

CHECKPOINT_NAME = "last.pt"


def select_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` → CUDA when present, else CPU. Asking for CUDA without one is a user error.
    Under DDP each process takes the GPU of its local rank."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise AudioclfError("runtime.device is cuda but no CUDA device is visible; use auto or cpu")
        if local_rank >= torch.cuda.device_count():
            raise AudioclfError(
                f"runtime.nproc: local rank {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible); "
                "set runtime.nproc to at most the GPU count"
            )  # NCCL refuses two ranks on one GPU
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def available_cores() -> int:
    """Cores this process may run on (the container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def configure_threads(threads: int, processes: int = 1) -> int:
    """0 = the available cores shared among `processes` (DDP ranks on this host); torch's own
    default can be lower inside containers or oversubscribe with several ranks."""
    n = threads if threads > 0 else max(1, available_cores() // max(1, processes))
    torch.set_num_threads(n)
    return n


def fit_normalization(x: np.ndarray, rows: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per (channel, freq bin) over the given rows and all frames, in float64."""
    if len(rows) == 0:
        raise AudioclfError("data/splits/train.csv: no training rows in the feature cache; check the split params")
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
    """Random time roll, then `freq_masks`/`time_masks` masks per clip (set to 0, i.e. the
    training mean, since x is normalised). x: (B, C, F, T). Training only."""
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
    train_f1_macro: float  # against the un-mixed labels, on augmented inputs
    val_loss: float
    val_accuracy: float
    val_f1_macro: float
    lr: float


@dataclass
class Timing:
    """Wall time of the training steps, split into waiting for the batch and the rest (forward,
    backward, optimiser). Validation is not included."""

    data_s: float = 0.0
    step_s: float = 0.0
    steps: int = 0

    @property
    def data_fraction(self) -> float:
        return self.data_s / self.step_s if self.step_s > 0 else 0.0


@dataclass
class TrainResult:
    model: Classifier
    best_epoch: int
    best_val_f1: float
    best_val_accuracy: float
    history: list[EpochStats] = field(default_factory=list)
    resumed_from: int | None = None
    timing: Timing = field(default_factory=Timing)


def _make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int):
    if cfg.scheduler == "onecycle":
        pct_start = cfg.warmup_frac
        if math.isclose(pct_start * total_steps, 1.0):  # a one-step warm-up: OneCycleLR divides by 0
            pct_start = 1.5 / total_steps
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=total_steps, pct_start=pct_start
        )
    warmup = max(1, int(cfg.warmup_frac * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _batches(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches; a trailing single row joins the previous batch (BatchNorm cannot
    train on one clip once the spatial size has pooled down to 1x1)."""
    out = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2:] = [np.concatenate(out[-2:])]
    return out


def load_batch(x: np.ndarray, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows of the (memory-mapped) cache as float32 on `device`, in the requested order."""
    # sorted reads are sequential on a memmap; restore the requested order afterwards
    order = np.argsort(rows, kind="stable")
    block = np.empty((len(rows), *x.shape[1:]), dtype=np.float32)
    block[order] = x[rows[order]]
    tensor = torch.from_numpy(block)
    if device.type == "cuda":
        tensor = tensor.pin_memory()  # page-locked, so the copy below runs asynchronously
    return tensor.to(device, non_blocking=True)


def steps_per_epoch(n_train: int, batch_size: int, ctx: DistContext = SINGLE) -> int:
    """Optimiser steps per epoch, the same on every rank (DistributedSampler pads the shards)."""
    per_rank = math.ceil(n_train / ctx.world_size)
    return len(_batches(np.arange(per_rank), max(1, batch_size // ctx.world_size)))


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: np.ndarray, rows: np.ndarray, device: torch.device, batch_size: int = 256
) -> np.ndarray:
    """Logits (len(rows), n_classes) in eval mode: no augmentation, BatchNorm running stats."""
    model.eval()
    out = [model(load_batch(x, chunk, device)).float().cpu().numpy() for chunk in _batches(rows, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


# Bump when the checkpoint's layout changes, so a checkpoint written by older code is not resumed.
CHECKPOINT_FORMAT = 2


def fingerprint(cfg: TrainConfig, x_shape: tuple, classes: list[str], train_rows: np.ndarray) -> str:
    """Identifies a run, so a checkpoint from other params, data or code layout is never resumed."""
    blob = json.dumps(
        [
            CHECKPOINT_FORMAT,
            to_dict(cfg),
            list(x_shape),
            classes,
            hashlib.sha256(np.asarray(train_rows).tobytes()).hexdigest(),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def can_resume(checkpoint_dir: Path, run_id: str) -> bool:
    """True when a checkpoint of exactly this run (same params, data and split) exists."""
    path = checkpoint_dir / CHECKPOINT_NAME
    if not path.is_file():
        return False
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        return isinstance(ckpt, dict) and ckpt.get("fingerprint") == run_id  # a foreign file: start afresh
    except (RuntimeError, EOFError, ValueError, KeyError, OSError, pickle.UnpicklingError):
        return False  # a torn or foreign checkpoint: start afresh


def epoch_generators(seed: int, epoch: int, rank: int) -> tuple[torch.Generator, np.random.Generator]:
    """Fresh generators for one epoch of one rank, and the global torch seed (dropout) likewise."""
    entropy = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)
    torch.manual_seed(entropy)  # dropout draws from the global generator (CUDA's too)
    return torch.Generator().manual_seed(entropy), np.random.default_rng([seed, epoch, rank])


def mixup_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    cfg: TrainConfig,
    weights: torch.Tensor | None,
    lam: float = 1.0,
    partner: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy (label smoothing, class weights), mixed over the mixup partners."""
    loss = F.cross_entropy(logits, targets, weight=weights, label_smoothing=cfg.label_smoothing)
    if partner is not None:
        mixed = F.cross_entropy(logits, targets[partner], weight=weights, label_smoothing=cfg.label_smoothing)
        loss = lam * loss + (1 - lam) * mixed
    return loss


def _scores(cm: np.ndarray) -> tuple[float, float]:
    """(accuracy, macro-F1 over the classes present) of a confusion matrix."""
    scores = per_class_scores(cm)
    present = scores["support"] > 0
    f1 = float(scores["f1"][present].mean()) if present.any() else 0.0
    return float(np.trace(cm) / max(1, cm.sum())), f1


@torch.no_grad()
def _validate(
    model: Classifier,
    x: np.ndarray,
    y: np.ndarray,
    val_rows: np.ndarray,
    n_classes: int,
    device: torch.device,
    ctx: DistContext,
) -> tuple[float, float, float]:
    """(loss, accuracy, macro-F1) on the validation rows; each rank scores its shard and the
    confusion matrices and loss sums are added up over ranks."""
    shard = val_rows[ctx.rank :: ctx.world_size]
    logits = predict_logits(model, x, shard, device) if len(shard) else np.zeros((0, n_classes), np.float32)
    true = y[shard]
    loss_sum = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(true), reduction="sum") if len(shard) else 0
    cm = torch.from_numpy(confusion_matrix(true, logits.argmax(1), n_classes)).to(device)
    total = torch.tensor([float(loss_sum), float(len(shard))], dtype=torch.float64, device=device)
    all_reduce_sum(cm, ctx)
    all_reduce_sum(total, ctx)
    accuracy, f1 = _scores(cm.cpu().numpy())
    return float(total[0] / max(1.0, float(total[1]))), accuracy, f1


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
    *,
    ctx: DistContext = SINGLE,
    progress: bool = True,
) -> TrainResult:
    """x: (N, C, F, T) features (a memmap is fine), y: (N,) class ids. Rows index into both.

    `on_epoch` sees every epoch once, in order: on resume the epochs restored from the
    checkpoint are replayed first. Under DDP (`ctx.enabled`, process group initialised) every
    rank calls this with the same arguments; only rank 0 writes the checkpoint and calls
    `on_epoch`."""
    torch.manual_seed(cfg.seed)  # the initial weights: identical on every rank
    n_classes = len(classes)
    mean, std = fit_normalization(x, train_rows)
    model = build_model(
        cfg.model, x.shape[1], n_classes, torch.from_numpy(mean), torch.from_numpy(std),
        channels=cfg.channels, dropout=cfg.dropout, pretrained=cfg.pretrained,
    ).to(device)  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = DistributedSampler(
        range(len(train_rows)), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed
    )  # pads the permutation so every rank takes the same number of steps (DDP needs that)
    rank_batch = max(1, cfg.batch_size // ctx.world_size)
    scheduler = _make_scheduler(cfg, optimizer, cfg.epochs * steps_per_epoch(len(train_rows), cfg.batch_size, ctx))
    weights = None
    if cfg.class_weights:
        counts = np.bincount(y[train_rows], minlength=n_classes).astype(np.float32)
        weights = torch.from_numpy(counts.sum() / np.maximum(counts, 1) / n_classes).to(device)
    use_amp = device.type == "cuda"  # bf16 autocast: no loss scaling needed, unlike fp16

    result = TrainResult(model=model, best_epoch=0, best_val_f1=-1.0, best_val_accuracy=0.0)
    best_state = copy.deepcopy(model.state_dict())
    bad_epochs, start_epoch = 0, 1
    run_id = fingerprint(cfg, tuple(x.shape), classes, train_rows)
    ckpt_path = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir else None
    if checkpoint_dir and can_resume(checkpoint_dir, run_id):
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        best_state = ckpt["best_state"]
        result.best_epoch, result.best_val_f1 = ckpt["best_epoch"], ckpt["best_val_f1"]
        result.best_val_accuracy = ckpt["best_val_accuracy"]
        result.history = [EpochStats(**h) for h in ckpt["history"]]
        bad_epochs, start_epoch = ckpt["bad_epochs"], ckpt["epoch"] + 1
        result.resumed_from = ckpt["epoch"]
        if ctx.is_main and on_epoch:
            for stats in result.history:  # replay, so loggers see every epoch whatever DVC deleted
                on_epoch(stats)

    frozen = backbone_parameters(cfg.model, model.net) if cfg.freeze_epochs > 0 else []
    net, net_frozen = model.net, None
    bar = tqdm(total=cfg.epochs, initial=start_epoch - 1, desc="train", unit="epoch", disable=not progress)
    for epoch in range(start_epoch, cfg.epochs + 1):
        if bad_epochs >= cfg.patience:
            break
        freeze = epoch <= cfg.freeze_epochs and bool(frozen)
        for p in frozen:
            p.requires_grad_(not freeze)
        if net_frozen is not freeze:  # DDP syncs the params that needed grads when it was built
            net, net_frozen = wrap(model.net, ctx, device), freeze
        gen, np_rng = epoch_generators(cfg.seed, epoch, ctx.rank)
        sampler.set_epoch(epoch)
        perm = train_rows[np.fromiter(iter(sampler), dtype=np.int64)]
        model.train()
        loss_sum, seen = 0.0, 0
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        for rows in _batches(perm, rank_batch):
            t0 = time.perf_counter()
            feats = load_batch(x, rows, device)
            targets = torch.from_numpy(y[rows]).to(device, non_blocking=True)
            t1 = time.perf_counter()
            # augment in normalised space (a mask is then the training mean), feed model.net
            feats = spec_augment((feats - model.mean) / model.std, cfg.augment, gen)
            lam, partner = 1.0, None
            if cfg.augment.mixup_alpha > 0:
                lam = float(np_rng.beta(cfg.augment.mixup_alpha, cfg.augment.mixup_alpha))
                partner = torch.randperm(len(rows), generator=gen).to(device)
                feats = lam * feats + (1 - lam) * feats[partner]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = net(feats)
            logits = logits.float()
            loss = mixup_loss(logits, targets, cfg, weights, lam, partner)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(rows)
            cm += confusion_matrix(y[rows], logits.detach().argmax(1).cpu().numpy(), n_classes)
            seen += len(rows)
            result.timing.data_s += t1 - t0
            result.timing.step_s += time.perf_counter() - t0
            result.timing.steps += 1

        train_cm = all_reduce_sum(torch.from_numpy(cm).to(device), ctx).cpu().numpy()
        train_total = all_reduce_sum(torch.tensor([loss_sum, float(seen)], dtype=torch.float64, device=device), ctx)
        train_accuracy, train_f1 = _scores(train_cm)
        if not math.isfinite(float(train_total[0])):  # summed over ranks: every rank stops together
            raise AudioclfError(
                f"train: the loss became {float(train_total[0])} in epoch {epoch} (training diverged); lower "
                f"train.lr ({cfg.lr:g}) or set train.grad_clip, and rerun (no model was written)"
            )
        broadcast_buffers(model, ctx)
        val_loss, val_accuracy, val_f1 = _validate(model, x, y, val_rows, n_classes, device, ctx)
        stats = EpochStats(
            epoch=epoch,
            train_loss=float(train_total[0] / train_total[1]),
            train_accuracy=train_accuracy,
            train_f1_macro=train_f1,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            val_f1_macro=val_f1,
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
        if ctx.is_main and on_epoch:
            on_epoch(stats)
        if ctx.is_main and ckpt_path:
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
                # no RNG states: epoch_generators and the sampler rebuild them from `epoch` exactly
            }
            with atomic_path(ckpt_path) as tmp:
                save_torch(ckpt, tmp)

    bar.close()
    for p in frozen:
        p.requires_grad_(True)  # a run that ends inside freeze_epochs still returns a trainable model
    model.load_state_dict(best_state)
    model.eval()
    return result
