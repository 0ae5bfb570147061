"""Claim (b): an epoch reading the feature cache is faster than the tutorials' way, decoding and
computing the spectrogram per item in `Dataset.__getitem__`.

Same model (train.model from params, same initial weights), same training rows in the same
order, same optimiser; one epoch each in one run, then the ratio.

    python bench/bench_epoch.py [--features data/features] [--splits data/splits] [--raw data/raw]
                                [--loader-workers 0] [--limit 0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from audioclf.audio import load_clip
from audioclf.cache import load_cache, read_split
from audioclf.config import FeaturesConfig, TrainConfig, load_params
from audioclf.features import FeatureExtractor
from audioclf.network import Classifier, build_model
from audioclf.runtime import configure_threads
from audioclf.training import fit_normalization, load_batch


class DecodeEachItem(Dataset):
    """The tutorials' dataset: every __getitem__ decodes the file and computes its features."""

    def __init__(self, paths: list[Path], labels: np.ndarray, extractor: FeatureExtractor, sr: int, n: int) -> None:
        self.paths, self.labels, self.extractor, self.sr, self.n = paths, labels, extractor, sr, n

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        wave = torch.from_numpy(load_clip(self.paths[i], self.sr, self.n))
        with torch.no_grad():
            return self.extractor(wave[None])[0], int(self.labels[i])


def fresh_model(cfg: TrainConfig, in_channels: int, n_classes: int, mean: np.ndarray, std: np.ndarray) -> Classifier:
    torch.manual_seed(cfg.seed)
    return build_model(
        cfg.model, in_channels, n_classes, torch.from_numpy(mean), torch.from_numpy(std),
        cfg.arch_params,
    )  # fmt: skip


def train_epoch(
    model: Classifier, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], lr: float
) -> tuple[float, int]:
    """Seconds for one epoch of forward/backward/step over (features, labels) batches."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    start, n = time.perf_counter(), 0
    for feats, labels in batches:
        loss = F.cross_entropy(model(feats), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(labels)
    return time.perf_counter() - start, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--features", type=Path, default=Path("data/features"))
    p.add_argument("--splits", type=Path, default=Path("data/splits"))
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers for the per-item way")
    p.add_argument("--limit", type=int, default=0, help="use the first N training rows (0 = all)")
    args = p.parse_args()

    params = load_params(args.params)
    cfg = params.train
    threads = configure_threads(params.runtime.threads)
    cache = load_cache(args.features)
    rows = cache.rows_for(read_split(args.splits, "train"), "train")
    rows = rows[: args.limit] if args.limit else rows
    order = rows[np.random.default_rng(0).permutation(len(rows))]  # one shuffle, used by both ways
    labels = cache.labels()
    mean, std = fit_normalization(cache.x, rows)
    n_classes, in_channels = len(cache.classes), cache.x.shape[1]
    sr, n_samples = cache.meta["sample_rate"], cache.meta["n_samples"]
    extractor = FeatureExtractor(FeaturesConfig(**cache.meta["features"]), sr).eval()
    paths = [args.raw / cache.index["path"][r] for r in order]
    for path in paths:  # warm the page cache: measure decoding, not the disk
        path.read_bytes()

    cpu = torch.device("cpu")
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    cached = ((load_batch(cache.x, b, cpu), torch.from_numpy(labels[b])) for b in batches)
    cached_s, n = train_epoch(fresh_model(cfg, in_channels, n_classes, mean, std), cached, cfg.lr)
    loader = DataLoader(
        DecodeEachItem(paths, labels[order], extractor, sr, n_samples),
        batch_size=cfg.batch_size, shuffle=False, num_workers=args.loader_workers,
    )  # fmt: skip
    decoded_s, _ = train_epoch(fresh_model(cfg, in_channels, n_classes, mean, std), loader, cfg.lr)

    print(f"{n} training clips, {cfg.model}, batch {cfg.batch_size}, {threads} torch threads")
    print(f"epoch reading the cache (mmap):                       {cached_s:7.2f} s")
    print(f"epoch decoding + spectrogram in __getitem__ ({args.loader_workers} workers): {decoded_s:7.2f} s")
    print(f"ratio per-item / cache = {decoded_s / cached_s:.2f}x")


if __name__ == "__main__":
    main()
