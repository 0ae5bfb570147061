"""What every stage shares: argument parsing with the default DVC paths, and the params."""

from __future__ import annotations

import argparse
from pathlib import Path

from audioclf.config import Params, load_params


def parser(stage: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"audioclf stage {stage}", description=description)
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    return p


def params(args: argparse.Namespace) -> Params:
    return load_params(args.params)


def say(stage: str, message: str) -> None:
    """One summary line per stage, on stdout (DVC shows it)."""
    print(f"[{stage}] {message}", flush=True)
