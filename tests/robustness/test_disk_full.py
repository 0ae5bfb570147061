"""A full disk while writing: a patched writer raises ENOSPC mid-write (and, where the machine
lets us mount one, a real 128 KiB tmpfs). The stage stops with one line naming the file, the
previous outputs stay as they were, and no temp or half-written file remains."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

import audioclf.cli
from audioclf.errors import AudioclfError
from audioclf.fetch import Fetcher
from audioclf.stages import download, features
from audioclf.stages import train as train_stage
from tests.helpers import write_tiny_project
from tests.robustness.bad_inputs import (
    cli,
    good_clips,
    leftovers,
    one_line_error,
    snapshot,
    start_stage,
    write_params,
    write_raw,
)
from tests.sources.mirror_server import MirrorServer


def enospc(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None if path is None else str(path))


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, list[str]]:
    """data/raw with 10 clips, and the features stage already run once (the outputs to keep)."""
    raw = tmp_path / "data" / "raw"
    write_raw(raw, good_clips(raw, 5))
    argv = ["--params", str(write_params(tmp_path / "params.yaml")), "--raw", str(raw),
            "--out", str(tmp_path / "data" / "features")]  # fmt: skip
    features.main(argv)
    return tmp_path, argv


def test_features_disk_full_when_reserving_the_cache(project, monkeypatch) -> None:
    root, argv = project
    before = snapshot(root / "data" / "features")
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, offset, size: (_ for _ in ()).throw(enospc()))
    with pytest.raises(AudioclfError) as err:
        features.main(argv)
    message = str(err.value)
    assert message.startswith(f"{root / 'data' / 'features' / 'features.npy'}: no space left on the device")
    assert "free space" in message and "\n" not in message
    assert snapshot(root / "data" / "features") == before and leftovers(root) == []


def test_features_disk_full_when_writing_meta_json(project, monkeypatch) -> None:
    root, argv = project
    before = snapshot(root / "data" / "features")
    real = Path.write_text

    def full(self: Path, *args, **kwargs):
        if "meta.json" in self.name:
            real(self, '{"half": ', encoding="utf-8")  # some bytes made it, then the disk filled
            raise enospc(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(AudioclfError, match=r"features/meta\.json: no space left on the device") as err:
        features.main(argv)
    assert "\n" not in str(err.value)
    # features.npy and index.csv were complete in their temp files, yet none replaced the old ones
    assert snapshot(root / "data" / "features") == before and leftovers(root) == []


def test_download_disk_full_mid_file_then_rerun(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, monkeypatch
) -> None:
    rows = good_clips(mirror_root / "clips", 6)
    pd.DataFrame({"path": [p for p, _ in rows], "label": [lb for _, lb in rows]}).to_csv(
        mirror_root / "clips" / "clips.csv", index=False
    )
    params = write_params(tmp_path / "params.yaml", data={"dataset": "csv", "source": mirror.url + "clips/clips.csv"})
    raw = tmp_path / "data" / "raw"
    argv = ["--params", str(params), "--out", str(raw), "--cache-dir", str(tmp_path / "cache")]
    real, calls = Fetcher._copy_body, []

    def copy_body(self, resp, fh, on_bytes):
        calls.append(1)
        if len(calls) == 4:
            fh.write(resp.raw.read(100))  # a partial file on disk, then the disk is full
            raise enospc(fh.name)
        return real(self, resp, fh, on_bytes)

    monkeypatch.setattr(Fetcher, "_copy_body", copy_body)
    with pytest.raises(AudioclfError, match=r"data/raw/audio/[ab]/[ab]_\d\.wav: no space left on the device") as err:
        download.main(argv)
    assert "\n" not in str(err.value) and leftovers(tmp_path) == []
    journal = (raw / ".download-journal.csv").read_text().splitlines()
    assert all(len(line.split(",")) == 3 for line in journal)  # only complete files were recorded
    monkeypatch.setattr(Fetcher, "_copy_body", real)
    download.main(argv)  # space freed: the rerun completes
    assert len(pd.read_csv(raw / "manifest.csv")) == len(rows) and leftovers(tmp_path) == []


def test_training_disk_full_when_saving_a_checkpoint(tmp_path: Path, monkeypatch) -> None:
    argv = write_tiny_project(tmp_path, epochs=3)
    real = torch.save

    def save(obj, f, *args, **kwargs):  # the checkpoint is saved through an open file
        f.write(b"PK\x03\x04partial")
        raise enospc(f.name)

    monkeypatch.setattr(torch, "save", save)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(AudioclfError, match=r"checkpoints/last\.pt: no space left on the device") as err:
            train_stage.main(argv)
    finally:
        torch.set_num_threads(threads)
        monkeypatch.setattr(torch, "save", real)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "models" / "model.pt").exists() and leftovers(tmp_path) == []


def test_the_cli_turns_any_full_disk_into_one_line(monkeypatch, capsys) -> None:
    def stage(argv: list[str]) -> None:
        raise enospc("/data/raw/.download-journal.csv")

    monkeypatch.setattr(audioclf.cli, "_resolve", lambda argv: (stage, []))
    code, err = cli(["stage", "download"], capsys)
    assert code == 2
    assert one_line_error(err) == (
        "audioclf: error: /data/raw/.download-journal.csv: No space left on device; free space and rerun "
        "(outputs are replaced only when complete)"
    )


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A real 128 KiB filesystem (needs root and mount rights; skipped elsewhere)."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:80]})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_features_on_a_really_full_disk(tmp_path: Path, tiny_tmpfs: Path) -> None:
    """Without the cache's block reservation, writing into its memory map on a full disk ends in
    SIGBUS (exit -7, no message, a sparse temp file left)."""
    raw = tmp_path / "data" / "raw"
    write_raw(raw, good_clips(raw, 60))  # 120 rows x 16 mels x 32 frames x float32: > 128 KiB
    params = write_params(tmp_path / "params.yaml", features={"dtype": "float32"})
    proc = start_stage(tmp_path, "features", ["--params", str(params), "--raw", str(raw), "--out", str(tiny_tmpfs)])
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 2, err[-2000:]
    line = next(line for line in err.splitlines() if line.startswith("audioclf: error:"))
    assert f"{tiny_tmpfs / 'features.npy'}: no space left on the device" in line
    assert list(tiny_tmpfs.iterdir()) == []
