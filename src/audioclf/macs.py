"""Model cost: parameters and multiply-accumulates (MACs) per second of audio, counted with
forward hooks on the convolutions and linear layers (normalisation, activations and pooling are
not counted: they are a few percent and memory-bound)."""

from __future__ import annotations

import torch
from torch import nn

COUNTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def count_macs(net: nn.Module, shape: tuple[int, ...]) -> int:
    """MACs of one forward pass of one input of `shape` (channels, freq, frames), in eval mode."""
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += output[0].numel() * module.in_features
        else:  # each output element: (in_channels / groups) x kernel taps
            taps = 1
            for k in module.kernel_size:
                taps *= k
            total += output[0].numel() * (module.in_channels // module.groups) * taps

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, COUNTED)]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, *shape))
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    return total


def macs_per_second(
    net: nn.Module, in_channels: int, n_mels: int, frames_per_second: float, seconds: float = 5.0
) -> float:
    """MACs per second of audio, measured on a `seconds`-long input (long enough that padding at
    the clip edges does not dominate)."""
    frames = round(frames_per_second * seconds) + 1
    return count_macs(net, (in_channels, n_mels, frames)) / seconds
