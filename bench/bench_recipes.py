"""Recipes on real sound: ESC-50 folds 1-4 (the dev set), side by side with the seed-style
reference. Long (minutes per recipe): not part of `make bench`.

Protocol: train on folds 1-2, pick the epoch on fold 3 (recipes were chosen on fold 3 alone),
report fold 4 once. The data folder (ESC-50 layout: meta/esc50.csv + audio/) is served over
loopback HTTP to the project's own `esc50` source, so the download, split and features stages
run exactly as in `dvc exp run`. Each recipe runs `--seeds` times (mean reported); the seed-style
recipe (`../shared/tools/seed_baseline.py`: decode per item, 4 strided convs) trains on the same
folds 1-2, once for its own 40 epochs and once for as many epochs as fit in the recipe's
features + training wall time; ratios are printed. Wall times on a shared machine vary with its
load: CPU seconds and the load average are printed too.

    python bench/bench_recipes.py --recipe default                  # the default recipe vs seed-style
    python bench/bench_recipes.py --recipe previous --recipe default --recipe long --seeds 2
    python bench/bench_recipes.py --recipe default --recipe bf16   # fp32 vs bf16 (AVX512-BF16/AMX CPUs)
    python bench/bench_recipes.py --data /path/to/ESC-50 --recipe default --no-seed-style

`--corpus digits|words|languages` runs the same comparison on synthetic speech made by
bench/make_speech_corpus.py (espeak-ng voices; train on the voices of folds 1-3, pick the epoch
on fold 4's, test on fold 5's four held-out voices): figures on synthetic speech, not recordings.

    python bench/bench_recipes.py --corpus digits --recipe default --seeds 2
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import functools
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from audioclf.cache import load_cache, read_split
from audioclf.config import load_params
from audioclf.metrics import macro_f1
from audioclf.runtime import configure_threads
from audioclf.training import predict_logits, train_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "esc50-dev"
SEED_SCRIPT = ROOT.parent / "shared" / "tools" / "seed_baseline.py"
BASE = {"data.dataset": "esc50", "data.sample_rate": 16000, "split.test_fold": 4, "split.val_fold": 3}
SPEECH_SECONDS = {"digits": 1.0, "words": 1.0, "languages": 3.0}  # clip length per synthetic corpus


def speech_base(corpus: Path, seconds: float) -> dict[str, object]:
    """Params of a synthetic speech corpus: its CSV, folds = voices, fold 5 held out for test."""
    return {
        "data.dataset": "csv", "data.source": str(corpus / "metadata.csv"), "data.csv_fold_column": "fold",
        "data.csv_group_column": "voice", "data.sample_rate": 16000, "data.duration_s": seconds,
        "split.strategy": "folds", "split.test_fold": 5, "split.val_fold": 4,
    }  # fmt: skip


# Each recipe: params overrides on top of params.yaml (dotted keys, as `dvc exp run -S`).
RECIPES: dict[str, dict[str, object]] = {
    "previous": {  # the default before this recipe work (convnet at full resolution), the starting point
        "train.model": "convnet", "train.model_params.convnet.channels": [16, 32, 64, 128], "train.epochs": 15,
        "train.batch_size": 64, "train.lr": 0.003, "train.patience": 5, "train.augment.mixup_alpha": 0.0,
        "features.hop_length": 160, "features.n_mels": 64,
    },
    "default": {},  # params.yaml as committed: fastcnn, 60 epochs, mixup 0.3 (chosen on folds 1-3)
    "long": {"train.epochs": 150, "train.patience": 150},  # the default trained longer
    # The final fit: the default on folds 1-3 (fold 3 joins training, 50 % more clips per class) for a
    # fixed epoch count (more epochs helped on fold 3 with folds 1-2); fold 4 stays untouched.
    "final": {"train.epochs": 100, "train.keep": "last", "train.include_val": True},
}  # fmt: skip
# The same under bf16 autocast (train.precision): only on CPUs with native bf16 (AVX512-BF16/AMX).
RECIPES["bf16"] = {**RECIPES["default"], "train.precision": "bf16"}
RECIPES["final_bf16"] = {**RECIPES["final"], "train.precision": "bf16"}


def set_key(params: dict, dotted: str, value: object) -> None:
    *parents, leaf = dotted.split(".")
    node = params
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:  # one line per clip would drown the results
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A loopback HTTP server for `folder` on a free port, in a daemon thread."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def stage(name: str, workdir: Path) -> float:
    """Run one pipeline stage in `workdir`; its wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "audioclf.cli", "stage", name], cwd=workdir, check=True, capture_output=True)
    return time.perf_counter() - start


