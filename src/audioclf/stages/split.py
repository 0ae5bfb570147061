"""split: train/val/test CSVs from the corpus's folds, a stratified or a grouped split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from audioclf.errors import AudioclfError
from audioclf.fileio import write_csv
from audioclf.split import class_balance, make_splits
from audioclf.stages.common import params, parser, say


def main(argv: list[str] | None = None) -> None:
    p = parser("split", __doc__)
    p.add_argument("--metadata", type=Path, default=Path("data/raw/metadata.csv"))
    p.add_argument("--out", type=Path, default=Path("data/splits"))
    args = p.parse_args(argv)
    cfg = params(args)
    if not args.metadata.is_file():
        raise AudioclfError(f"{args.metadata}: not found; run the download stage first (dvc repro download)")
    meta = pd.read_csv(args.metadata, dtype={"path": str, "label": str, "group": str})
    parts = make_splits(meta, cfg.split)
    for name, frame in parts.items():
        write_csv(args.out / f"{name}.csv", frame)
    balance = class_balance(parts)
    say("split", f"{cfg.split.strategy}: " + ", ".join(f"{n}={len(f)}" for n, f in parts.items()))
    print(balance.to_string(), flush=True)
