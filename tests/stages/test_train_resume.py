"""The train stage end to end on a tiny cache: SIGKILL it once checkpoint N exists, rerun, and
the rerun trains only the epochs after the checkpoint, and the shipped weights and the DVCLive
logs equal an uninterrupted run's bit for bit."""

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
from tests.helpers import checkpoint_epoch, logs, spy_epochs, state, write_tiny_project

EPOCHS = 40
KILL_AFTER = 3


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path, monkeypatch):
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

    trained = spy_epochs(monkeypatch)
    train_stage.main(argv)  # the rerun resumes from the checkpoint
    assert trained == list(range(killed_at + 1, EPOCHS + 1))
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
