"""The real `dvc repro` in a temporary git repo, on a tiny config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from audioclf.metrics import macro_f1
from tests.helpers import REPO, TINY_PARAMS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _run(cmd: list[str], cwd: Path, stdout_only: bool = False) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["DVC_NO_ANALYTICS"] = "1"
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout if stdout_only else proc.stdout + proc.stderr


def _ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tracked project (no outputs, no lock) with the tiny params, committed."""
    root = tmp_path_factory.mktemp("project")
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
            or rel.startswith(("data/", "metrics/", "models/", "tests/"))
            or not (REPO / rel).is_file()
        ):
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for block, values in TINY_PARAMS.items():
        params[block].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "test@example.invalid"],
        ["git", "config", "user.name", "test"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "tiny project"],
    ):
        _run(cmd, root)
    return root


def test_repro_runs_all_stages_then_nothing_then_only_what_changed(project: Path):
    first = _run(["dvc", "repro"], project)
    assert _ran(first) == ["download", "split", "features", "train", "evaluate", "quantize"]
    head = json.loads((project / "metrics" / "eval.json").read_text())["test"]
    confusion = pd.read_csv(project / "metrics" / "plots" / "confusion.csv")
    ids = {c: i for i, c in enumerate(sorted(set(confusion["actual"])))}
    f1 = macro_f1(confusion["actual"].map(ids).to_numpy(), confusion["predicted"].map(ids).to_numpy(), len(ids))
    assert head["n"] == 6 and head["f1_macro"] == pytest.approx(f1)  # the headline of what the plot lists
    assert (project / "models" / "model.onnx").is_file()

    assert _ran(_run(["dvc", "repro"], project)) == []

    # runtime is read but not declared: changing it reruns nothing
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["runtime"]["threads"] = 1
    params["train"]["epochs"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _ran(_run(["dvc", "repro"], project)) == ["train", "evaluate", "quantize"]

    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], project, stdout_only=True))
    text = json.dumps(shown)
    assert "f1_macro" in text and "val_f1_macro" in text

    _run(["dvc", "plots", "show", "-o", "plots_out"], project)
    html = (project / "plots_out" / "index.html").read_text()
    assert "Test confusion matrix (counts)" in html and "Loss per epoch" in html and "confusion.png" in html
