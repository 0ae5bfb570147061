"""Claim (a): the feature precompute runs close to the bare limit × cores.

bare limit: one process, one thread, a single pass over the same files doing nothing but the
soundfile read (+ downmix/resample/pad, `load_clip`) and the same transform, batched like the
precompute, with no writes. precompute: `build_cache` with one worker process per core, writing
the memory-mappable .npy. Both run after a warm-up read, so the page cache serves both alike,
and each is timed `--repeat` times, keeping the best (the cores may be shared with other work).

    python bench/bench_features.py [--raw data/raw] [--params params.yaml] [--limit 2000] [--workers 0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from audioclf.audio import load_clip
from audioclf.config import load_params
from audioclf.features import FeatureExtractor, build_cache, default_workers
from audioclf.stages.features import resolve_audio_format
from audioclf.training import available_cores

BATCH = 32  # build_cache's chunk size


def bare_pass(paths: list[Path], extractor: FeatureExtractor, sample_rate: int, n_samples: int) -> float:
    """Seconds for read + transform of every path in this process, on one thread, no writes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(paths), BATCH):
            waves = np.stack([load_clip(p, sample_rate, n_samples) for p in paths[i : i + BATCH]])
            extractor(torch.from_numpy(waves))
    seconds = time.perf_counter() - start
    torch.set_num_threads(before)
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--limit", type=int, default=2000, help="first N rows of metadata.csv")
    p.add_argument("--workers", type=int, default=0, help="0 = one per core (runtime.workers' default)")
    p.add_argument("--repeat", type=int, default=3, help="time each way this many times, keep the best")
    args = p.parse_args()

    params = load_params(args.params)
    sample_rate, duration_s = resolve_audio_format(params.data)
    n_samples = round(sample_rate * duration_s)
    meta = pd.read_csv(args.raw / "metadata.csv", dtype={"path": str})
    paths = [args.raw / rel for rel in meta["path"][: args.limit]]
    extractor = FeatureExtractor(params.features, sample_rate).eval()
    workers = default_workers(args.workers)

    for path in paths:  # warm the page cache so neither pass measures the disk
        path.read_bytes()
    bare_s = min(bare_pass(paths, extractor, sample_rate, n_samples) for _ in range(args.repeat))
    pre_s = float("inf")
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = build_cache(
                paths, Path(tmp) / "features.npy", extractor, sample_rate, n_samples,
                dtype=params.features.dtype, workers=workers, progress=False,
            )  # fmt: skip
            pre_s = min(pre_s, time.perf_counter() - start)

    n = len(paths)
    bare, pre = n / bare_s, n / pre_s
    shape = result.shape[1:]
    print(f"{n} clips, {params.features.kind} {shape}, {sample_rate} Hz × {duration_s} s; best of {args.repeat}")
    print(f"load average {os.getloadavg()[0]:.1f} on {available_cores()} cores (other work slows both ways)")
    print(f"bare limit (1 process, 1 thread, no writes): {bare:8.1f} clips/s")
    print(f"bare limit × {workers} cores:                  {bare * workers:8.1f} clips/s")
    print(f"precompute ({workers} worker processes, writes): {pre:8.1f} clips/s")
    print(f"precompute / bare = {pre / bare:.2f}x; precompute / (bare × cores) = {pre / (bare * workers):.2f}")


if __name__ == "__main__":
    main()
