"""features: decode, resample, downmix, pad/trim, then log-mel (or MFCC / STFT) for every row
into one contiguous array, with an index and meta.json. Not normalised."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audioclf.config import DataConfig, FeaturesConfig, to_dict
from audioclf.errors import AudioclfError
from audioclf.features import FeatureExtractor, build_cache
from audioclf.fileio import write_csv, write_json
from audioclf.sources import get_preset
from audioclf.stages.common import params, parser, say

MAX_SKIPPED_FRACTION = 0.05


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


def main(argv: list[str] | None = None) -> None:
    p = parser("features", __doc__)
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--out", type=Path, default=Path("data/features"))
    args = p.parse_args(argv)
    cfg = params(args)
    metadata_path = args.raw / "metadata.csv"
    if not metadata_path.is_file():
        raise AudioclfError(f"{metadata_path}: not found; run the download stage first (dvc repro download)")
    meta = pd.read_csv(metadata_path, dtype={"path": str, "label": str, "group": str})
    sample_rate, duration_s = resolve_audio_format(cfg.data)
    info = feature_meta(cfg.features, sample_rate, duration_s)
    extractor = FeatureExtractor(cfg.features, sample_rate)
    result = build_cache(
        [args.raw / p for p in meta["path"]],
        args.out / "features.npy",
        extractor,
        sample_rate,
        info["n_samples"],
        dtype=cfg.features.dtype,
        workers=cfg.runtime.workers,
    )
    skipped_fraction = len(result.skipped) / max(1, len(meta))
    if skipped_fraction > MAX_SKIPPED_FRACTION:
        first = result.skipped[0]
        raise AudioclfError(
            f"features: {len(result.skipped)} of {len(meta)} files could not be decoded "
            f"(more than {MAX_SKIPPED_FRACTION:.0%}), e.g. {first['reason']}; fix or re-download the data"
        )
    index = meta.iloc[result.kept].reset_index(drop=True)
    index.insert(0, "row", range(len(index)))
    write_csv(args.out / "index.csv", index[["row", "path", "label", "fold", "group"]])
    classes = sorted(index["label"].unique())
    write_json(
        args.out / "meta.json",
        {**info, "classes": classes, "shape": list(result.shape), "skipped": result.skipped},
    )
    say(
        "features",
        f"{cfg.features.kind} {tuple(result.shape)} {cfg.features.dtype} for {len(classes)} classes at "
        f"{sample_rate} Hz × {duration_s} s; {len(result.skipped)} undecodable file(s) skipped",
    )
