"""The train stage end to end on a tiny cache: SIGKILL it once checkpoint N exists, rerun, and
the shipped weights and the DVCLive logs equal an uninterrupted run's bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from audioclf.stages import train as train_stage
from tests.helpers import write_train_project

EPOCHS = 40
KILL_AFTER = 3


def write_tiny_project(root: Path, n: int = 60, **train: object) -> list[str]:
    """features (n, 1, 16, 20) float16 + index/meta, splits and params; returns the stage argv."""
    return write_train_project(
        root, n=n, n_folds=5, noise=2.0, band=2, boost=3.0,
        train={"patience": 100, **train},
        runtime={"device": "cpu", "threads": 1},  # one thread: bit-identical across processes
    )  # fmt: skip


def checkpoint_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0


def state(models: Path) -> dict[str, torch.Tensor]:
    return torch.load(models / "model.pt", map_location="cpu", weights_only=True)


def logs(live: Path) -> dict[str, str]:
    return {str(p.relative_to(live)): p.read_text() for p in sorted((live / "plots").rglob("*.tsv"))}


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path):
    threads = torch.get_num_threads()
    try:
        ref_argv = write_tiny_project(tmp_path / "ref", epochs=EPOCHS)
        train_stage.main(ref_argv)
    finally:
        torch.set_num_threads(threads)

    root = tmp_path / "killed"
    argv = write_tiny_project(root, epochs=EPOCHS)
    ckpt = root / "models" / "checkpoints" / "last.pt"
    env = {**os.environ, "PYTHONPATH": str(Path(train_stage.__file__).parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "audioclf.cli", "stage", "train", *argv],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline, seen = time.monotonic() + 120, None
    while proc.poll() is None and time.monotonic() < deadline:
        mtime = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        if mtime != seen and checkpoint_epoch(ckpt) >= KILL_AFTER:  # load only a new checkpoint
            break
        seen = mtime
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = checkpoint_epoch(ckpt)
    assert KILL_AFTER <= killed_at < EPOCHS, f"not killed mid-run (checkpoint epoch {killed_at})"
    assert not (root / "models" / "model.pt").exists()

    train_stage.main(argv)  # the rerun resumes from the checkpoint
    torch.set_num_threads(threads)
    ref, resumed = state(tmp_path / "ref" / "models"), state(root / "models")
    assert ref.keys() == resumed.keys()
    for key in ref:
        assert torch.equal(ref[key], resumed[key]), key
    assert logs(root / "metrics" / "train") == logs(tmp_path / "ref" / "metrics" / "train")
    val_f1 = (root / "metrics" / "train" / "plots" / "metrics" / "val" / "f1_macro.tsv").read_text().splitlines()
    assert len(val_f1) == EPOCHS + 1  # header + one row per epoch, none lost or repeated
    summary = json.loads((root / "metrics" / "train" / "metrics.json").read_text())
    sidecar = json.loads((root / "models" / "model.json").read_text())
    assert summary["best"]["epoch"] == sidecar["best_epoch"] and summary["epochs_run"] == EPOCHS
