"""Process lifetime: pool workers die with a SIGKILLed stage, and one run of a stage per project
at a time (the second stops with one line naming the holder's pid; the first is unharmed).
SIGTERM during download, features and training is in test_interrupts.py (like SIGINT, exit 143)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from audioclf import procs
from audioclf.errors import AudioclfError
from audioclf.stages import features
from tests.robustness.bad_inputs import cli, good_clips, one_line_error, snapshot, start_stage, write_params, write_raw

SRC = str(Path(__file__).resolve().parents[2] / "src")


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until(check, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def features_project(root: Path, clips: int = 60, workers: int = 2) -> list[str]:
    raw = root / "data" / "raw"
    write_raw(raw, good_clips(raw, clips))
    params = write_params(root / "params.yaml", runtime={"workers": workers, "threads": 1, "device": "cpu"})
    return ["--params", str(params), "--raw", str(raw), "--out", str(root / "data" / "features")]


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_the_features_pool_dies_with_a_sigkilled_stage(tmp_path: Path) -> None:
    proc = start_stage(tmp_path, "features", features_project(tmp_path))
    wait_until(lambda: len(children(proc.pid)) >= 2 or proc.poll() is not None)
    workers = children(proc.pid)
    assert len(workers) >= 2, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGSTOP)  # frozen mid-run, the workers busy or waiting for work
    proc.kill()
    proc.wait()
    wait_until(lambda: not any(alive(w) for w in workers), timeout_s=10)


@pytest.mark.parametrize("deathsig", [True, False], ids=["prctl", "parent-watch"])
def test_a_worker_dies_with_its_parent_however_the_parent_dies(tmp_path: Path, deathsig: bool) -> None:
    """Without prctl (other systems), the worker's watch thread notices the new parent id."""
    script = textwrap.dedent(f"""
        import os, sys, time
        from audioclf import procs
        if not {deathsig}:
            procs._set_pdeathsig = lambda sig: False
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            procs.die_with_parent(parent)
            time.sleep(60)
            os._exit(0)
        print(pid, flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    child = int(proc.stdout.readline())
    assert alive(child)
    proc.kill()
    proc.wait()
    wait_until(lambda: not alive(child), timeout_s=procs.PARENT_POLL_S * 5)


def _hold_lock(cwd: Path, stage: str) -> subprocess.Popen:
    script = (
        f"from audioclf import procs\nimport time\nwith procs.stage_lock({stage!r}):\n"
        " print('held', flush=True)\n time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop(procs.LOCK_ENV, None)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=cwd, stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"held"
    return proc


@pytest.mark.parametrize("dvc_project", [True, False], ids=["dvc-project", "plain-folder"])
def test_a_second_run_of_a_stage_stops_naming_the_holder(tmp_path: Path, capsys, dvc_project: bool) -> None:
    if dvc_project:
        (tmp_path / ".dvc").mkdir()
    argv = features_project(tmp_path, clips=3, workers=1)
    holder = _hold_lock(tmp_path, "features")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code, err = cli(["stage", "features", *argv], capsys)
        assert code == 2
        line = one_line_error(err)
        assert f"pid {holder.pid}" in line and "another run of the features stage" in line
        lock = tmp_path / (".dvc/tmp/locks" if dvc_project else ".audioclf/locks") / "features.lock"
        assert str(lock) in line
        with procs.stage_lock("split", tmp_path):  # another stage is not locked out
            pass
        holder.kill()  # SIGKILL: the kernel drops the lock with its holder, nothing stale to clean
        holder.wait()
        code, err = cli(["stage", "features", *argv], capsys)
        assert code == 0, err
    finally:
        os.chdir(cwd)
        holder.kill()
        holder.wait()


def test_two_real_runs_at_once_the_first_survives_the_second(tmp_path: Path, capsys) -> None:
    argv = features_project(tmp_path, clips=40, workers=1)
    reference = tmp_path / "ref"
    features.main([*argv[:-1], str(reference)])
    out = tmp_path / "data" / "features"
    first = start_stage(tmp_path, "features", argv)
    computing = lambda: out.is_dir() and any(p.name.startswith("..features.npy") for p in out.iterdir())  # noqa: E731
    wait_until(lambda: computing() or first.poll() is not None)
    first.send_signal(signal.SIGSTOP)
    try:
        temps = sorted(p.name for p in out.iterdir())
        second = start_stage(tmp_path, "features", argv)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2
        assert f"pid {first.pid}" in one_line_error(err.decode())
        assert sorted(p.name for p in out.iterdir()) == temps  # the first run's temp files untouched
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err.decode()[-2000:]
    assert snapshot(out) == snapshot(reference)


def test_ranks_of_the_holder_share_its_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with procs.stage_lock("train", tmp_path) as path:
        assert path is not None and path.read_text().strip() == str(os.getpid())
        assert os.environ[procs.LOCK_ENV] == f"train:{os.getpid()}"
        with procs.stage_lock("train", tmp_path) as inner:  # what a torchrun rank inherits
            assert inner is None
    monkeypatch.delenv(procs.LOCK_ENV, raising=False)
    with procs.stage_lock("train", tmp_path):  # released: taken again
        pass


def test_sigterm_becomes_terminated_in_the_main_thread() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        procs.handle_sigterm()
        with pytest.raises(procs.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert issubclass(procs.Terminated, KeyboardInterrupt)  # every Ctrl-C clean-up path runs
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_lock_errors_are_audioclf_errors(tmp_path: Path) -> None:
    holder = _hold_lock(tmp_path, "split")
    try:
        with pytest.raises(AudioclfError, match=rf"pid {holder.pid}"), procs.stage_lock("split", tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_lock_names_keep_cv_folds_apart_and_find_the_dvc_project(tmp_path: Path) -> None:
    from audioclf.cli import _lock_name

    assert _lock_name(["features", "--raw", "x"]) == "features"
    assert _lock_name(["cv", "fold", "3", "--params", "p"]) != _lock_name(["cv", "fold", "4"])
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "cv").mkdir()
    assert procs.lock_dir(tmp_path / "cv") == tmp_path / ".dvc" / "tmp" / "locks"  # a pipeline in a subfolder
