"""How a stage runs, never what it computes: the device and its bf16 support, the torch threads
and the cores this process may use. Evaluate, quantize and cv need these without the training loop."""

from __future__ import annotations

import os

import torch

from audioclf.errors import AudioclfError


def available_cores() -> int:
    """Cores this process may run on (the container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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


def configure_threads(threads: int, processes: int = 1) -> int:
    """0 = the available cores shared among `processes` (DDP ranks on this host); torch's own
    default can be lower inside containers or oversubscribe with several ranks."""
    n = threads if threads > 0 else max(1, available_cores() // max(1, processes))
    torch.set_num_threads(n)
    return n


def cpu_bf16_supported() -> bool:
    """True where torch reports native bf16 kernels on this CPU (AVX512-BF16 or AMX); on AVX2-only
    CPUs bf16 is emulated and slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: `fp32` never (bit-deterministic), `bf16` always
    (an error where the hardware lacks it), `auto` where it is native (CUDA with bf16, or a CPU
    with AVX512-BF16/AMX)."""
    if precision == "fp32":
        return False
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_bf16_supported()
    if precision == "bf16" and not native:
        raise AudioclfError(
            f"train.precision is bf16 but this {device.type.upper()} has no native bf16 support "
            "(torch reports no AVX512-BF16/AMX); use train.precision: auto or fp32"
        )
    return native
