"""One bad row among many (a path leaving the folder, a missing file, a local file named by a
remote CSV, an unparsable URL) follows `data.on_bad_row`: `skip` (the default) lists it with the
reason in data/raw/rejected.csv, keeps the row in metadata.csv under a placeholder path that is
never written, fetches the rest, and the features stage skips and counts it; `fail` stops with
one line. A refused path is never fetched, whatever the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from audioclf.errors import AudioclfError
from audioclf.stages import features
from tests.robustness.bad_inputs import good_clips, leftovers
from tests.sources.corpus_mirror import run_download, write_params
from tests.sources.mirror_server import MirrorServer

BAD_ROWS = {
    # name: (the path column's value, where it points on the mirror if anywhere, reason text)
    "dotdot": ("../secret.wav", "secret.wav", "may not leave the CSV's folder"),
    "missing": ("a/not_there.wav", None, "HTTP 404"),
    "file_url": ("file:///etc/passwd", None, "names a local file"),
    "bad_url": ("http://[::1/x.wav", None, "not a valid URL"),
    "bad_scheme": ("ftp://host/x.wav", None, "scheme 'ftp'"),
}


def corpus(mirror_root: Path, bad: str, n: int = 20) -> tuple[list[tuple[str, str]], str]:
    rows = good_clips(mirror_root / "clips", n)
    value, target, _ = BAD_ROWS[bad]
    if target:
        (mirror_root / target).write_bytes((mirror_root / "clips" / rows[0][0]).read_bytes())  # exists, outside
    table = [*rows[: n // 2], (value, "a"), *rows[n // 2 :]]
    pd.DataFrame({"path": [p for p, _ in table], "label": [lb for _, lb in table]}).to_csv(
        mirror_root / "clips" / "clips.csv", index=False
    )
    return rows, value


@pytest.mark.parametrize("bad", list(BAD_ROWS))
def test_one_bad_row_is_skipped_listed_and_counted(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, capsys, bad: str
) -> None:
    rows, _ = corpus(mirror_root, bad)
    data = {"dataset": "csv", "source": mirror.url + "clips/clips.csv", "sample_rate": 16_000, "duration_s": 0.25}
    raw = run_download(tmp_path, data)
    summary = capsys.readouterr().out
    assert f"{len(rows) + 1} rows selected from csv: {len(rows)} fetched, 0 already present" in summary
    assert "1 row(s) rejected" in summary
    rejected = pd.read_csv(raw / "rejected.csv")
    assert len(rejected) == 1 and BAD_ROWS[bad][2] in rejected["reason"][0]
    meta = pd.read_csv(raw / "metadata.csv")
    assert len(meta) == len(rows) + 1 and rejected["path"][0] in set(meta["path"])  # the row stays
    assert "_refused" not in meta.columns
    assert len(list(raw.rglob("*.wav"))) == len(rows)
    assert mirror.hits["secret.wav"] == 0  # a refused path is never fetched
    assert not list(raw.rglob("secret.wav")) and not list(raw.rglob("passwd"))

    out = tmp_path / "features"
    params = write_params(tmp_path / "params.yaml", data, features={"n_fft": 256, "win_length": 256,
                                                                     "hop_length": 128, "n_mels": 16})  # fmt: skip
    features.main(["--params", str(params), "--raw", str(raw), "--out", str(out)])
    skipped = json.loads((out / "meta.json").read_text())["skipped"]
    assert [s["path"] for s in skipped] == [rejected["path"][0]]
    assert "the download stage rejected it" in skipped[0]["reason"] and BAD_ROWS[bad][2] in skipped[0]["reason"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("bad", list(BAD_ROWS))
def test_on_bad_row_fail_stops_at_the_bad_row_with_one_line(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, bad: str
) -> None:
    corpus(mirror_root, bad)
    with pytest.raises(AudioclfError, match=r"on_bad_row is fail") as err:
        run_download(tmp_path, {"dataset": "csv", "source": mirror.url + "clips/clips.csv", "on_bad_row": "fail"})
    text = str(err.value)
    assert "\n" not in text and BAD_ROWS[bad][2] in text
    assert not (tmp_path / "raw" / "metadata.csv").exists()
    assert mirror.hits["secret.wav"] == 0


def test_skipped_rows_count_against_the_features_skip_budget(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path
) -> None:
    corpus(mirror_root, "missing", n=10)
    data = {"dataset": "csv", "source": mirror.url + "clips/clips.csv", "sample_rate": 16_000, "duration_s": 0.25}
    raw = run_download(tmp_path, data)
    params = write_params(tmp_path / "params.yaml", data, features={"n_fft": 256, "win_length": 256,
                                                                     "hop_length": 128, "n_mels": 16,
                                                                     "max_skipped_frac": 0.02})  # fmt: skip
    with pytest.raises(AudioclfError, match=r"1 of 21 files .* more than features\.max_skipped_frac"):
        features.main(["--params", str(params), "--raw", str(raw), "--out", str(tmp_path / "features")])


def test_a_missing_file_of_a_local_csv_is_a_bad_row_too(tmp_path: Path) -> None:
    rows = good_clips(tmp_path / "corpus", 3)
    table = [*rows, ("a/gone.wav", "a")]
    csv = tmp_path / "corpus" / "list.csv"
    pd.DataFrame({"path": [p for p, _ in table], "label": [lb for _, lb in table]}).to_csv(csv, index=False)
    raw = run_download(tmp_path, {"dataset": "csv", "source": str(csv)})
    rejected = pd.read_csv(raw / "rejected.csv")
    assert rejected["path"].tolist() == ["audio/a/gone.wav"] and "not found" in rejected["reason"][0]


def test_every_row_bad_is_a_data_source_problem(tmp_path: Path, mirror: MirrorServer, mirror_root: Path) -> None:
    (mirror_root / "clips").mkdir()
    pd.DataFrame({"path": [f"a/{i}.wav" for i in range(4)], "label": ["a", "a", "b", "b"]}).to_csv(
        mirror_root / "clips" / "clips.csv", index=False
    )
    with pytest.raises(
        AudioclfError, match=r"none of the 4 selected files is usable .*HTTP 404.*check that data\.source"
    ):
        run_download(tmp_path, {"dataset": "csv", "source": mirror.url + "clips/clips.csv"})
