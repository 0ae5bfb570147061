"""The model card: a Markdown page shipped next to models/model.onnx that says what the model is,
what it was trained and tested on (and under which licence), how well it does per class, what the
quantized variants cost, who it is for and where it fails. The quantize stage writes it from what
it measured; this module only formats (no torch, no I/O besides git)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# data.dataset → (what it is, its licence). The corpora's own terms; docs/corpora.md has the details.
DATASETS: dict[str, tuple[str, str]] = {
    "synthetic": ("the project's built-in synthetic sound events (generated, no third-party audio)", "none needed"),
    "esc50": ("ESC-50 (Piczak 2015), environmental sounds from Freesound", "CC BY-NC 3.0: non-commercial"),
    "urbansound8k": ("UrbanSound8K (Salamon et al. 2014), urban sounds from Freesound", "CC BY-NC 3.0: non-commercial"),
    "speechcommands": ("Speech Commands (Warden 2018), one-second spoken words", "CC BY 4.0"),
    "fsdd": ("Free Spoken Digit Dataset, spoken digits 0-9", "CC BY-SA 4.0"),
    "folder": ("your recordings (one sub-folder per class)", "yours: state it here before sharing the model"),
    "csv": ("your clips listed in a CSV", "yours: state it here before sharing the model"),
}
# outputs the pipeline itself rewrites during a run: not a sign that the code or params were edited
PIPELINE_OUTPUTS = ("dvc.lock", "cv/dvc.lock", "metrics", "models", "data")


@dataclass(frozen=True)
class CardInputs:
    dataset: str
    classes: Sequence[str]
    split_sizes: Mapping[str, int]  # train / val / test → clips
    split_folds: Mapping[str, Sequence[int]]  # train / val / test → folds present (empty: no folds)
    sample_rate: int
    duration_s: float
    architecture: str
    train: Mapping[str, Any]  # the train params block the model was trained with (models/model.json)
    features: Mapping[str, Any]  # its feature params
    best_epoch: int | str
    best_val_f1: float | str
    quantize: Mapping[str, Any]  # the quantize params block
    per_class: Mapping[str, Mapping[str, float]]  # deployed variant on the test split
    variants: Mapping[str, Mapping[str, Any]]  # metrics/details/quantize.json rows
    deployed: str
    commit: str  # git_provenance()
    confusion_png: str  # relative to the card


def git_provenance(root: Path) -> str:
    """`<sha>` of the commit the run started from, `<sha> (dirty: ...)` when tracked code or params
    differed from it (the pipeline's own outputs excepted), or why it is unknown."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)

    try:
        head = git("rev-parse", "HEAD")
    except OSError:
        return "unknown (git is not installed)"
    if head.returncode != 0:
        return "unknown (not run from a git commit)"
    excludes = [f":(exclude){p}" for p in PIPELINE_OUTPUTS]
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *excludes).stdout.split("\n")
    files = sorted(line[3:] for line in changed if line.strip())
    sha = head.stdout.strip()
    if not files:
        return sha
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return f"{sha} (dirty: {shown} differed from that commit)"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _split_line(name: str, inputs: CardInputs) -> str:
    folds = inputs.split_folds.get(name) or []
    where = f"fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))}" if folds else "no folds"
    return f"- {name}: {inputs.split_sizes.get(name, 0)} clips ({where})"


def _limits(inputs: CardInputs) -> list[str]:
    worst = sorted(inputs.per_class.items(), key=lambda kv: kv[1]["f1"])[:2]
    hardest = ", ".join(f"`{c}` (F1 {s['f1']:.3f})" for c, s in worst)
    n_test = inputs.split_sizes.get("test", 0)
    return [
        f"- A closed set: every input is scored as one of the {len(inputs.classes)} classes above, "
        "including sounds of none of them. Threshold the probability if that matters.",
        f"- Clips are resampled to {inputs.sample_rate} Hz and padded or cut to {inputs.duration_s:g} s; longer "
        "recordings need windows (`audioclf predict --hop`).",
        f"- The hardest classes on the test split: {hardest}.",
        f"- Measured on {n_test} test clips of the same corpus: one clip moves accuracy by "
        f"{1 / max(n_test, 1):.4f}; other microphones, rooms and noise will score lower.",
    ]


