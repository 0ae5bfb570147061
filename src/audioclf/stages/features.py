"""features: decode, resample, downmix, pad/trim, then log-mel (or MFCC / STFT) for every row
into one contiguous array, with an index and meta.json. Not normalised.

Undecodable files (and those the download stage rejected) follow `features.on_bad_audio`: `skip`
lists each with its reason in meta.json and fails only past `features.max_skipped_frac`; `fail`
stops at the first. The three outputs are written to temp files and renamed together at the end,
so an interrupted or failed run leaves the previous outputs as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from audioclf.config import DataConfig, FeaturesConfig, to_dict
from audioclf.errors import AudioclfError
from audioclf.features import FeatureExtractor, build_cache
from audioclf.fileio import METADATA_COLUMNS, REJECTED_CSV, atomic_paths, remove_stale_temps, sha256_file
from audioclf.sources import get_preset
from audioclf.stages.common import params, parser, read_metadata, say

# how read_audio ends its messages; meta.json keeps the reason alone
_ADVICE = "; remove or replace the file"


def resolve_audio_format(data: DataConfig) -> tuple[int, float]:
    """`auto` sample rate / duration → the corpus preset."""
    preset = None
    if data.sample_rate == "auto" or data.duration_s == "auto":
        preset = get_preset(data.dataset)
    sample_rate = preset.sample_rate if data.sample_rate == "auto" else data.sample_rate
    duration = preset.duration_s if data.duration_s == "auto" else data.duration_s
    return int(sample_rate), float(duration)


def feature_meta(cfg: FeaturesConfig, sample_rate: int, duration_s: float) -> dict:
    return {
        "features": to_dict(cfg),
        "sample_rate": sample_rate,
        "duration_s": duration_s,
        "n_samples": round(sample_rate * duration_s),
    }


def check_format(cfg: FeaturesConfig, sample_rate: int, n_samples: int) -> None:
    """Feature params that are valid alone but not at this sample rate / clip length."""
    nyquist = sample_rate / 2
    if cfg.f_max is not None and cfg.f_max > nyquist:
        raise AudioclfError(
            f"params: `features.f_max` {cfg.f_max:g} Hz is above the Nyquist frequency {nyquist:g} Hz of the "
            f"{sample_rate} Hz audio; lower it to <= {nyquist:g} or set null"
        )
    if cfg.f_min >= nyquist:
        raise AudioclfError(
            f"params: `features.f_min` {cfg.f_min:g} Hz is not below the Nyquist frequency {nyquist:g} Hz "
            f"of the {sample_rate} Hz audio; lower it"
        )
    if n_samples <= cfg.n_fft // 2:
        raise AudioclfError(
            f"params: `data.duration_s` gives {n_samples} samples at {sample_rate} Hz, not more than half of "
            f"features.n_fft ({cfg.n_fft}); lower features.n_fft (and win_length) or lengthen data.duration_s"
        )


def read_rejected(raw: Path) -> dict[str, str]:
    """path → reason for the files the download stage did not keep (data/raw/rejected.csv)."""
    path = raw / REJECTED_CSV
    if not path.is_file():
        return {}
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return dict(zip(frame["path"], frame["reason"], strict=True))
    except (ValueError, KeyError, pd.errors.ParserError):
        return {}  # only the reasons are lost: the files are absent and reported as such


def _reason(message: str, path: Path) -> str:
    return message.removeprefix(f"{path}: ").removesuffix(_ADVICE)


def check_skipped(skipped: list[dict], n_rows: int, cfg: FeaturesConfig, raw: Path) -> None:
    """Apply features.on_bad_audio / max_skipped_frac to the files that could not be used."""
    if not skipped:
        return
    first = skipped[0]
    example = f"{raw / first['path']}: {first['reason']}"
    if cfg.on_bad_audio == "fail":
        raise AudioclfError(
            f"{example} (features.on_bad_audio is fail; {len(skipped)} such file(s)); replace or remove the "
            "file and rerun the download stage, or set features.on_bad_audio: skip"
        )
    fraction = len(skipped) / n_rows
    if fraction > cfg.max_skipped_frac:
        raise AudioclfError(
            f"features: {len(skipped)} of {n_rows} files ({fraction:.1%}) cannot be used, more than "
            f"features.max_skipped_frac ({cfg.max_skipped_frac:.1%}); e.g. {example}; fix the data "
            "(dvc repro -f download) or raise features.max_skipped_frac"
        )


def absent_files(meta: pd.DataFrame, raw: Path) -> tuple[dict[int, str], list[int]]:
    """(row → reason for the files not in `raw`, the rows to decode). A file the download stage
    rejected is absent: it is skipped with the download's reason."""
    rejected = read_rejected(raw)
    reasons: dict[int, str] = {}
    todo: list[int] = []
    for i, rel in enumerate(meta["path"]):
        if not (raw / rel).exists():
            detail = f"the download stage rejected it: {rejected[rel]}" if rel in rejected else "file not found"
            reasons[i] = f"{detail}; not in {raw}"
        else:
            todo.append(i)
    return reasons, todo


