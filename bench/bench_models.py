"""Cost of every registered model: parameters and MACs per second of audio (convs + linears,
counted with forward hooks by `audioclf.macs`) at the given features, and optionally the time
of one training step on a batch of clips (`--step`; `--channels-last` to time channels-last memory).

    python bench/bench_models.py                               # 64 mels, 10 ms hop, 50 classes
    python bench/bench_models.py --n-mels 40 --classes 10 --step --seconds 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from audioclf import models
from audioclf.macs import count_params, macs_per_second
from audioclf.runtime import configure_threads


def step_seconds(net: torch.nn.Module, x: torch.Tensor, n_classes: int, channels_last: bool, repeat: int = 3) -> float:
    """Best of `repeat` forward + backward + AdamW steps on batch `x`."""
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters())
    y = torch.arange(len(x)) % n_classes
    net.train()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-mels", type=int, default=64)
    p.add_argument("--hop-ms", type=float, default=10.0)
    p.add_argument("--classes", type=int, default=50)
    p.add_argument("--step", action="store_true", help="also time one training step per model")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=5.0, help="clip length for --step")
    p.add_argument("--channels-last", action="store_true", help="time --step in channels-last memory")
    args = p.parse_args()
    threads = configure_threads(0)
    fps = 1000.0 / args.hop_ms
    print(f"{args.n_mels} mels, {args.hop_ms:g} ms hop, {args.classes} classes, {threads} threads")
    print(f"{'model':10s} {'params':>9s} {'MMACs/s':>9s}" + (f" {'step s':>8s}" if args.step else ""))
    base = None
    for name, arch in sorted(models.architectures().items()):
        torch.manual_seed(0)
        net = arch.build(1, args.classes, arch.params())
        macs = macs_per_second(net, 1, args.n_mels, fps)
        base = macs if name == "convnet" else base
        line = f"{name:10s} {count_params(net) / 1e3:8.1f}k {macs / 1e6:9.2f}"
        if args.step:
            x = torch.randn(args.batch, 1, args.n_mels, int(args.seconds * fps) + 1)
            line += f" {step_seconds(net, x, args.classes, args.channels_last):8.3f}"
        print(line, flush=True)
    if base:
        print(f"(convnet = {base / 1e6:.1f} MMACs/s; compare each row with it)")


if __name__ == "__main__":
    main()
