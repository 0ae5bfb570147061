"""dvc.yaml must declare exactly the params each stage reads, or edits would not rerun it."""

import yaml

from audioclf.config import STAGE_PARAMS
from tests.helpers import REPO


def _stages():
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_each_stage_declares_exactly_the_params_it_reads():
    stages = _stages()
    assert set(stages) == set(STAGE_PARAMS)
    for name, keys in STAGE_PARAMS.items():
        assert sorted(stages[name].get("params", [])) == sorted(keys), name


def test_each_stage_depends_on_its_own_entry_point_and_existing_paths():
    for name, stage in _stages().items():
        assert stage["cmd"] == f"audioclf stage {name}"
        assert f"src/audioclf/stages/{name}.py" in stage["deps"]
        for dep in stage["deps"]:
            if dep.startswith("src/"):
                assert (REPO / dep).exists(), f"{name}: dep {dep} does not exist"


def test_metrics_are_git_tracked_and_checkpoints_persist():
    stages = _stages()
    for name in ("train", "evaluate", "quantize"):
        for entry in stages[name].get("metrics", []):
            ((path, opts),) = entry.items()
            assert opts.get("cache") is False, path
    outs = {next(iter(o)) if isinstance(o, dict) else o: o for o in stages["train"]["outs"]}
    assert outs["models/checkpoints"]["models/checkpoints"]["persist"] is True
    raw = stages["download"]["outs"][0]
    assert raw["data/raw"]["persist"] is True
