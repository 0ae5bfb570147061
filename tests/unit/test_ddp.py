"""DistributedDataParallel on CPU (gloo): two processes with half a batch each give the
single-process gradient, and the train stage runs under torchrun writing its outputs once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch._dynamo  # DDP imports it lazily (seconds); forked ranks then inherit it
import torch.distributed as dist
import torch.multiprocessing as mp

from audioclf.config import AugmentConfig, TrainConfig
from audioclf.distributed import DistContext, context_from_env, torchrun_command, wrap
from audioclf.models.convnet import ConvNetParams
from audioclf.network import build_model
from audioclf.training import mixup_loss
from tests.helpers import write_train_project

SRC = str(Path(__file__).resolve().parents[2] / "src")
CFG = TrainConfig(
    model="convnet", model_params={"convnet": {"channels": [4, 8]}}, label_smoothing=0.1,
    augment=AugmentConfig(mixup_alpha=0.0),
)  # fmt: skip


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(8, 1, 16, 20, generator=gen), torch.arange(8) % 4


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model("convnet", 1, 4, torch.zeros(1, 16), torch.ones(1, 16), ConvNetParams([4, 8], 0.0))
    return m.eval()  # BatchNorm in eval mode: batch statistics would differ between halves


def grads(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in net.named_parameters()}


def _rank(rank: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=2)
    ctx = DistContext(rank, 2, rank, 2)
    m = model()
    net = wrap(m.net, ctx, torch.device("cpu"))
    x, y = batch()
    half = slice(4 * rank, 4 * rank + 4)
    mixup_loss(net(x[half]), y[half], CFG, None).backward()  # DDP averages the gradients over ranks
    if rank == 0:
        torch.save(grads(m.net), out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_with_half_a_batch_each_give_the_whole_batch_gradient(tmp_path):
    out = tmp_path / "ddp_grads.pt"
    # fork: the ranks inherit the imported modules instead of importing torch again
    mp.start_processes(_rank, (f"file://{tmp_path / 'rendezvous'}", str(out)), nprocs=2, start_method="fork")
    m = model()
    x, y = batch()
    mixup_loss(m.net(x), y, CFG, None).backward()
    ref, ddp = grads(m.net), torch.load(out, weights_only=True)
    assert ref.keys() == ddp.keys()
    for name in ref:
        torch.testing.assert_close(ddp[name], ref[name], rtol=1e-5, atol=1e-6)


def test_torchrun_environment_is_read_once_by_the_stage():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "x"}
    assert context_from_env({**env, "MASTER_PORT": "1"}) == DistContext(3, 4, 1, 2)
    assert not context_from_env(env).enabled  # not all of torchrun's variables: a plain run
    assert not context_from_env({}).enabled and context_from_env({}).is_main
    cmd = torchrun_command(3, ["audioclf.cli", "stage", "train"])
    assert cmd[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--nproc_per_node=3" in cmd
    assert cmd[-4:] == ["-m", "audioclf.cli", "stage", "train"]


def write_tiny_project(root: Path, n: int = 48, **runtime: object) -> list[str]:
    return write_train_project(
        root, n=n, n_folds=4, noise=1.0, band=3, boost=6.0, train={}, runtime={"device": "cpu", "threads": 1, **runtime}
    )


@pytest.mark.slow
def test_train_stage_relaunches_under_torchrun_and_rank0_writes_once(tmp_path):
    argv = write_tiny_project(tmp_path, nproc=2)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "audioclf.cli", "stage", "train", *argv],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    summaries = [line for line in run.stdout.splitlines() if "val macro-F1" in line]
    assert len(summaries) == 1 and "2 × cpu" in summaries[0], run.stdout
    sidecar = json.loads((tmp_path / "models" / "model.json").read_text())
    assert sidecar["processes"] == 2 and (tmp_path / "models" / "model.pt").is_file()
    plots = tmp_path / "metrics" / "train" / "plots" / "metrics"
    for name in ("train/loss", "train/f1_macro", "val/accuracy", "val/f1_macro"):
        rows = (plots / f"{name}.tsv").read_text().splitlines()
        assert [r.split("\t")[0] for r in rows[1:]] == ["0", "1", "2"], name  # one row per epoch
    assert json.loads((tmp_path / "metrics" / "train" / "metrics.json").read_text())["epochs_run"] == 3
    assert [p.name for p in (tmp_path / "models" / "checkpoints").iterdir()] == ["last.pt"]
