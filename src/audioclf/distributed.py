"""Past one machine: the train stage under `torchrun` (DistributedDataParallel).

The stage reads torchrun's environment once (`context_from_env`) and hands the library a
`DistContext`; with `world_size == 1` every helper here is a no-op, so one code path serves a
single process, a CPU gloo group and an NCCL group on GPUs. Only rank 0 writes anything.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

# torchrun sets these for every process it starts
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # ranks on this host: they share its cores

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def under_torchrun(environ: Mapping[str, str]) -> bool:
    return all(k in environ for k in TORCHRUN_ENV) and int(environ["WORLD_SIZE"]) > 1


def context_from_env(environ: Mapping[str, str]) -> DistContext:
    if not under_torchrun(environ):
        return SINGLE
    world = int(environ["WORLD_SIZE"])
    local_world = int(environ.get("LOCAL_WORLD_SIZE", world))
    return DistContext(int(environ["RANK"]), world, int(environ["LOCAL_RANK"]), local_world)


def init_process_group(ctx: DistContext, device: torch.device, timeout_s: float = 600.0) -> None:
    """NCCL on GPUs, gloo on CPU; rendezvous from torchrun's environment (env://)."""
    if not ctx.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s))


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def torchrun_command(nproc: int, module_argv: Sequence[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc_per_node N -m <module_argv...>`.
    --standalone picks a free local rendezvous port, so parallel runs on one host never collide."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", *module_argv,
    ]  # fmt: skip


def launch(nproc: int, module_argv: Sequence[str]) -> int:
    """Run `python -m module_argv...` in `nproc` processes under torchrun; returns the exit status."""
    return subprocess.run(torchrun_command(nproc, module_argv), check=False).returncode


def wrap(net: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DDP around `net` (averages gradients over ranks in backward). Only the parameters that
    require grad now are synchronised, so call again after (un)freezing parameters."""
    if not ctx.enabled:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=ids)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum over ranks, in place (no-op for one process). Returns the tensor."""
    if ctx.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running stats) before evaluating, so the
    validation shards are scored by the model that rank 0 saves."""
    if ctx.enabled:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)
