"""The download stage under faults: clear errors, nothing partial kept, a rerun fetches only what
is missing (journal + manifest), and the selection / config rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from audioclf.config import STAGE_PARAMS, DataConfig, params_from_dict
from audioclf.download import JOURNAL, cap_order, select_rows
from audioclf.errors import AudioclfError
from tests.sources.corpus_mirror import audio_files, build_esc50, run_download
from tests.sources.mirror_server import MirrorServer

REPO = Path(__file__).resolve().parents[2]
BROKEN = "audio/3-100331-A-3.wav"  # a generated cow clip of fold 3


@pytest.fixture
def esc50(tmp_path: Path, mirror: MirrorServer, mirror_root: Path) -> dict:
    build_esc50(mirror_root)
    return {"dataset": "esc50", "source": mirror.url, "classes": ["dog", "rooster", "cow"], "retries": 1}


def test_failed_file_stops_the_run_and_the_rerun_fetches_only_the_rest(
    tmp_path: Path, mirror: MirrorServer, esc50: dict
) -> None:
    mirror.fail(BROKEN, "500", "500")  # retries: 1, so both attempts fail
    with pytest.raises(AudioclfError, match=r"3-100331-A-3\.wav: HTTP 500.*gave up after 2 attempt"):
        run_download(tmp_path, esc50)
    raw = tmp_path / "raw"
    assert BROKEN not in audio_files(raw)  # no partial file
    assert not [p for p in raw.rglob("*.part")]
    journal = (raw / JOURNAL).read_text().splitlines()
    assert len(journal) == len(audio_files(raw)) > 0  # every finished file is recorded at once
    assert not (raw / "manifest.csv").exists()

    before = dict(mirror.hits)
    run_download(tmp_path, esc50)
    again = [p for p in mirror.hits if mirror.hits[p] > before.get(p, 0) and p.startswith("audio/")]
    assert BROKEN in again and len(again) == 33 - len(journal)  # only what was missing
    assert len(pd.read_csv(raw / "manifest.csv")) == 33 and not (raw / JOURNAL).exists()


def test_a_damaged_file_on_disk_is_fetched_again(tmp_path: Path, mirror: MirrorServer, esc50: dict) -> None:
    raw = run_download(tmp_path, esc50)
    (raw / BROKEN).write_bytes(b"RIFF....")
    before = mirror.hits[BROKEN]
    run_download(tmp_path, esc50)
    assert mirror.hits[BROKEN] == before + 1 and (raw / BROKEN).stat().st_size > 100


@pytest.mark.parametrize("fault, message", [("html", "looks like HTML"), ("404", "HTTP 404"), ("slow", "timeout_s")])
def test_stage_errors_are_one_clear_line(
    tmp_path: Path, mirror: MirrorServer, esc50: dict, fault: str, message: str
) -> None:
    mirror.fail(BROKEN, fault, fault)
    with pytest.raises(AudioclfError, match=message) as err:  # a missing file stops only with on_bad_row: fail
        run_download(tmp_path, {**esc50, "timeout_s": 0.3, "on_bad_row": "fail"})
    assert "\n" not in str(err.value) and "3-100331-A-3.wav" in str(err.value)
    assert not (tmp_path / "raw" / BROKEN).exists()


def test_a_file_that_is_not_audio_is_rejected_listed_and_retried(tmp_path: Path, mirror: MirrorServer, esc50: dict):
    """An empty body for one file is that file's problem, not the mirror's (a web page is, above):
    the run goes on, the file is not kept, rejected.csv says why, and a rerun tries it again."""
    mirror.fail(BROKEN, "empty")
    raw = run_download(tmp_path, esc50)
    assert BROKEN not in audio_files(raw) and len(audio_files(raw)) == 32
    rejected = pd.read_csv(raw / "rejected.csv")
    assert rejected["path"].tolist() == [BROKEN] and "empty" in rejected["reason"][0]
    assert BROKEN in pd.read_csv(raw / "metadata.csv")["path"].tolist()  # the corpus row stays
    assert BROKEN not in pd.read_csv(raw / "manifest.csv")["path"].tolist()
    run_download(tmp_path, esc50)  # the glitch is gone: fetched, and the list removed
    assert BROKEN in audio_files(raw) and not (raw / "rejected.csv").exists()


def test_metadata_fetch_errors(tmp_path: Path, mirror: MirrorServer, esc50: dict) -> None:
    mirror.fail("meta/esc50.csv", "500")
    run_download(tmp_path, esc50)  # retried
    with pytest.raises(AudioclfError, match=r"meta/esc50\.csv: HTTP 404"):
        run_download(tmp_path, {**esc50, "source": mirror.url + "nothere/"})
    mirror.fail("meta/esc50.csv", "html")
    with pytest.raises(AudioclfError, match="HTML instead of the esc50 metadata"):
        run_download(tmp_path, esc50)


# -- selection ---------------------------------------------------------------------------------


def _meta(n_per: int = 20, folds: int = 5) -> pd.DataFrame:
    rows = [
        {"path": f"{c}/{i}.wav", "label": c, "fold": 1 + i % folds, "group": f"g{i // 2}"}
        for c in ("a", "b", "c")
        for i in range(n_per)
    ]
    return pd.DataFrame(rows)


def test_caps_are_spread_over_folds_nested_and_stable() -> None:
    meta = _meta()
    small = select_rows(meta, DataConfig(max_per_class=5))
    big = select_rows(meta, DataConfig(max_per_class=10))
    assert small["label"].value_counts().to_dict() == {"a": 5, "b": 5, "c": 5}
    assert set(small.groupby("label")["fold"].nunique()) == {5}
    assert set(small["path"]) <= set(big["path"])  # a larger cap keeps the smaller's rows
    assert small["path"].tolist() == select_rows(meta, DataConfig(max_per_class=5))["path"].tolist()
    assert small["path"].tolist() == sorted(small["path"], key=meta["path"].tolist().index)  # metadata order
    total = select_rows(meta, DataConfig(max_total=7))
    assert len(total) == 7 and total["label"].value_counts().max() == 3
    assert list(cap_order(meta).columns) == list(meta.columns)


def test_selection_errors_list_valid_values() -> None:
    with pytest.raises(AudioclfError, match=r"\['z'\].*valid names: a, b, c"):
        select_rows(_meta(), DataConfig(classes=["a", "z"]))
    with pytest.raises(AudioclfError, match=r"\[7\].*valid folds: \[1, 2, 3, 4, 5\]"):
        select_rows(_meta(), DataConfig(folds=[7]))


def test_new_data_keys_are_validated_and_declared() -> None:
    assert DataConfig(classes=[0, 1]).classes == ["0", "1"]  # YAML ints: FSDD digits
    for bad, match in [
        ({"timeout_s": 0}, "timeout_s"),
        ({"retries": -1}, "retries"),
        ({"group_regex": "("}, "group_regex"),
        ({"csv_label_column": " "}, "csv_label_column"),
        ({"retries": "3"}, "retries"),
    ]:
        with pytest.raises(AudioclfError, match=match):
            params_from_dict({"data": bad})
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["download"]["params"] == STAGE_PARAMS["download"]
    data_keys = set(yaml.safe_load((REPO / "params.yaml").read_text())["data"])
    assert {k.removeprefix("data.") for k in STAGE_PARAMS["download"]} <= data_keys
