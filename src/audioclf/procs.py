"""Process lifetime: pool workers that die with their parent, SIGTERM handled like Ctrl-C, and
one run of a stage per project at a time.

- A killed stage (SIGKILL, the OOM killer) cannot clean up after itself, so each pool worker asks
  the kernel to kill it when its parent dies (Linux `PR_SET_PDEATHSIG`), and also watches its
  parent id (other systems; and the instant between fork and prctl).
- SIGTERM (what `kill`, systemd, CI runners and schedulers send) raises `Terminated`, a
  KeyboardInterrupt, so the same clean-up runs as for Ctrl-C; the CLI exits 143.
- A stage holds an advisory lock (`flock`) in a folder DVC does not track (`.dvc/tmp/locks/`, or
  `.audioclf/locks/` outside a DVC project): a second run of the same stage in the same project
  stops at once naming the holder's pid, instead of deleting the first run's live temp files.
  The kernel drops the lock when its holder dies, however it dies: no stale lock to clean.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from audioclf.errors import AudioclfError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 1.0
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, as a shell reports a process killed by SIGTERM
LOCK_ENV = "AUDIOCLF_STAGE_LOCK"  # "<stage>:<pid>": set for the holder's children (torchrun ranks)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C (temp files removed, pools shut down)."""


_TERMINATED = threading.Event()


def _raise_terminated(signum: int, frame: object) -> None:
    # Recorded as well as raised: a signal landing inside a callback Python runs with exceptions
    # ignored (an import lock's weakref callback, a __del__) would otherwise be lost, and the
    # terminated run would exit 0.
    _TERMINATED.set()
    raise Terminated()


def was_terminated() -> bool:
    """Whether SIGTERM arrived in this process, even if its `Terminated` was swallowed."""
    return _TERMINATED.is_set()


def handle_sigterm() -> None:
    """Turn SIGTERM into `Terminated` in this process (main thread only, where Python runs
    signal handlers)."""
    _TERMINATED.clear()  # a new command in this process (tests run many) starts unterminated
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return False


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid:  # re-parented: the parent is gone
            os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """Call first thing in a worker process: it is killed when `parent_pid` dies. SIGTERM goes back
    to the default (a worker has nothing of its own to clean up; the parent removes the outputs)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()


def lock_dir(root: Path) -> Path:
    """Where stage locks live: `.dvc/tmp/locks` of the DVC project holding `root` (git- and
    DVC-ignored; a pipeline in a subfolder such as cv/ shares it), else `root/.audioclf/locks`."""
    for folder in (root, *root.resolve().parents):
        if (folder / ".dvc").is_dir():
            return folder / ".dvc" / "tmp" / "locks"
    return root / ".audioclf" / "locks"


@contextlib.contextmanager
def stage_lock(stage: str, root: Path | None = None) -> Iterator[Path | None]:
    """Hold the lock of `stage` in the project at `root` (the working directory, as DVC runs the
    stages) while the block runs. A second holder gets a one-line AudioclfError naming the pid."""
    if os.environ.get(LOCK_ENV, "").split(":")[0] == stage:  # a child of the holder (a DDP rank)
        yield None
        return
    import fcntl  # POSIX only; imported here so the module still imports elsewhere

    path = lock_dir(Path.cwd() if root is None else root) / f"{stage}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise AudioclfError(
                f"another run of the {stage} stage is in progress in this project (pid {holder}, lock {path}); "
                "wait for it to finish or stop it, then rerun"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        previous = os.environ.get(LOCK_ENV)
        os.environ[LOCK_ENV] = f"{stage}:{os.getpid()}"
        try:
            yield path
        finally:
            if previous is None:
                os.environ.pop(LOCK_ENV, None)
            else:
                os.environ[LOCK_ENV] = previous
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock
