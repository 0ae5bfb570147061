"""A failed training run leaves the shipped model's DVCLive logs (metrics/train) exactly as they
were: they are written to a temp folder that replaces metrics/train only once model.pt is saved."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
import yaml

from audioclf.errors import AudioclfError
from audioclf.stages import train as train_stage
from tests.robustness.bad_inputs import snapshot
from tests.stages.test_train_resume import write_tiny_project


@pytest.fixture
def trained(tmp_path: Path) -> tuple[list[str], dict[str, bytes], dict[str, bytes]]:
    """A project with a shipped model; (argv, models/ snapshot, metrics/train snapshot)."""
    threads = torch.get_num_threads()
    argv = write_tiny_project(tmp_path, epochs=2)
    try:
        train_stage.main(argv)
    finally:
        torch.set_num_threads(threads)
    return argv, snapshot(tmp_path / "models"), snapshot(tmp_path / "metrics" / "train")


def _unchanged(root: Path, models: dict[str, bytes], logs: dict[str, bytes]) -> None:
    assert snapshot(root / "metrics" / "train") == logs
    assert {k: v for k, v in snapshot(root / "models").items() if not k.startswith("checkpoints")} == {
        k: v for k, v in models.items() if not k.startswith("checkpoints")
    }
    assert [p.name for p in (root / "metrics").iterdir()] == ["train"]  # no temp folder left beside it


def _retrain(root: Path, **train: object) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(train)
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def _run(argv: list[str]) -> None:
    threads = torch.get_num_threads()
    try:
        train_stage.main(argv)
    finally:
        torch.set_num_threads(threads)


def test_a_diverged_run_keeps_the_shipped_models_logs(tmp_path: Path, trained) -> None:
    argv, models, logs = trained
    _retrain(tmp_path, lr=1e8, grad_clip=None)
    with pytest.raises(AudioclfError, match="training diverged"):
        _run(argv)
    _unchanged(tmp_path, models, logs)


def test_a_run_failing_while_saving_the_model_keeps_the_logs(
    tmp_path: Path, trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv, models, logs = trained
    _retrain(tmp_path, epochs=3)  # another recipe: a different log would be written

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "models" / "model.pt"))

    monkeypatch.setattr(train_stage, "save_model", full_disk)
    with pytest.raises(OSError):
        _run(argv)
    _unchanged(tmp_path, models, logs)


def test_a_run_failing_before_training_keeps_the_logs(tmp_path: Path, trained) -> None:
    argv, models, logs = trained
    (tmp_path / "splits" / "train.csv").write_text("path,label\n")  # an emptied split
    with pytest.raises(AudioclfError):
        _run(argv)
    _unchanged(tmp_path, models, logs)


def test_a_successful_run_replaces_the_logs_and_clears_a_killed_runs_folder(tmp_path: Path, trained) -> None:
    argv, _, logs = trained
    stale = tmp_path / "metrics" / ".train.k1ll3d.part"  # what a SIGKILLed run leaves
    (stale / "plots").mkdir(parents=True)
    _retrain(tmp_path, epochs=3)
    _run(argv)
    fresh = snapshot(tmp_path / "metrics" / "train")
    assert fresh != logs and "metrics.json" in fresh
    assert sorted(p.name for p in (tmp_path / "metrics").iterdir()) == ["train"]
