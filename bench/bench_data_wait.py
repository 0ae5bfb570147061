"""Claim (c): with the memory-mapped cache, a training step hardly waits for data.

Trains params.yaml's model for a few epochs with the library's own loop and reports the share
of the step time spent fetching the batch from the cache (memmap read + float32 + to device)
versus computing (augmentation, forward, backward, optimiser step).

    python bench/bench_data_wait.py [--features data/features] [--splits data/splits] [--epochs 2]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from audioclf.cache import load_cache, read_split
from audioclf.config import load_params
from audioclf.runtime import configure_threads, select_device
from audioclf.training import train_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--features", type=Path, default=Path("data/features"))
    p.add_argument("--splits", type=Path, default=Path("data/splits"))
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()

    params = load_params(args.params)
    cfg = dataclasses.replace(params.train, epochs=args.epochs)
    threads = configure_threads(params.runtime.threads)
    device = select_device(params.runtime.device)
    cache = load_cache(args.features)
    train_rows = cache.rows_for(read_split(args.splits, "train"), "train")
    val_rows = cache.rows_for(read_split(args.splits, "val"), "val")
    result = train_model(cache.x, cache.labels(), train_rows, val_rows, cache.classes, cfg, device, progress=False)
    t = result.timing
    print(f"{cfg.model} on {device} ({threads} threads), batch {cfg.batch_size}, {t.steps} steps, {args.epochs} epochs")
    print(f"per step: {1000 * t.step_s / t.steps:.1f} ms, of which waiting for data {1000 * t.data_s / t.steps:.2f} ms")
    print(f"fraction of a training step spent waiting for data: {t.data_fraction:.2%}")


if __name__ == "__main__":
    main()
