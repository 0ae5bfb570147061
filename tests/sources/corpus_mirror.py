"""Fixture trees in each corpus's exact layout (tiny generated clips), archives with the real
member layout, and the params file the in-process stage tests point at."""

from __future__ import annotations

import csv
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parents[2]
ESC50_REAL = REPO / "tests" / "fixtures" / "esc50"  # three real clips, kept in the repo
CLIP_S = 0.2


def tone(path: Path, sample_rate: int, seed: int, seconds: float = CLIP_S, channels: int = 1, **kw) -> Path:
    """A short noisy tone (deterministic from `seed`); `kw` goes to soundfile (subtype, format)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.05 * rng.standard_normal(t.size)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sample_rate, **kw)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_tar(tree: Path, archive: Path, prefix: str = "") -> Path:
    """Pack every file under `tree` as `<prefix><relative path>` (sorted, like the real archives)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(tree.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=prefix + path.relative_to(tree).as_posix())
    return archive


# -- ESC-50: meta/esc50.csv + audio/<filename> ---------------------------------------------------

ESC50_HEADER = ["filename", "fold", "target", "category", "esc10", "src_file", "take"]
ESC50_REAL_CLIPS = ("2-103426-A-3", "2-103427-A-3", "4-181955-A-3")  # cow, folds 2 and 4


def build_esc50(root: Path) -> dict:
    """3 classes × 5 folds × 2 generated clips at 44.1 kHz, 3 real cow clips re-encoded to WAV,
    and metadata rows for a class (rain) whose audio the mirror lacks: it must never be asked for."""
    rows = []
    targets = {"dog": 0, "rooster": 1, "cow": 3}
    for label, target in targets.items():
        for fold in range(1, 6):
            for k in range(2):
                src = 100000 + 100 * target + 10 * fold + k
                name = f"{fold}-{src}-A-{target}.wav"
                tone(root / "audio" / name, 44_100, seed=src)
                rows.append([name, fold, target, label, "True", src, "A"])
    with open(ESC50_REAL / "meta/esc50.csv") as fh:
        real = {r["filename"].removesuffix(".wav"): r for r in csv.DictReader(fh)}
    for stem in ESC50_REAL_CLIPS:
        data, rate = sf.read(ESC50_REAL / "audio" / f"{stem}.flac")
        sf.write(root / "audio" / f"{stem}.wav", data, rate, subtype="PCM_16")
        r = real[stem]
        rows.append([r[c] for c in ESC50_HEADER])
    for fold in range(1, 6):
        rows.append([f"{fold}-999{fold}-A-10.wav", fold, 10, "rain", "True", f"999{fold}", "A"])
    write_csv(root / "meta/esc50.csv", ESC50_HEADER, rows)
    return {"classes": ["dog", "rooster", "cow"], "n": 33}


# -- FSDD: recordings/{digit}_{speaker}_{index}.wav ------------------------------------------------

FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def build_fsdd(root: Path, digits: tuple[str, ...] = ("0", "1", "2"), takes: int = 15) -> int:
    n = 0
    for d in digits:
        for s_i, speaker in enumerate(FSDD_SPEAKERS):
            for take in range(takes):
                tone(root / "recordings" / f"{d}_{speaker}_{take}.wav", 8_000, seed=1000 * int(d) + 50 * s_i + take)
                n += 1
    return n


# -- UrbanSound8K: UrbanSound8K/{metadata/UrbanSound8K.csv, audio/fold<k>/<file>} -----------------

