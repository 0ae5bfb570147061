import subprocess
import sys

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
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"AUDIOCLF_DEBUG": "1", "PATH": ""}
    )
    # the traceback ends in the typed error (ParamError is the params kind of AudioclfError)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ParamError: params: `nope`" in proc.stderr


def test_help_lists_stages_and_tools(capsys):
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "audioclf stage {download,split,features" in out and "predict" in out