def main(argv: list[str] | None = None) -> None:
    p = parser("features", __doc__)
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--out", type=Path, default=Path("data/features"))
    args = p.parse_args(argv)
    cfg = params(args)
    meta = read_metadata(args.raw / "metadata.csv")
    sample_rate, duration_s = resolve_audio_format(cfg.data)
    info = feature_meta(cfg.features, sample_rate, duration_s)
    check_format(cfg.features, sample_rate, info["n_samples"])
    remove_stale_temps(args.out)  # what a killed run left; its outputs were never renamed into place

    reasons, todo = absent_files(meta, args.raw)
    if reasons and cfg.features.on_bad_audio == "fail":  # stop before decoding anything
        first = min(reasons)
        check_skipped([{"path": meta["path"][first], "reason": reasons[first]}], len(meta), cfg.features, args.raw)

    extractor = FeatureExtractor(cfg.features, sample_rate)
    out = args.out
    with atomic_paths(out / "features.npy", out / "index.csv", out / "meta.json") as (npy_tmp, index_tmp, meta_tmp):
        paths = [args.raw / meta["path"][i] for i in todo]
        result = build_cache(
            paths,
            npy_tmp,
            extractor,
            sample_rate,
            info["n_samples"],
            dtype=cfg.features.dtype,
            workers=cfg.runtime.workers,
        )
        row_of = {str(path): i for path, i in zip(paths, todo, strict=True)}
        for entry in result.skipped:
            reasons[row_of[entry["path"]]] = _reason(entry["reason"], Path(entry["path"]))
        skipped = [{"path": meta["path"][i], "reason": reasons[i]} for i in sorted(reasons)]
        check_skipped(skipped, len(meta), cfg.features, args.raw)
        kept = [todo[j] for j in result.kept]
        if not kept:
            raise AudioclfError(f"{args.raw}: no file could be decoded; check the data (dvc repro -f download)")
        index = meta.iloc[kept].reset_index(drop=True)
        index.insert(0, "row", range(len(index)))
        index[["row", *METADATA_COLUMNS]].to_csv(index_tmp, index=False)
        classes = sorted(index["label"].unique())
        document = {
            **info,
            "classes": classes,
            "shape": list(result.shape),
            "features_sha256": sha256_file(npy_tmp),  # lets readers tell a damaged cache from a good one
            "skipped": skipped,
        }
        meta_tmp.write_text(json.dumps(document, indent=2) + "\n")
    say(
        "features",
        f"{cfg.features.kind} {tuple(result.shape)} {cfg.features.dtype} for {len(classes)} classes at "
        f"{sample_rate} Hz × {duration_s} s; {len(skipped)} of {len(meta)} file(s) skipped as unusable"
        + (f" (listed with reasons in {out / 'meta.json'})" if skipped else ""),
    )
