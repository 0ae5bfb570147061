import subprocess
import sys
from pathlib import Path

from audioclf.cli import main


def test_user_error_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  epochs: -1\n")
    assert main(["stage", "split", "--params", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("audioclf: error: params: `train.epochs`") and "\n" not in err


def test_unknown_command_and_stage(capsys):
    assert main(["frobnicate"]) == 2
    assert main(["stage", "nope"]) == 2
    assert "download" in capsys.readouterr().err


def test_debug_env_shows_traceback(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("nope: {}\n")
    code = f"from audioclf.cli import main; main(['stage', 'split', '--params', {str(bad)!r}])"
    src = str(Path(__file__).resolve().parents[2] / "src")  # this checkout, not whatever is installed
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True,
        env={"AUDIOCLF_DEBUG": "1", "PATH": "", "PYTHONPATH": src},
    )  # fmt: skip
    # the traceback names the AudioclfError subclass raised (config.ParamError for params)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "Error: params: `nope`" in proc.stderr


def test_help_lists_stages_and_tools(capsys):
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "audioclf stage {download,split,features" in out and "predict" in out


def test_stage_help_lists_the_stages_and_each_stage_has_its_own(capsys):
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["stage", "--help"])
    assert info.value.code == 0
    assert "audioclf stage {download,split,features,train,evaluate,quantize,cv}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["stage", "split", "--help"])
    assert info.value.code == 0 and "--metadata" in capsys.readouterr().out


def test_an_interrupt_hides_only_the_traceback_of_a_half_built_progress_bar(monkeypatch):
    import gc

    from tqdm import tqdm

    from audioclf import cli

    seen: list = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    cli._ignore_half_built_bars()
    bar = tqdm.__new__(tqdm)  # half initialised, as when SIGINT lands inside tqdm's constructor:
    bar.disable = False  # its __del__ then fails on the missing `pos`
    del bar
    gc.collect()
    assert seen == []

    class Broken:
        def __del__(self) -> None:
            raise ValueError("not a progress bar")

    Broken()
    gc.collect()
    assert [type(u.exc_value) for u in seen] == [ValueError]
