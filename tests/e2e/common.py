"""What the end-to-end tests share: running a command like a user would, and a copy of the tracked
project with tiny params committed in a fresh git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import REPO, TINY_PARAMS


def run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, stdout_only: bool = False, ok: bool = True
) -> str:
    """Run `cmd` with this venv's tools first on PATH; assert it exits 0 unless `ok` is False."""
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.update({"DVC_NO_ANALYTICS": "1", **(env or {})})
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    elif proc.returncode == 0:
        raise AssertionError(f"{' '.join(cmd)} succeeded but should have failed:\n{proc.stdout[-2000:]}")
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


def stages_ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]


def tiny_project(root: Path, overrides: dict | None = None, skip: tuple[str, ...] = ()) -> Path:
    """A copy of the tracked project (no outputs, no lock) with TINY_PARAMS (+ `overrides`, one
    level deep per block), committed. `skip`: more path prefixes to leave out."""
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for rel in tracked.splitlines():
        if (
            rel == "dvc.lock"
            or rel.startswith(("data/", "metrics/", "models/", "tests/", *skip))
            or not (REPO / rel).is_file()
        ):
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for block, values in TINY_PARAMS.items():
        params[block].update(values)
    for block, values in (overrides or {}).items():
        params[block].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "test@example.invalid"],
        ["git", "config", "user.name", "test"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "tiny project"],
    ):
        run(cmd, root)
    return root
