"""split: train/val/test CSVs from the corpus's folds, a stratified or a grouped split."""

from __future__ import annotations

from pathlib import Path

from audioclf.fileio import atomic_paths, remove_stale_temps
from audioclf.sources import get_preset
from audioclf.split import class_balance, make_splits
from audioclf.stages.common import params, parser, read_metadata, say


def main(argv: list[str] | None = None) -> None:
    p = parser("split", __doc__)
    p.add_argument("--metadata", type=Path, default=Path("data/raw/metadata.csv"))
    p.add_argument("--out", type=Path, default=Path("data/splits"))
    args = p.parse_args(argv)
    cfg = params(args)
    meta = read_metadata(args.metadata)
    remove_stale_temps(args.out)
    preset = get_preset(cfg.data.dataset)  # what split.test_fold / val_fold `auto` mean
    parts = make_splits(meta, cfg.split, (preset.test_fold, preset.val_fold))
    # the three files are replaced together: a rerun with other params never pairs old and new splits
    with atomic_paths(*(args.out / f"{name}.csv" for name in parts)) as temps:
        for tmp, frame in zip(temps, parts.values(), strict=True):
            frame.to_csv(tmp, index=False)
    balance = class_balance(parts)
    say("split", f"{cfg.split.strategy}: " + ", ".join(f"{n}={len(f)}" for n, f in parts.items()))
    print(balance.to_string(), flush=True)
