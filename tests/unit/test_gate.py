"""The regression gate: rules, verdicts, the table and the exit code (`audioclf check-metrics`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from audioclf.cli import main as cli_main
from audioclf.errors import AudioclfError
from audioclf.gate import Rule, compare, judge, lookup, main, parse_tolerances
from tests.helpers import REPO

EVAL = {"test": {"accuracy": 0.90, "f1_macro": 0.90, "iou_macro": 0.84, "n": 400}}
QUANT = {
    "fp32": {"size_mb": 1.33, "f1_macro": 0.90, "latency_ms_b1": 1.9, "speedup_vs_torch_b1": 2.5},
    "int8_static": {"size_mb": 0.39, "f1_macro": 0.89, "latency_ms_b1": 1.5, "speedup_vs_torch_b1": 3.0},
    "deployed": "fp32",
}
RULES = {
    "metrics/eval.json": {"test.f1_macro": {"max_drop": 0.01}, "test.n": {"max_drop": 0, "max_increase": 0}},
    "metrics/quantize.json": {
        "@deployed.size_mb": {"max_increase_rel": 0.05},
        "@deployed.f1_macro": {"max_drop": 0.01},
        "fp32.latency_ms_b1": {"advisory": True},
        "fp32.speedup_vs_torch_b1": {"min": 1.0},
    },
}


def _write_project(root: Path, eval_json: dict, quant_json: dict) -> None:
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    (root / "metrics" / "eval.json").write_text(json.dumps(eval_json))
    (root / "metrics" / "quantize.json").write_text(json.dumps(quant_json))
    (root / "metrics" / "tolerances.yaml").write_text(yaml.safe_dump(RULES))


def _with(doc: dict, path: str, value: object) -> dict:
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[part]
    node[last] = value
    return doc


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    base = tmp_path / "base"
    _write_project(base, EVAL, QUANT)
    return base


def _run(tmp_path: Path, baseline: Path, eval_json: dict = EVAL, quant_json: dict = QUANT) -> int:
    now = tmp_path / "now"
    _write_project(now, eval_json, quant_json)
    return main(["--root", str(now), "--baseline", str(baseline)])


def test_worse_macro_f1_fails_and_names_the_metric(tmp_path, baseline, capsys):
    assert _run(tmp_path, baseline, _with(EVAL, "test.f1_macro", 0.88)) == 1
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("metrics/eval.json:test.f1_macro"))
    assert "REGRESSION" in row and "-0.0200" in row and "drop<=0.01" in row
    assert "FAILED, 1 regression(s): metrics/eval.json:test.f1_macro" in out


def test_change_within_tolerance_passes(tmp_path, baseline, capsys):
    better_size = _with(QUANT, "fp32.size_mb", 1.33 * 1.04)
    assert _run(tmp_path, baseline, _with(EVAL, "test.f1_macro", 0.8905), better_size) == 0
    out = capsys.readouterr().out
    assert "REGRESSION" not in out and "check-metrics: passed" in out


def test_model_size_growth_over_five_percent_fails(tmp_path, baseline, capsys):
    assert _run(tmp_path, baseline, quant_json=_with(QUANT, "fp32.size_mb", 1.33 * 1.06)) == 1
    assert "metrics/quantize.json:@deployed.size_mb (fp32.size_mb)" in capsys.readouterr().out


def test_advisory_latency_never_fails_but_a_same_run_ratio_can(tmp_path, baseline, capsys):
    assert _run(tmp_path, baseline, quant_json=_with(QUANT, "fp32.latency_ms_b1", 50.0)) == 0
    assert "advisory" in capsys.readouterr().out
    assert _run(tmp_path, baseline, quant_json=_with(QUANT, "fp32.speedup_vs_torch_b1", 0.8)) == 1


def test_deployed_variant_is_resolved_in_each_file():
    checks = parse_tolerances({"q.json": {"@deployed.size_mb": {"max_increase_rel": 0.05}}}, "t")
    now = _with(QUANT, "deployed", "int8_static")
    (row,) = compare(checks, {"q.json": QUANT}, {"q.json": now})
    assert (row.baseline, row.now, row.verdict) == (1.33, 0.39, "ok")  # switching to int8 shrinks it
    assert "int8_static.size_mb; baseline fp32.size_mb" in row.metric


def test_missing_metric_fails_and_new_metric_passes():
    checks = parse_tolerances({"e.json": {"test.f1_macro": {"max_drop": 0.01}}}, "t")
    assert compare(checks, {"e.json": EVAL}, {"e.json": {"test": {}}})[0].verdict == "MISSING"
    assert compare(checks, {"e.json": {"test": {}}}, {"e.json": EVAL})[0].verdict == "new"


def test_judge_rules():
    assert judge(0.90, 0.89, Rule(max_drop=0.01)) == "ok"  # exactly the allowed drop
    assert judge(0.90, 0.8899, Rule(max_drop=0.01)) == "REGRESSION"
    assert judge(100.0, 89.0, Rule(max_drop_rel=0.1)) == "REGRESSION"
    assert judge(1.0, 1.2, Rule(max_increase=0.1)) == "REGRESSION"
    assert judge(400, 401, Rule(max_drop=0, max_increase=0)) == "REGRESSION"
    assert judge(None, 0.5, Rule(min=0.6)) == "REGRESSION"
    assert judge(1.0, 99.0, Rule(advisory=True)) == "advisory"


def test_lookup_follows_dotted_and_indirect_keys():
    assert lookup(QUANT, "@deployed.size_mb") == ("fp32.size_mb", 1.33)
    assert lookup(EVAL, "test.nope") == ("test.nope", None)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"e.json": {"test.f1_macro": {"max_dorp": 0.01}}}, "unknown rule key"),
        ({"e.json": {"test.f1_macro": {"max_drop": -1}}}, "max_drop must be a number >= 0"),
        ({"e.json": {"test.f1_macro": {"advisory": "yes"}}}, "advisory must be true or false"),
        ({"e.json": ["test.f1_macro"]}, "must map dotted metric keys"),
    ],
)
def test_bad_tolerances_name_the_problem(raw, fragment):
    with pytest.raises(AudioclfError, match=fragment):
        parse_tolerances(raw, "metrics/tolerances.yaml")


def test_missing_workspace_file_is_a_one_line_error(tmp_path, baseline, capsys):
    now = tmp_path / "now"
    _write_project(now, EVAL, QUANT)
    (now / "metrics" / "quantize.json").unlink()
    assert cli_main(["check-metrics", "--root", str(now), "--baseline", str(baseline)]) == 2
    err = capsys.readouterr().err.strip()
    assert "quantize.json: not found; run `dvc repro`" in err and "\n" not in err


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_baseline_from_a_git_ref(tmp_path, capsys):
    repo = tmp_path / "repo"
    _write_project(repo, EVAL, QUANT)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "ci@example.com")
    _git(repo, "config", "user.name", "ci")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "baseline")
    (repo / "metrics" / "eval.json").write_text(json.dumps(_with(EVAL, "test.f1_macro", 0.85)))
    assert main(["--root", str(repo)]) == 1  # workspace vs HEAD
    assert "test.f1_macro" in capsys.readouterr().out
    _git(repo, "commit", "-q", "-am", "accept the new metrics")
    assert main(["--root", str(repo)]) == 0
    assert main(["--root", str(repo), "--baseline-ref", "HEAD~1"]) == 1
    assert cli_main(["check-metrics", "--root", str(repo), "--baseline-ref", "nope"]) == 2
    assert "no baseline at git ref 'nope'" in capsys.readouterr().err


# What the gate held before the headline/details move, as (file, key) → it must still hold each
GATED = {
    ("metrics/eval.json", "test.accuracy"), ("metrics/eval.json", "test.f1_macro"),
    ("metrics/eval.json", "test.iou_macro"), ("metrics/eval.json", "test.top3_accuracy"),
    ("metrics/eval.json", "test.n"), ("metrics/details/eval.json", "test.balanced_accuracy"),
    ("metrics/train/metrics.json", "best.val_f1_macro"),
    ("metrics/quantize.json", "deployed.f1_macro"), ("metrics/quantize.json", "deployed.size_mb"),
    ("metrics/details/quantize.json", "fp32.size_mb"), ("metrics/details/quantize.json", "int8_static.f1_macro"),
    ("metrics/details/quantize.json", "int8_static.size_mb"),
    ("metrics/details/quantize.json", "fp32.argmax_agreement"),
    ("metrics/details/quantize.json", "fp32.speedup_vs_torch_b1"),
    ("metrics/details/quantize.json", "fp32.speedup_vs_torch_b32"),  # added: never slower at batch 32
}  # fmt: skip


def test_committed_tolerances_still_gate_what_they_gated():
    checks = parse_tolerances(yaml.safe_load((REPO / "metrics" / "tolerances.yaml").read_text()), "tolerances")
    keys = {(c.file, c.key) for c in checks if not c.rule.advisory}
    assert keys == GATED
    assert all(c.rule.advisory for c in checks if "latency" in c.key)


def _committed_copy(root: Path) -> None:
    """The gated files as committed at HEAD (not the workspace, which a running `dvc repro` rewrites)."""
    for file in {f for f, _ in GATED} | {"metrics/tolerances.yaml"}:
        shown = subprocess.run(["git", "show", f"HEAD:{file}"], cwd=REPO, capture_output=True, text=True, check=True)
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).write_text(shown.stdout)


def test_committed_metrics_pass_and_a_worse_macro_f1_or_variant_fails(tmp_path, capsys):
    """The real files: every gated key resolves in them, and a regression in a metrics file or in a
    details file (not a `dvc exp show` column) fails the gate."""
    base, now = tmp_path / "base", tmp_path / "now"
    _committed_copy(base)
    _committed_copy(now)
    assert main(["--root", str(now), "--baseline", str(base)]) == 0
    assert "MISSING" not in capsys.readouterr().out
    path = now / "metrics" / "eval.json"
    worse = json.loads(path.read_text())
    worse["test"]["f1_macro"] -= 0.03  # past the 0.02 allowed
    path.write_text(json.dumps(worse))
    assert main(["--root", str(now), "--baseline", str(base)]) == 1
    assert "FAILED, 1 regression(s): metrics/eval.json:test.f1_macro" in capsys.readouterr().out
    _committed_copy(now)
    path = now / "metrics" / "details" / "quantize.json"
    details = json.loads(path.read_text())
    details["int8_static"]["f1_macro"] -= 0.05
    path.write_text(json.dumps(details))
    assert main(["--root", str(now), "--baseline", str(base)]) == 1
    assert "metrics/details/quantize.json:int8_static.f1_macro" in capsys.readouterr().out


def test_baseline_json_from_dvc_metrics_show(tmp_path, capsys):
    snapshot = {"": {"data": {"metrics/eval.json": {"data": EVAL}, "metrics/quantize.json": {"data": QUANT}}}}
    (tmp_path / "base.json").write_text(json.dumps(snapshot))  # `dvc metrics show --json > base.json`
    now = tmp_path / "now"
    _write_project(now, _with(EVAL, "test.f1_macro", 0.5), QUANT)
    assert main(["--root", str(now), "--baseline", str(tmp_path / "base.json")]) == 1
    assert "test.f1_macro" in capsys.readouterr().out
