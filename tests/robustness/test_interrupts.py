"""SIGINT and SIGKILL during download, features and training, then a rerun: it completes, its
outputs equal an uninterrupted run's, and no temp or half-written file remains.

Each stage runs as `python -m audioclf stage ...` in a subprocess and is interrupted once it has
made progress (journal lines, the feature cache's temp file, a checkpoint); the rerun and the
uninterrupted reference run in-process."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from audioclf.stages import download, features
from audioclf.stages import train as train_stage
from tests.helpers import checkpoint_epoch, logs, spy_epochs, state, write_tiny_project
from tests.robustness.bad_inputs import (
    good_clips,
    interrupt_when,
    leftovers,
    snapshot,
    start_stage,
    write_params,
    write_raw,
)
from tests.sources.mirror_server import MirrorServer

SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGKILL, id="SIGKILL")]


def _check_exit(proc_code: int, err: str, sig: int) -> None:
    if sig == signal.SIGINT:
        assert proc_code == 130, err[-2000:]
        assert "audioclf: interrupted; rerun the same command to continue\n" in err  # (after a progress bar)
        assert "Traceback" not in err
    else:
        assert proc_code == -signal.SIGKILL


@pytest.mark.parametrize("sig", SIGNALS)
def test_download_interrupted_then_rerun(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, capsys, sig: int
) -> None:
    rows = good_clips(mirror_root / "clips", 15)
    pd.DataFrame({"path": [p for p, _ in rows], "label": [lb for _, lb in rows]}).to_csv(
        mirror_root / "clips" / "clips.csv", index=False
    )
    data = {"dataset": "csv", "source": mirror.url + "clips/clips.csv"}

    def argv(root: Path) -> list[str]:
        params = write_params(root / "params.yaml", data=data)
        return ["--params", str(params), "--out", str(root / "data" / "raw"), "--cache-dir", str(root / "cache")]

    download.main(argv(tmp_path / "ref"))
    work = tmp_path / "work"
    mirror.latency_s = 0.05  # a slow network: the interrupt lands mid-download
    proc = start_stage(work, "download", argv(work))
    journal = work / "data" / "raw" / ".download-journal.csv"
    err = interrupt_when(proc, lambda: journal.is_file() and len(journal.read_text().splitlines()) >= 3, sig)
    _check_exit(proc.returncode, err, sig)
    assert not (work / "data" / "raw" / "manifest.csv").exists()

    mirror.latency_s = 0.0
    capsys.readouterr()
    download.main(argv(work))
    assert "already present" in capsys.readouterr().out and not journal.exists()
    assert snapshot(work / "data" / "raw") == snapshot(tmp_path / "ref" / "data" / "raw")
    assert leftovers(work) == []


@pytest.mark.parametrize("sig", SIGNALS)
def test_features_interrupted_then_rerun(tmp_path: Path, sig: int) -> None:
    raw = tmp_path / "data" / "raw"
    write_raw(raw, good_clips(raw, 40))

    def argv(out: Path) -> list[str]:
        return ["--params", str(write_params(tmp_path / "params.yaml")), "--raw", str(raw), "--out", str(out)]

    features.main(argv(tmp_path / "ref"))
    out = tmp_path / "data" / "features"
    proc = start_stage(tmp_path, "features", argv(out))
    # the cache's own temp file exists once rows are being computed into it
    computing = lambda: out.is_dir() and any(p.name.startswith("..features.npy") for p in out.iterdir())  # noqa: E731
    err = interrupt_when(proc, computing, sig)
    _check_exit(proc.returncode, err, sig)
    assert not (out / "meta.json").exists()  # nothing was renamed into place
    if sig == signal.SIGINT:
        assert leftovers(out) == []  # an interrupt removes its temp files at once; after SIGKILL the rerun does

    features.main(argv(out))
    assert snapshot(out) == snapshot(tmp_path / "ref")
    assert leftovers(tmp_path) == []


EPOCHS = 8


@pytest.mark.parametrize("sig", SIGNALS)
def test_training_interrupted_then_rerun(tmp_path: Path, sig: int, monkeypatch) -> None:
    threads = torch.get_num_threads()
    try:
        train_stage.main(write_tiny_project(tmp_path / "ref", epochs=EPOCHS))
        root = tmp_path / "work"
        argv = write_tiny_project(root, epochs=EPOCHS)
        ckpt = root / "models" / "checkpoints" / "last.pt"
        proc = start_stage(root, "train", argv)
        err = interrupt_when(proc, ckpt.is_file, sig)
        _check_exit(proc.returncode, err, sig)
        killed_at = checkpoint_epoch(ckpt)
        assert 1 <= killed_at < EPOCHS and not (root / "models" / "model.pt").exists()
        trained = spy_epochs(monkeypatch)
        train_stage.main(argv)  # resumes from the checkpoint
        assert trained == list(range(killed_at + 1, EPOCHS + 1))
    finally:
        torch.set_num_threads(threads)
    ref, resumed = state(tmp_path / "ref" / "models"), state(root / "models")
    assert ref.keys() == resumed.keys() and all(torch.equal(ref[k], resumed[k]) for k in ref)
    assert logs(root / "metrics" / "train") == logs(tmp_path / "ref" / "metrics" / "train")
    assert (root / "models" / "model.json").read_text() == (tmp_path / "ref" / "models" / "model.json").read_text()
    assert leftovers(tmp_path) == []
    assert np.isfinite(np.concatenate([v.float().flatten().numpy() for v in resumed.values()])).all()
