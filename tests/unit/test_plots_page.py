"""The offline plots page and the browser check's verdicts (the browser run itself is
`make plots-check`, in .ci/run after installing Chromium)."""

import copy
import json

import pytest
from tools.check_plots import check
from tools.vendor_vega import PACKAGES

from tests.helpers import REPO


def test_page_inlines_vega_and_loads_nothing_from_the_network():
    page = (REPO / "viz" / "page.html").read_text()
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page  # DVC would add its CDN scripts there
    assert "<script src" not in page and "cdn.jsdelivr" not in page
    for name, version in PACKAGES.items():
        assert f"{name}@{version} (npm)" in page
    assert "html_template = ../viz/page.html" in (REPO / ".dvc" / "config").read_text()


def test_dvc_yaml_plots_use_the_project_templates():
    import yaml

    plots = {
        next(iter(p)): p[next(iter(p))]
        for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
        if isinstance(p, dict)
    }
    for name in ("confusion", "confusion_normalized", "loss", "f1"):
        template = REPO / plots[name]["template"]
        assert json.loads(template.read_text())["data"] == {"values": "<DVC_METRIC_DATA>"}, name
    curves = json.loads((REPO / "viz" / "templates" / "curves.json").read_text())
    assert {"calculate": "toNumber(datum.step) + 1", "as": "epoch"} in curves["transform"]
    assert curves["encoding"]["x"]["title"] == "epoch" and curves["encoding"]["color"]["field"] == "series"


def _mark(role, marktype="rect", n=9, titles=()):
    return {"role": role, "marktype": marktype, "n": n, "titles": list(titles)}


GOOD = {
    "errors": [],
    "images": [{"src": "static/workspace_metrics_confusion.png", "ok": True}],
    "plots": {
        "#confusion": {"marks": [_mark("mark"), _mark("axis-title", "text", 1, ["predicted"])]},
        "#confusion_normalized": {"marks": [_mark("mark")]},
        "#per_class_f1": {"marks": [_mark("mark", n=3)]},
        "#loss": {
            "marks": [
                _mark("mark", "line", 2),
                _mark("axis-title", "text", 1, ["epoch"]),
                _mark("legend-label", "text", 2),
            ]
        },
        "#f1": {
            "marks": [
                _mark("mark", "line", 4),
                _mark("axis-title", "text", 1, ["epoch"]),
                _mark("legend-label", "text", 4),
            ]
        },
    },
}


def test_a_fully_drawn_page_passes():
    assert check(GOOD, 3) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda r: r["errors"].append("Uncaught ReferenceError: vegaEmbed is not defined"), "console error"),
        (lambda r: r["images"][0].update(ok=False), "image did not load"),
        (lambda r: r["plots"]["#per_class_f1"].update(marks=[_mark("mark", n=0)]), "#per_class_f1: drew no marks"),
        (lambda r: r["plots"]["#confusion"]["marks"][0].update(n=6), "confusion cells [6], expected 3x3"),
        (lambda r: r["plots"]["#loss"]["marks"][1].update(titles=["step"]), "#loss: x axis titled ['step']"),
        (lambda r: r["plots"]["#f1"]["marks"].pop(2), "#f1: no legend"),
        (lambda r: r["plots"].update({"#loss": {"error": "Error: bad spec"}}), "#loss: did not render"),
    ],
)
def test_each_failure_is_named(edit, expected):
    result = copy.deepcopy(GOOD)
    edit(result)
    problems = check(result, 3)
    assert any(expected in p for p in problems), problems