def render(inputs: CardInputs) -> str:
    """The card as Markdown."""
    what, licence = DATASETS.get(inputs.dataset, (inputs.dataset, "unknown: state it before sharing"))
    train = inputs.train
    test = inputs.variants[inputs.deployed]
    per_class_rows = [
        (c, _fmt(s["precision"]), _fmt(s["recall"]), _fmt(s["f1"]), s["support"]) for c, s in inputs.per_class.items()
    ]
    variant_cols = ("size_mb", "f1_macro", "f1_drop", "argmax_agreement", "latency_ms_b1", "speedup_vs_torch_b1")
    variant_rows = [
        (f"**{v}** (deployed)" if v == inputs.deployed else v, *(_fmt(row.get(k, "-")) for k in variant_cols))
        for v, row in inputs.variants.items()
    ]
    params = {
        **{f"train.{k}": v for k, v in train.items()},
        **{f"features.{k}": v for k, v in inputs.features.items()},
        **{f"quantize.{k}": v for k, v in inputs.quantize.items()},
    }
    lines = [
        f"# Model card: {inputs.architecture} audio classifier ({inputs.deployed} ONNX)",
        "",
        f"`model.onnx` takes a mono waveform at {inputs.sample_rate} Hz, {inputs.duration_s:g} s "
        f"(`float32 [batch, {round(inputs.sample_rate * inputs.duration_s)}]`) and returns one logit per class; "
        "the log-mel features are computed inside the graph. `model.onnx.json` lists the classes in output order. "
        "Run it with `audioclf predict --model model.onnx FILES` (onnxruntime only, no torch).",
        "",
        "## Data",
        f"- Dataset: {what} (`data.dataset: {inputs.dataset}`).",
        f"- Licence of the data: {licence}."
        + (" A model trained on it may carry the same terms." if inputs.dataset != "synthetic" else ""),
        f"- Classes ({len(inputs.classes)}): {', '.join(f'`{c}`' for c in inputs.classes)}.",
        *(_split_line(name, inputs) for name in ("train", "val", "test")),
        "",
        "## Provenance",
        f"- Git commit the run started from: {inputs.commit}.",
        f"- Best epoch {inputs.best_epoch} of {train.get('epochs', '?')} "
        f"(validation macro-F1 {_fmt(inputs.best_val_f1)}).",
        "",
        "## Test results of the deployed model",
        f"Accuracy {test['accuracy']:.4f}, macro-F1 {test['f1_macro']:.4f} on {inputs.split_sizes.get('test', 0)} "
        "test clips.",
        "",
        *_table(("class", "precision", "recall", "F1", "support"), per_class_rows),
        "",
        f"![Confusion matrix of the deployed model on the test split]({inputs.confusion_png})",
        "",
        "## Quantization",
        "Each variant scored on the same test clips; latency in ms per clip at batch 1 on the machine that ran "
        "the pipeline (compare within one row set only).",
        "",
        *_table(("variant", *variant_cols), variant_rows),
        "",
        "## Intended use",
        f"Tagging short recordings with one of the classes above, for research, teaching and prototypes on "
        f"{'data like the training corpus' if inputs.dataset != 'synthetic' else 'the synthetic benchmark'}. "
        "Not for decisions about people, safety-critical alarms or surveillance.",
        "",
        "## Limits",
        *_limits(inputs),
        "",
        "## Params",
        "",
        *_table(("param", "value"), [(f"`{k}`", f"`{v}`") for k, v in params.items()]),
        "",
    ]
    return "\n".join(lines)


def write(card: Path, inputs: CardInputs, confusion: Any) -> None:
    """The card at `card` and its confusion image (`inputs.confusion_png`, next to it)."""
    from audioclf.fileio import atomic_path
    from audioclf.report import plot_confusion

    f1 = inputs.variants[inputs.deployed]["f1_macro"]
    title = f"{inputs.deployed} ONNX on the test split: macro-F1 {f1:.3f} (n={inputs.split_sizes.get('test', 0)})"
    plot_confusion(confusion, list(inputs.classes), card.parent / inputs.confusion_png, title)
    with atomic_path(card) as tmp:
        tmp.write_text(render(inputs))
