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

from audioclf.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_NAME, Checkpoint, load_checkpoint, save_checkpoint
from audioclf.config import AugmentConfig, TrainConfig
from audioclf.distributed import SINGLE, DistContext, all_reduce_sum, broadcast_buffers, wrap
from audioclf.errors import AudioclfError
from audioclf.metrics import confusion_matrix, per_class_scores
from audioclf.network import Classifier, backbone_parameters, build_model
from audioclf.runtime import use_bf16


def train_batch_size(cfg: TrainConfig, n_train: int) -> int:
    """The global batch: train.batch_size, lowered on small sets so an epoch has at least
    `train.min_steps_per_epoch` steps (two optimiser steps an epoch leave BatchNorm's running
    statistics and a one-cycle schedule nowhere near converged; never below 2 rows for BN)."""
    return max(2, min(cfg.batch_size, math.ceil(n_train / cfg.min_steps_per_epoch)))


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, x: np.ndarray, rows: np.ndarray, device: torch.device, batch_size: int, max_rows: int = 256
) -> None:
    """Recompute every BatchNorm's running mean/var for the current weights from (up to
    `max_rows`) un-augmented training rows ("precise BN"). The running averages collected during
    training lag behind weights that still move and saw augmented inputs; with few steps they are
    mostly their initial values, and evaluation then predicts one class."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(rows) < 2:
        return
    model.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
        m.train()
    for chunk in _batches(np.asarray(rows[:max_rows]), max(2, batch_size)):
        model(load_batch(x, chunk, device))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()


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


def fingerprint(cfg: TrainConfig, x_shape: tuple, classes: list[str], train_rows: np.ndarray) -> str:
    """Identifies a run, so a checkpoint from other params, data or code layout is never resumed."""
    blob = json.dumps(
        [
            CHECKPOINT_FORMAT,
            cfg.resolved(),
            list(x_shape),
            classes,
            hashlib.sha256(np.asarray(train_rows).tobytes()).hexdigest(),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass(frozen=True)
class Run:
    """What stays fixed over one training run: the data, the settings and the per-rank plan."""

    x: np.ndarray
    y: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    n_classes: int
    cfg: TrainConfig
    device: torch.device
    ctx: DistContext
    sampler: DistributedSampler
    rank_batch: int
    weights: torch.Tensor | None  # class weights of the loss, or None
    bf16: bool = False  # autocast the forward pass (train.precision)


@dataclass
class TrainState:
    """What changes: the model, optimiser and schedule, early stopping and the history. Training
    returns it (`TrainResult`), with the best epoch's weights loaded into `model`."""

    model: Classifier
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    best_state: dict[str, torch.Tensor]
    best_epoch: int = 0
    best_val_f1: float = -1.0
    best_val_accuracy: float = 0.0
    bad_epochs: int = 0
    epoch: int = 0  # the last completed epoch
    history: list[EpochStats] = field(default_factory=list)
    resumed_from: int | None = None
    timing: Timing = field(default_factory=Timing)


TrainResult = TrainState