US8K_HEADER = ["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]
US8K_ODD = (  # the formats UrbanSound8K really has: (sample rate, channels, subtype)
    (44_100, 1, "PCM_16"),
    (48_000, 2, "PCM_24"),
    (96_000, 2, "PCM_16"),
    (22_050, 1, "FLOAT"),
    (11_025, 1, "PCM_U8"),
    (16_000, 1, "PCM_16"),
)


def build_us8k(tree: Path, folds: int = 5) -> int:
    """`tree` is the folder *holding* UrbanSound8K/ (as the archive extracts)."""
    root = tree / "UrbanSound8K"
    classes = {"dog_bark": 3, "siren": 8, "street_music": 9}
    rows = []
    i = 0
    for label, class_id in classes.items():
        for fold in range(1, folds + 1):
            for k in range(2):
                fs_id = 10_000 + 100 * class_id + 10 * fold  # two slices of one recording share fsID
                name = f"{fs_id}-{class_id}-0-{k}.wav"
                rate, channels, subtype = US8K_ODD[i % len(US8K_ODD)]
                tone(root / "audio" / f"fold{fold}" / name, rate, seed=i, channels=channels, subtype=subtype)
                rows.append([name, fs_id, 0.0, CLIP_S, 1, fold, class_id, label])
                i += 1
    write_csv(root / "metadata/UrbanSound8K.csv", US8K_HEADER, rows)
    (root / "UrbanSound8K_README.txt").write_text("UrbanSound8K fixture\n")
    return len(rows)


# -- Speech Commands: ./<word>/<hash>_nohash_<n>.wav + lists at the root ---------------------------


def build_speechcommands(tree: Path, words: tuple[str, ...] = ("yes", "no", "up"), speakers: int = 6) -> dict:
    hashes = [f"{0xA0B0C0 + 17 * s:08x}" for s in range(speakers)]
    files = []
    for w_i, word in enumerate(words):
        for s_i, h in enumerate(hashes):
            for n in range(2):
                rel = f"{word}/{h}_nohash_{n}.wav"
                tone(tree / rel, 16_000, seed=100 * w_i + 10 * s_i + n)
                files.append(rel)
    tone(tree / "_background_noise_" / "white_noise.wav", 16_000, seed=999, seconds=1.0)
    # speakers 0-3 train, 4 validation, 5 test (by speaker, as the official lists are)
    val = [f for f in files if hashes[4] in f] + ["left/deadbeef_nohash_0.wav"]  # absent: ignored
    test = [f for f in files if hashes[5] in f] + ["right/cafebabe_nohash_1.wav"]
    (tree / "validation_list.txt").write_text("\n".join(val) + "\n")
    (tree / "testing_list.txt").write_text("\n".join(test) + "\n")
    (tree / "README.md").write_text("Speech Commands fixture\n")
    (tree / "LICENSE").write_text("CC BY 4.0\n")
    return {"n": len(files), "val": len(val) - 1, "test": len(test) - 1}


# -- params ----------------------------------------------------------------------------------


def write_params(path: Path, data: dict, split: dict | None = None, features: dict | None = None) -> Path:
    """A params.yaml with the given blocks (defaults elsewhere); one worker keeps tests light."""
    params = {
        "data": data,
        "split": split or {},
        "features": {"n_mels": 32, **(features or {})},
        "runtime": {"workers": 1},
    }
    path.write_text(yaml.safe_dump(params))
    return path


# -- running the stages in-process -------------------------------------------------------------


def run_download(tmp_path: Path, data: dict, split: dict | None = None) -> Path:
    from audioclf.stages import download

    params = write_params(tmp_path / "params.yaml", data, split)
    download.main(["--params", str(params), "--out", str(tmp_path / "raw"), "--cache-dir", str(tmp_path / "cache")])
    return tmp_path / "raw"


def run_stages(tmp_path: Path, data: dict, split: dict | None = None) -> dict:
    """download → split → features on `tmp_path`; returns what each wrote."""
    import json

    import pandas as pd

    from audioclf.stages import features
    from audioclf.stages import split as split_stage

    raw = run_download(tmp_path, data, split)
    params = str(tmp_path / "params.yaml")
    split_stage.main(["--params", params, "--metadata", str(raw / "metadata.csv"), "--out", str(tmp_path / "splits")])
    features.main(["--params", params, "--raw", str(raw), "--out", str(tmp_path / "features")])
    read = {"dtype": {"path": str, "label": str, "group": str}}
    return {
        "raw": raw,
        "meta": pd.read_csv(raw / "metadata.csv", **read),
        "manifest": pd.read_csv(raw / "manifest.csv"),
        "splits": {n: pd.read_csv(tmp_path / "splits" / f"{n}.csv", **read) for n in ("train", "val", "test")},
        "features": json.loads((tmp_path / "features" / "meta.json").read_text()),
        "array": np.load(tmp_path / "features" / "features.npy", mmap_mode="r"),
    }


def audio_files(raw: Path) -> list[str]:
    return sorted(p.relative_to(raw).as_posix() for p in (raw / "audio").rglob("*") if p.is_file())


def check_outputs(out: dict, n: int, sample_rate: int, duration_s: float) -> None:
    """What every corpus run must satisfy: n rows, files = manifest = metadata, disjoint splits
    covering every row, one feature row per clip, nothing skipped, the preset's format."""
    meta, raw = out["meta"], out["raw"]
    assert len(meta) == n
    assert audio_files(raw) == sorted(meta["path"]) == sorted(out["manifest"]["path"])
    paths = [set(s["path"]) for s in out["splits"].values()]
    assert sum(len(p) for p in paths) == n and set().union(*paths) == set(meta["path"])
    assert out["array"].shape[0] == n
    assert out["features"]["skipped"] == []
    assert (out["features"]["sample_rate"], out["features"]["duration_s"]) == (sample_rate, duration_s)
    assert not [p for p in raw.rglob("*") if p.name.endswith(".part") or p.name.startswith(".download")]
