"""Cost of every registered model: parameters and MACs per second of audio (convs + linears,
counted with forward hooks by `audioclf.macs`) at the given features, and optionally the time
of one training step on a batch of clips (`--step`; `--channels-last` to time channels-last memory;
`--bf16` to time the same step under bf16 autocast too, side by side, where the CPU has native bf16).

    python bench/bench_models.py                               # 64 mels, 10 ms hop, 50 classes
    python bench/bench_models.py --n-mels 40 --classes 10 --step --seconds 1
    python bench/bench_models.py --step --bf16                 # fp32 vs bf16 step (train.precision)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from audioclf import models
from audioclf.macs import count_params, macs_per_second
from audioclf.runtime import configure_threads, cpu_bf16_supported


def step_seconds(
    net: torch.nn.Module, x: torch.Tensor, n_classes: int, channels_last: bool, bf16: bool = False, repeat: int = 3
) -> float:
    """Best of `repeat` forward + backward + AdamW steps on batch `x` (the forward pass under bf16
    autocast if `bf16`, as the train stage runs it with `train.precision: bf16`)."""
    if channels_last:
        net, x = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters())
    y = torch.arange(len(x)) % n_classes
    net.train()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
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
    p.add_argument("--bf16", action="store_true", help="with --step: also time it under bf16 autocast")
    args = p.parse_args()
    if args.bf16 and not cpu_bf16_supported():
        raise SystemExit("--bf16: torch reports no native bf16 on this CPU (no AVX512-BF16/AMX); run without it")
    threads = configure_threads(0)
    fps = 1000.0 / args.hop_ms
    print(f"{args.n_mels} mels, {args.hop_ms:g} ms hop, {args.classes} classes, {threads} threads")
    header = f"{'model':10s} {'params':>9s} {'MMACs/s':>9s}" + (f" {'step s':>8s}" if args.step else "")
    print(header + (f" {'bf16 s':>8s} {'speed-up':>8s}" if args.step and args.bf16 else ""))
    base = None
    for name, arch in sorted(models.architectures().items()):
        torch.manual_seed(0)
        net = arch.build(1, args.classes, arch.params())
        macs = macs_per_second(net, 1, args.n_mels, fps)
        base = macs if name == "convnet" else base
        line = f"{name:10s} {count_params(net) / 1e3:8.1f}k {macs / 1e6:9.2f}"
        if args.step:
            x = torch.randn(args.batch, 1, args.n_mels, int(args.seconds * fps) + 1)
            fp32_s = step_seconds(net, x, args.classes, args.channels_last)
            line += f" {fp32_s:8.3f}"
            if args.bf16:
                bf16_s = step_seconds(net, x, args.classes, args.channels_last, bf16=True)
                line += f" {bf16_s:8.3f} {fp32_s / bf16_s:7.2f}x"
        print(line, flush=True)
    if base:
        print(f"(convnet = {base / 1e6:.1f} MMACs/s; compare each row with it)")


if __name__ == "__main__":
    main()