def start(
    x: np.ndarray, y: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray, n_classes: int,
    cfg: TrainConfig, device: torch.device, ctx: DistContext,
) -> tuple[Run, TrainState]:  # fmt: skip
    """Seeded initial weights (identical on every rank), optimiser, sampler and schedule."""
    torch.manual_seed(cfg.seed)
    mean, std = fit_normalization(x, train_rows)
    model = build_model(
        cfg.model, x.shape[1], n_classes, torch.from_numpy(mean), torch.from_numpy(std), cfg.arch_params
    ).to(device)
    optimizer = make_optimizer(cfg, model)
    sampler = DistributedSampler(
        range(len(train_rows)), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed
    )  # pads the permutation so every rank takes the same number of steps (DDP needs that)
    batch_size = train_batch_size(cfg, len(train_rows))
    scheduler = _make_scheduler(cfg, optimizer, cfg.epochs * steps_per_epoch(len(train_rows), batch_size, ctx))
    weights = None
    if cfg.class_weights:
        counts = np.bincount(y[train_rows], minlength=n_classes).astype(np.float32)
        weights = torch.from_numpy(counts.sum() / np.maximum(counts, 1) / n_classes).to(device)
    run = Run(
        x, y, train_rows, val_rows, n_classes, cfg, device, ctx, sampler, max(1, batch_size // ctx.world_size),
        weights, use_bf16(cfg.precision, device),
    )  # fmt: skip
    return run, TrainState(model, optimizer, scheduler, copy.deepcopy(model.state_dict()))


def resume(state: TrainState, ckpt: Checkpoint) -> None:
    state.model.load_state_dict(ckpt.model)
    state.optimizer.load_state_dict(ckpt.optimizer)
    state.scheduler.load_state_dict(ckpt.scheduler)
    state.best_state = ckpt.best_state
    state.best_epoch, state.best_val_f1, state.best_val_accuracy = (
        ckpt.best_epoch, ckpt.best_val_f1, ckpt.best_val_accuracy,
    )  # fmt: skip
    state.history = [EpochStats(**h) for h in ckpt.history]
    state.bad_epochs, state.epoch, state.resumed_from = ckpt.bad_epochs, ckpt.epoch, ckpt.epoch


def save(state: TrainState, path: Path, run_id: str) -> None:
    ckpt = Checkpoint(
        fingerprint=run_id, epoch=state.epoch, model=state.model.state_dict(),
        optimizer=state.optimizer.state_dict(), scheduler=state.scheduler.state_dict(),
        best_state=state.best_state, best_epoch=state.best_epoch, best_val_f1=state.best_val_f1,
        best_val_accuracy=state.best_val_accuracy, bad_epochs=state.bad_epochs,
        history=[dataclasses.asdict(h) for h in state.history],
    )  # fmt: skip
    save_checkpoint(ckpt, path)


def train_step(
    run: Run, state: TrainState, net: nn.Module, rows: np.ndarray, gen: torch.Generator, np_rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on `rows`; returns the loss and the (float32) logits, detached."""
    cfg, device, model = run.cfg, run.device, state.model
    t0 = time.perf_counter()
    feats = load_batch(run.x, rows, device)
    targets = torch.from_numpy(run.y[rows]).to(device, non_blocking=True)
    t1 = time.perf_counter()
    if cfg.augment.gain_db > 0:  # log-mel in dB: a gain shifts every bin by the same amount
        gain = (torch.rand(len(rows), generator=gen) * 2 - 1) * cfg.augment.gain_db
        feats = feats + gain.to(device)[:, None, None, None]
    # augment in normalised space (a mask is then the training mean), feed model.net
    feats = spec_augment((feats - model.mean) / model.std, cfg.augment, gen)
    lam, partner = 1.0, None
    if cfg.augment.mixup_alpha > 0:
        lam = float(np_rng.beta(cfg.augment.mixup_alpha, cfg.augment.mixup_alpha))
        partner = torch.randperm(len(rows), generator=gen).to(device)
        feats = lam * feats + (1 - lam) * feats[partner]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=run.bf16):
        logits = net(feats)  # bf16 autocast (train.precision): no loss scaling needed, unlike fp16
    logits = logits.float()
    loss = mixup_loss(logits, targets, cfg, run.weights, lam, partner)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    state.optimizer.step()
    state.scheduler.step()
    state.timing.data_s += t1 - t0
    state.timing.step_s += time.perf_counter() - t0
    state.timing.steps += 1
    return loss.detach(), logits.detach()


def train_epoch(run: Run, state: TrainState, net: nn.Module, epoch: int) -> tuple[float, float, float]:
    """One pass over this rank's shard; (loss, accuracy, macro-F1) summed over ranks. The
    divergence check sees the summed loss, so every rank stops together."""
    gen, np_rng = epoch_generators(run.cfg.seed, epoch, run.ctx.rank)
    run.sampler.set_epoch(epoch)
    perm = run.train_rows[np.fromiter(iter(run.sampler), dtype=np.int64)]
    state.model.train()
    loss_sum, seen = 0.0, 0
    cm = np.zeros((run.n_classes, run.n_classes), dtype=np.int64)
    for rows in _batches(perm, run.rank_batch):
        loss, logits = train_step(run, state, net, rows, gen, np_rng)
        loss_sum += float(loss) * len(rows)
        cm += confusion_matrix(run.y[rows], logits.argmax(1).cpu().numpy(), run.n_classes)
        seen += len(rows)
    train_cm = all_reduce_sum(torch.from_numpy(cm).to(run.device), run.ctx).cpu().numpy()
    total = all_reduce_sum(torch.tensor([loss_sum, float(seen)], dtype=torch.float64, device=run.device), run.ctx)
    if not math.isfinite(float(total[0])):
        raise AudioclfError(
            f"train: the loss became {float(total[0])} in epoch {epoch} (training diverged); lower "
            f"train.lr ({run.cfg.lr:g}) or set train.grad_clip, and rerun (no model was written)"
        )
    return (float(total[0] / total[1]), *_scores(train_cm))


def record(state: TrainState, stats: EpochStats, keep_last: bool = False) -> None:
    """Add an epoch to the history; keep the best weights (val macro-F1) and count the rest.
    `keep_last` (train.keep: last) keeps every epoch in turn, so the final one is kept and early
    stopping never fires: a fixed-length fit, e.g. with the validation rows in training."""
    state.history.append(stats)
    state.epoch = stats.epoch
    if keep_last or stats.val_f1_macro > state.best_val_f1:
        state.best_epoch, state.best_val_f1, state.best_val_accuracy = (
            stats.epoch,
            stats.val_f1_macro,
            stats.val_accuracy,
        )
        state.best_state = copy.deepcopy(state.model.state_dict())
        state.bad_epochs = 0
    else:
        state.bad_epochs += 1


class _Freezer:
    """`train.freeze_epochs`: the backbone is frozen for the first epochs; DDP is re-wrapped when
    that changes (it syncs the parameters that required grad when it was built)."""

    def __init__(self, run: Run, state: TrainState) -> None:
        self.run, self.model = run, state.model
        self.frozen = backbone_parameters(run.cfg.model, state.model.net) if run.cfg.freeze_epochs > 0 else []
        self.net, self.net_frozen = state.model.net, None

    def net_for(self, epoch: int) -> nn.Module:
        freeze = epoch <= self.run.cfg.freeze_epochs and bool(self.frozen)
        for p in self.frozen:
            p.requires_grad_(not freeze)
        if self.net_frozen is not freeze:
            self.net, self.net_frozen = wrap(self.model.net, self.run.ctx, self.run.device), freeze
        return self.net

    def release(self) -> None:
        for p in self.frozen:
            p.requires_grad_(True)  # a run that ends inside freeze_epochs still returns a trainable model


def fit_rows(train_rows: np.ndarray, val_rows: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """The rows the model learns from: the train split, plus the val split with train.include_val
    (a final fit; validation then scores rows it has seen, so only train.keep: last is allowed)."""
    return np.concatenate([train_rows, val_rows]) if cfg.include_val else train_rows


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
) -> TrainState:
    """x: (N, C, F, T) features (a memmap is fine), y: (N,) class ids. Rows index into both.

    `on_epoch` sees every epoch once, in order: on resume the epochs restored from the
    checkpoint are replayed first. Under DDP (`ctx.enabled`, process group initialised) every
    rank calls this with the same arguments; only rank 0 writes the checkpoint and calls
    `on_epoch`."""
    train_rows = fit_rows(train_rows, val_rows, cfg)
    run, state = start(x, y, train_rows, val_rows, len(classes), cfg, device, ctx)
    run_id = fingerprint(cfg, tuple(x.shape), classes, train_rows)
    ckpt_path = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir else None
    ckpt = load_checkpoint(ckpt_path, run_id, device) if ckpt_path else None
    if ckpt is not None:
        resume(state, ckpt)
    for stats in state.history if ctx.is_main and on_epoch else []:
        on_epoch(stats)  # replay, so loggers see every epoch whatever DVC deleted
    freezer = _Freezer(run, state)
    bar = tqdm(total=cfg.epochs, initial=state.epoch, desc="train", unit="epoch", disable=not progress)
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.bad_epochs >= cfg.patience:
            break
        train_loss, train_accuracy, train_f1 = train_epoch(run, state, freezer.net_for(epoch), epoch)
        recalibrate_batchnorm(state.model, x, train_rows[ctx.rank :: ctx.world_size], device, run.rank_batch)
        broadcast_buffers(state.model, ctx)
        val_loss, val_accuracy, val_f1 = _validate(state.model, x, y, val_rows, len(classes), device, ctx)
        lr = float(state.scheduler.get_last_lr()[0])
        epoch_stats = EpochStats(epoch, train_loss, train_accuracy, train_f1, val_loss, val_accuracy, val_f1, lr)
        record(state, epoch_stats, keep_last=cfg.keep == "last")
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", val_f1=f"{val_f1:.3f}")
        if ctx.is_main and on_epoch:
            on_epoch(state.history[-1])
        if ctx.is_main and ckpt_path:
            save(state, ckpt_path, run_id)
    bar.close()
    freezer.release()
    state.model.load_state_dict(state.best_state)
    state.model.eval()
    return state
