"""The real `dvc repro` in a temporary git repo, on a tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from audioclf.metrics import macro_f1
from tests.e2e.common import run, stages_ran, tiny_project

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tracked project (no outputs, no lock) with the tiny params, committed."""
    return tiny_project(tmp_path_factory.mktemp("project"))


def test_repro_runs_all_stages_then_nothing_then_only_what_changed(project: Path):
    first = run(["dvc", "repro"], project)
    assert stages_ran(first) == ["download", "split", "features", "train", "evaluate", "quantize"]
    head = json.loads((project / "metrics" / "eval.json").read_text())["test"]
    cells = pd.read_csv(project / "metrics" / "plots" / "confusion.csv")  # actual, predicted, count
    confusion = cells.loc[cells.index.repeat(cells["count"])]
    ids = {c: i for i, c in enumerate(sorted(set(confusion["actual"])))}
    f1 = macro_f1(confusion["actual"].map(ids).to_numpy(), confusion["predicted"].map(ids).to_numpy(), len(ids))
    assert head["n"] == 6 and head["f1_macro"] == pytest.approx(f1)  # the headline of what the plot lists
    assert (project / "models" / "model.onnx").is_file()

    assert stages_ran(run(["dvc", "repro"], project)) == []

    # runtime is read but not declared: changing it reruns nothing
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["runtime"]["threads"] = 1
    params["train"]["epochs"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stages_ran(run(["dvc", "repro"], project)) == ["train", "evaluate", "quantize"]

    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project, stdout_only=True))
    text = json.dumps(shown)
    assert "f1_macro" in text and "val_f1_macro" in text

    run(["dvc", "plots", "show", "-o", "plots_out"], project)
    html = (project / "plots_out" / "index.html").read_text()
    assert "Test confusion matrix (counts)" in html and "loss per epoch" in html and "confusion.png" in html
    # drawn offline: the page carries Vega itself (viz/page.html via .dvc/config), no CDN
    assert "vega@5.33.1" in html and "vega-embed@6.29.0" in html and "cdn.jsdelivr" not in html
