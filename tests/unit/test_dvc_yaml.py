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


def _audioclf_imports(path, seen):
    """Files of the audioclf modules `path` imports, transitively (static imports only)."""
    import ast

    src = REPO / "src"
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("audioclf"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("audioclf")]
        for name in names:
            rel = name.replace(".", "/")
            for candidate in (src / f"{rel}.py", src / rel / "__init__.py"):
                if candidate.is_file() and candidate not in seen:
                    seen.add(candidate)
                    _audioclf_imports(candidate, seen)
    return seen


def test_each_stage_depends_on_every_library_module_it_imports():
    """Editing a module a stage imports must rerun the stage: DVC only knows what deps list."""
    for name, stage in _stages().items():
        entry = REPO / "src" / "audioclf" / "stages" / f"{name}.py"
        deps = [REPO / d for d in stage["deps"] if d.startswith("src/")]
        for module in _audioclf_imports(entry, set()):
            rel = module.relative_to(REPO)
            if module.name == "__init__.py" and module.stat().st_size < 400:
                continue  # package markers with no logic
            covered = any(module == d or d in module.parents for d in deps)
            assert covered, f"dvc.yaml stage {name} imports {rel} but does not list it in deps"
