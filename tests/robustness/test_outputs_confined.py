"""Every stage writes only under data/, models/ and metrics/ of the project (plus the archive
cache it is given), and leaves no temp file; run in-process from the project root as DVC does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import torch

from audioclf.stages import download, evaluate, features, quantize, split, train
from tests.robustness.bad_inputs import cli, leftovers, snapshot, write_params

OUTPUT_DIRS = ("data", "models", "metrics")


def test_the_stages_write_only_under_data_models_and_metrics(tmp_path: Path, capsys) -> None:
    project = tmp_path / "project"
    write_params(
        project / "params.yaml",
        data={"dataset": "synthetic", "classes": ["whistle", "buzz", "clicks"], "synthetic_clips_per_class": 10,
              "sample_rate": "auto", "duration_s": "auto"},
        split={"strategy": "folds"},
        quantize={"variants": ["fp32"], "calibration_samples": 4, "latency_runs": 1},
    )  # fmt: skip
    (project / "README.md").write_text("the user's own file\n")
    (project / "data").mkdir()
    (project / "data" / "notes.txt").write_text("kept\n")
    before = snapshot(project)
    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(project)
    try:
        download.main(["--params", "params.yaml", "--cache-dir", str(tmp_path / "cache")])
        for stage in (split, features, train, evaluate, quantize):
            stage.main(["--params", "params.yaml"])
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    after = snapshot(project)
    outside = {p for p in set(before) | set(after) if p.split(os.sep)[0] not in OUTPUT_DIRS}
    assert {p: after.get(p) for p in outside} == {p: before[p] for p in outside}  # nothing else written or deleted
    assert after["data/notes.txt"] == before["data/notes.txt"]
    assert {"models/model.onnx", "models/model.onnx.json", "metrics/eval.json", "data/features/meta.json"} <= set(after)
    assert leftovers(project) == []
    # the deployed graph carries its class list, which predict checks against the sidecar
    props = {p.key: p.value for p in onnx.load(str(project / "models" / "model.onnx")).metadata_props}
    sidecar = json.loads((project / "models" / "model.onnx.json").read_text())
    assert json.loads(props["audioclf.classes"]) == sidecar["classes"] == ["buzz", "clicks", "whistle"]
    clip = next((project / "data" / "raw" / "audio").rglob("*.wav"))
    assert cli(["predict", str(clip), "--model", str(project / "models" / "model.onnx")], capsys)[0] == 0