def prepare(workdir: Path, overrides: dict[str, object], base: dict[str, object]) -> float:
    """params.yaml with the overrides, then download + split (not timed) and features (timed)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in {**base, **overrides}.items():
        if not key.startswith("train."):
            set_key(params, key, value)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stage("download", workdir)
    stage("split", workdir)
    return stage("features", workdir)


def train_once(workdir: Path, overrides: dict[str, object], seed: int, threads: int = 0) -> dict[str, float]:
    configure_threads(threads)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for key, value in {**overrides, "train.seed": seed}.items():
        if key.startswith("train."):
            set_key(params, key, value)
    cfg_path = workdir / f"params-seed{seed}.yaml"
    cfg_path.write_text(yaml.safe_dump(params, sort_keys=False))
    cfg = load_params(cfg_path).train
    cache = load_cache(workdir / "data" / "features")
    labels = cache.labels()
    rows = {n: cache.rows_for(read_split(workdir / "data" / "splits", n), n) for n in ("train", "val", "test")}
    wall, cpu = time.perf_counter(), time.process_time()
    result = train_model(
        cache.x, labels, rows["train"], rows["val"], cache.classes, cfg, torch.device("cpu"), progress=False
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pred = predict_logits(result.model, cache.x, rows["test"], torch.device("cpu")).argmax(1)
    truth = labels[rows["test"]]
    return {
        "accuracy": float(np.mean(pred == truth)),
        "f1_macro": macro_f1(truth, pred, len(cache.classes)),
        "val_accuracy": result.best_val_accuracy,
        "best_epoch": result.best_epoch,
        "train_s": wall,
        "train_cpu_s": cpu,
    }


def seed_csv(args: argparse.Namespace, include_val: bool) -> tuple[Path, Path, int]:
    """(CSV, audio root, clip ms) for the seed-style script: the recipe's training folds and test
    fold (ESC-50: folds 1-2 → 4, or 1-3 → 4 for a recipe that fits on val too; synthetic speech:
    the corpus's seed.csv, folds 1-3 → 5)."""
    if args.corpus != "esc50":
        return args.data / "seed.csv", args.data, int(SPEECH_SECONDS[args.corpus] * 1000)
    meta = pd.read_csv(args.data / "meta" / "esc50.csv")
    meta = meta[meta["fold"].isin([1, 2, 3, 4] if include_val else [1, 2, 4])]
    split = np.where(meta["fold"] == 4, "test", "train")
    table = pd.DataFrame({"filename": meta["filename"], "label": meta["category"], "split": split})
    csv = args.workdir / f"seed{'-fit-on-val' if include_val else ''}.csv"
    table.to_csv(csv, index=False)
    return csv, args.data / "audio", 5000


def start_seed_style(args: argparse.Namespace, epochs: int, include_val: bool) -> tuple[subprocess.Popen, float, int]:
    """Launch the seed-style reference on the same training and test rows (its script fixes its
    own seed); `finish_seed_style` collects it, so it can train while the recipes do."""
    csv, audio, ms = seed_csv(args, include_val)
    cmd = [sys.executable, str(SEED_SCRIPT), str(csv), str(audio), "--sr", "16000", "--ms", str(ms)]
    proc = subprocess.Popen([*cmd, "--epochs", str(epochs)], stdout=subprocess.PIPE, text=True)
    return proc, time.perf_counter(), epochs


def finish_seed_style(started: tuple[subprocess.Popen, float, int]) -> dict[str, float]:
    proc, start, epochs = started
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time
    if status != 0:
        raise SystemExit(f"seed-style run failed (status {status})")
    result = json.loads(out.strip().splitlines()[-1])
    return {
        "accuracy": result["test_acc"],
        "epochs": epochs,
        "epoch_s": result["epoch_s_median"],
        "wall_s": time.perf_counter() - start,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def run_recipe(name: str, args: argparse.Namespace, base: dict[str, object]) -> dict[str, object]:
    overrides = RECIPES[name]
    workdir = args.workdir / name
    features_s = prepare(workdir, overrides, base)
    if args.jobs > 1:  # seeds side by side, one thread each: on a shared machine that gets more CPU
        with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
            runs = list(
                pool.map(train_once, *zip(*[(workdir, overrides, s, 1) for s in range(args.seeds)], strict=True))
            )
    else:
        runs = [train_once(workdir, overrides, seed) for seed in range(args.seeds)]
    mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
    row: dict[str, object] = {"recipe": name, "seeds": args.seeds, "features_s": features_s, **mean}
    row["accuracy_std"] = float(np.std([r["accuracy"] for r in runs]))
    row["total_s"] = features_s + mean["train_s"]
    row["total_cpu_s"] = features_s + mean["train_cpu_s"]  # features: wall (a separate process)
    print(
        f"[{name}] " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True
    )
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", choices=["esc50", *SPEECH_SECONDS], default="esc50")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="ESC-50: a folder with meta/esc50.csv + audio/ "
        "(default ../shared/data/esc50-dev); speech: the corpus folder (default: made in the workdir)",
    )
    p.add_argument("--recipe", action="append", choices=sorted(RECIPES), help="repeatable; default: default")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=1, help="train the seeds in this many processes at once")
    p.add_argument("--no-seed-style", action="store_true", help="skip the seed-style reference runs")
    p.add_argument("--budget", choices=["wall", "cpu"], default="wall", help="what 'same time' equalises")
    p.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    p.add_argument("--out", type=Path, default=None, help="write the table as JSON here too")
    args = p.parse_args()
    configure_threads(0)
    recipes = args.recipe or ["default"]
    with tempfile.TemporaryDirectory() as tmp:
        args.workdir = args.workdir or Path(tmp)
        args.workdir.mkdir(parents=True, exist_ok=True)
        server = None
        if args.corpus == "esc50":
            args.data = (args.data or DATA).resolve()
            server, source = serve(args.data)
            base = {**BASE, "data.source": source}
        else:
            if args.data is None:
                args.data = args.workdir / f"speech-{args.corpus}"
                subprocess.run(
                    [sys.executable, str(ROOT / "bench" / "make_speech_corpus.py"), args.corpus, str(args.data)],
                    check=True,
                )
            args.data = args.data.resolve()
            base = speech_base(args.data, SPEECH_SECONDS[args.corpus])
        fits = sorted({bool(RECIPES[name].get("train.include_val")) for name in recipes})
        seed_runs = {} if args.no_seed_style else {fit: start_seed_style(args, 40, fit) for fit in fits}
        try:
            rows = [run_recipe(name, args, base) for name in recipes]
        finally:
            if server:
                server.shutdown()
        table = {"corpus": args.corpus, "load_avg_1m": os.getloadavg()[0], "recipes": rows}
        if not args.no_seed_style:
            seed40s = {fit: finish_seed_style(run) for fit, run in seed_runs.items()}
            for fit, seed40 in seed40s.items():
                table["seed_style_40" + ("_include_val" if fit else "")] = seed40
                print(f"[seed-style, 40 epochs{', folds 1-3' if fit else ''}] " + json.dumps(seed40), flush=True)
            for row in rows:  # the same budget: CPU seconds when the machine is shared (--budget cpu)
                fit = bool(RECIPES[str(row["recipe"])].get("train.include_val"))
                seed40 = row["seed_style_40"] = seed40s[fit]
                spent, per_epoch = (
                    (float(row["total_cpu_s"]), seed40["cpu_s"] / 40)
                    if args.budget == "cpu"
                    else (float(row["total_s"]), seed40["epoch_s"])
                )
                epochs = max(1, round(spent / per_epoch))
                same = seed40 if epochs == 40 else finish_seed_style(start_seed_style(args, epochs, fit))
                if args.budget == "wall" and abs(same["wall_s"] - spent) > 0.15 * spent:
                    # its 40-epoch pace was measured next to the recipes' training: rerun at its own pace
                    epochs = max(1, round(spent / same["epoch_s"]))
                    same = finish_seed_style(start_seed_style(args, epochs, fit))
                row["seed_style_same_time"] = same
                row["ratio_vs_seed_40"] = float(row["accuracy"]) / max(seed40["accuracy"], 1e-9)
                row["ratio_vs_seed_same_time"] = float(row["accuracy"]) / max(same["accuracy"], 1e-9)
    print(f"\n{'recipe':10s} {'acc':>6s} {'f1':>6s} {'min':>6s} {'seed40':>7s} {'x':>5s} {'seed=t':>7s} {'x':>5s}")
    for row in rows:
        s40, same = row.get("seed_style_40", {}), row.get("seed_style_same_time", {})
        print(
            f"{row['recipe']:10s} {row['accuracy']:6.3f} {row['f1_macro']:6.3f} {row['total_s'] / 60:6.1f} "
            f"{s40.get('accuracy', float('nan')):7.3f} {row.get('ratio_vs_seed_40', float('nan')):5.2f} "
            f"{same.get('accuracy', float('nan')):7.3f} {row.get('ratio_vs_seed_same_time', float('nan')):5.2f}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(copy.deepcopy(table), indent=2))


if __name__ == "__main__":
    main()
