"""Bad metadata: a CSV corpus over the loopback HTTP mirror (and data/raw/metadata.csv edited by
hand) with a missing column, duplicate files, unknown labels, an empty selection, `../`, absolute
paths, unicode and spaces, a BOM. Each either works or stops with one line naming the file or
param and the fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tests.robustness.bad_inputs import cli, good_clips, leftovers, one_line_error, write_params, write_raw
from tests.sources.mirror_server import MirrorServer


def _csv(path: Path, rows: list[dict], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False, encoding=encoding)
    return path


def _download(tmp_path: Path, capsys, **data: object) -> tuple[int, str]:
    params = write_params(tmp_path / "params.yaml", data={"dataset": "csv", "retries": 0, **data})
    argv = ["stage", "download", "--params", str(params), "--out", str(tmp_path / "raw"), "--cache-dir", str(tmp_path)]
    return cli(argv, capsys)


@pytest.fixture
def served(mirror: MirrorServer, mirror_root: Path) -> tuple[str, list[dict]]:
    """clips/ on the mirror: 4 clips each of a (fold 1) and b (fold 2). Returns (base URL, rows)."""
    rows = [
        {"path": p, "label": label, "fold": 1 if label == "a" else 2}
        for p, label in good_clips(mirror_root / "clips", 4)
    ]
    return mirror.url + "clips/", rows


@pytest.mark.parametrize(
    "case, change, expected",
    [
        ("missing column", lambda r: [{k: v for k, v in x.items() if k != "label"} for x in r],
         r"params: `data\.csv_label_column` 'label' is not a column of .*clips\.csv; its columns: path, fold"),
        ("duplicate files", lambda r: [*r, r[0]], r"clips\.csv: 1 row\(s\) name a file another row names too, "
         r"e\.g\. 'audio/a/a_0\.wav'.*remove the duplicate rows"),
        ("dot-dot path", lambda r: [*r, {"path": "../secret.wav", "label": "a", "fold": 1}],
         r"'\.\./secret\.wav': a relative path may not leave the CSV's folder"),
        ("local file in a remote CSV", lambda r: [*r, {"path": "file:///etc/hostname", "label": "a", "fold": 1}],
         r"clips\.csv: row 'file:///etc/hostname' names a local file, which a CSV fetched over HTTP may not"),
        ("empty label", lambda r: [*r, {"path": "a/a_0.wav", "label": "", "fold": 1}],
         r"clips\.csv: line 10 has an empty label; every row needs a path and a label"),
        ("header only", lambda r: [], r"clips\.csv: has no rows; add one row per clip"),
    ],
)  # fmt: skip
def test_csv_problems_stop_with_one_line(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, served, capsys, case: str, change, expected: str
) -> None:
    base, rows = served
    rows = change(rows)
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=["path", "label", "fold"])
    frame.to_csv(mirror_root / "clips" / "clips.csv", index=False)
    # on_bad_row: fail, so a bad row stops too (skip, the default, is in test_bad_rows.py)
    code, err = _download(tmp_path, capsys, source=base + "clips.csv", csv_fold_column="fold", on_bad_row="fail")
    assert code == 2, case
    assert re.search(expected, one_line_error(err)), one_line_error(err)
    assert not [p for p in mirror.hits if p.endswith(".wav")], "nothing is fetched before the metadata is checked"
    assert leftovers(tmp_path) == []


def test_selection_problems_name_the_param_and_the_valid_values(tmp_path: Path, mirror_root: Path, served, capsys):
    base, rows = served
    _csv(mirror_root / "clips" / "clips.csv", rows)
    source = {"source": base + "clips.csv", "csv_fold_column": "fold"}
    code, err = _download(tmp_path, capsys, **source, classes=["a", "zebra"])
    assert code == 2 and "`data.classes` has ['zebra'], not in the csv corpus; valid names: a, b" in one_line_error(err)
    code, err = _download(tmp_path, capsys, **source, folds=[7])
    assert code == 2 and "`data.folds` has [7], not in the csv corpus; valid folds: [1, 2]" in one_line_error(err)
    _csv(mirror_root / "clips" / "clips.csv", [*rows, {"path": "a/a_0.wav", "label": "c", "fold": 2}])
    code, err = _download(tmp_path, capsys, **source, classes=["b", "c"], folds=[1])
    assert code == 2 and "matches no rows; widen it" in one_line_error(err)
    # a label outside data.classes is simply not selected
    code, _ = _download(tmp_path, capsys, **source, classes=["a", "b"])
    assert code == 0 and sorted(pd.read_csv(tmp_path / "raw" / "metadata.csv")["label"].unique()) == ["a", "b"]


def test_unicode_spaces_bom_and_absolute_paths_work(
    tmp_path: Path, mirror: MirrorServer, mirror_root: Path, capsys
) -> None:
    root = mirror_root / "clips"
    good = good_clips(root / "é t", 3, labels=("ça va", "日本"))
    local = good_clips(tmp_path / "local", 1, labels=("ça va",))[0][0]
    rows = [{"path": p, "label": label} for p, label in good]
    rows += [
        {"path": "/clips/é t/日本/日本_0.wav", "label": "日本"},  # absolute in a remote CSV: the same server
        {"path": f"{mirror.url}clips/é t/ça va/ça va_1.wav", "label": "ça va"},  # a URL
    ]
    rows = [{**r, "path": r["path"] if r["path"].startswith(("/", "http")) else f"é t/{r['path']}"} for r in rows]
    _csv(root / "clips.csv", rows, encoding="utf-8-sig")  # with a BOM, as Excel saves
    code, err = _download(tmp_path, capsys, source=mirror.url + "clips/clips.csv")
    assert code == 0, err
    meta = pd.read_csv(tmp_path / "raw" / "metadata.csv")
    assert "audio/é t/ça va/ça va_0.wav" in set(meta["path"]) and len(meta) == 8
    assert all((tmp_path / "raw" / p).is_file() for p in meta["path"])
    assert mirror.hits["clips/é t/日本/日本_0.wav"] == 2  # the absolute row came from the mirror too

    # a local CSV may name an absolute local path: it lands under audio/<hash>-<name>
    _csv(tmp_path / "local.csv", [*rows[:6], {"path": str(tmp_path / "local" / local), "label": "ça va"}])
    for r in rows[:6]:
        target = tmp_path / r["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((root / r["path"]).read_bytes())
    code, err = _download(tmp_path, capsys, source=str(tmp_path / "local.csv"))
    assert code == 0, err
    meta = pd.read_csv(tmp_path / "raw" / "metadata.csv")
    assert any(p.startswith("audio/") and p.endswith("-ça va_0.wav") and "/" not in p[6:] for p in meta["path"])

    # and the features stage reads them all
    params = write_params(tmp_path / "params.yaml")
    code, err = cli(["stage", "features", "--params", str(params), "--raw", str(tmp_path / "raw"),
                     "--out", str(tmp_path / "features")], capsys)  # fmt: skip
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "features" / "index.csv")) == 7


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda m: m.drop(columns=["label"]), r"missing column\(s\) \['label'\].*rerun the download stage"),
        (lambda m: pd.concat([m, m.iloc[:1]]), r"the file 'a/a_0\.wav' is listed twice; rerun the download stage"),
        (lambda m: m.assign(label=["", *m["label"][1:]]), r"line 2 has an empty label; rerun the download"),
        (lambda m: m.iloc[:0], r"has no rows; widen the data selection"),
        (None, r"not a readable CSV"),
    ],
)
@pytest.mark.parametrize("stage", ["split", "features"])
def test_a_damaged_metadata_csv_stops_split_and_features_with_one_line(tmp_path: Path, capsys, stage, edit, expected):
    raw = tmp_path / "raw"
    write_raw(raw, good_clips(raw, 5))
    meta = pd.read_csv(raw / "metadata.csv")
    if edit is None:
        (raw / "metadata.csv").write_bytes(b"\xff\xfe\x00binary\x00\x00garbage")
    else:
        edit(meta).to_csv(raw / "metadata.csv", index=False)
    params = str(write_params(tmp_path / "params.yaml"))
    args = ["--metadata", str(raw / "metadata.csv")] if stage == "split" else ["--raw", str(raw)]
    code, err = cli(["stage", stage, "--params", params, *args, "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert re.search(expected, one_line_error(err)), err


def test_class_names_pandas_would_read_as_missing_stay_labels(tmp_path: Path, capsys) -> None:
    """ "NA", "null", "None": a language or answer code, not a missing value."""
    raw = tmp_path / "raw"
    rows = good_clips(raw, 6, labels=("NA", "null", "None"))
    write_raw(raw, rows)
    params = str(write_params(tmp_path / "params.yaml"))
    for stage, args in (("split", ["--metadata", str(raw / "metadata.csv")]), ("features", ["--raw", str(raw)])):
        code, err = cli(["stage", stage, "--params", params, *args, "--out", str(tmp_path / stage)], capsys)
        assert code == 0, err
    assert json.loads((tmp_path / "features" / "meta.json").read_text())["classes"] == ["NA", "None", "null"]
