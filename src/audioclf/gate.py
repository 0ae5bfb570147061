"""`audioclf check-metrics`: the regression gate.

Compares the workspace metrics files with a baseline (by default the versions committed at HEAD)
under per-metric rules from a committed tolerances file, prints one table row per rule and exits 1
when any metric regressed. `dvc metrics diff` cannot do this: it always exits 0 (DVC #10408).

Only quantities that reproduce are gated (quality metrics, sizes). Latency depends on the machine
and its load, so it is printed as advisory, or gated as a ratio measured within one run
(`speedup_vs_torch_b1`: both sides timed on the same machine minutes apart).

Tolerances file (YAML), one mapping per metrics file, keys are dotted paths into its JSON:

    metrics/eval.json:
      test.f1_macro: {max_drop: 0.01}          # may fall by at most 0.01 (absolute)
    metrics/quantize.json:
      "@deployed.size_mb": {max_increase_rel: 0.05}   # @key: the variant named by `deployed`
      fp32.latency_ms_b1: {advisory: true}     # printed, never fails

Rules: max_drop, max_drop_rel, max_increase, max_increase_rel (against the baseline), min, max
(bounds on the new value alone), advisory. Several constraints in one rule must all hold.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from audioclf.errors import AudioclfError, brief

DEFAULT_TOLERANCES = Path("metrics/tolerances.yaml")
EPS = 1e-12  # float noise: a change of exactly the allowed size passes

Metrics = dict[str, Any]  # metrics file path → its parsed JSON


@dataclass(frozen=True)
class Rule:
    max_drop: float | None = None
    max_drop_rel: float | None = None
    max_increase: float | None = None
    max_increase_rel: float | None = None
    min: float | None = None
    max: float | None = None
    advisory: bool = False

    def describe(self) -> str:
        if self.advisory:
            return "advisory"
        formats = (
            ("max_drop", "drop<={:g}"), ("max_drop_rel", "drop<={:.0%}"), ("max_increase", "rise<={:g}"),
            ("max_increase_rel", "rise<={:.0%}"), ("min", ">={:g}"), ("max", "<={:g}"),
        )  # fmt: skip
        return ", ".join(fmt.format(getattr(self, name)) for name, fmt in formats if getattr(self, name) is not None)


@dataclass(frozen=True)
class Check:
    file: str
    key: str  # as written in the tolerances file
    rule: Rule


@dataclass(frozen=True)
class Row:
    metric: str
    baseline: float | None
    now: float | None
    limit: str
    verdict: str  # ok | REGRESSION | MISSING | advisory | new

    @property
    def failed(self) -> bool:
        return self.verdict in ("REGRESSION", "MISSING")


def parse_rule(raw: Any, where: str) -> Rule:
    names = [f.name for f in fields(Rule)]
    if not isinstance(raw, dict) or not raw:
        raise AudioclfError(f"{where}: must be a mapping like {{max_drop: 0.01}} with keys from {', '.join(names)}")
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise AudioclfError(f"{where}: unknown rule key(s) {unknown}; use {', '.join(names)}")
    for key, value in raw.items():
        if key == "advisory":
            if not isinstance(value, bool):
                raise AudioclfError(f"{where}: advisory must be true or false, got {value!r}")
        elif not _is_number(value) or (key.startswith("max_") and value < 0):
            raise AudioclfError(f"{where}: {key} must be a number{' >= 0' if key.startswith('max_') else ''}")
    rule = Rule(**raw)
    if not rule.describe():
        raise AudioclfError(f"{where}: sets no limit; add e.g. max_drop: 0.01, or advisory: true")
    return rule


def parse_tolerances(raw: Any, source: str) -> list[Check]:
    if not isinstance(raw, dict) or not raw:
        raise AudioclfError(f"{source}: must map metrics files to {{metric.key: rule}}; see audioclf/gate.py")
    checks = []
    for file, rules in raw.items():
        if not isinstance(rules, dict):
            raise AudioclfError(f"{source}: `{file}` must map dotted metric keys to rules")
        checks += [
            Check(str(file), str(key), parse_rule(rule, f"{source}: {file}:{key}")) for key, rule in rules.items()
        ]
    return checks


def load_tolerances(path: Path) -> list[Check]:
    if not path.is_file():
        raise AudioclfError(f"{path}: tolerances file not found; create it or pass --tolerances PATH")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise AudioclfError(f"{path}: not valid YAML ({brief(exc)})") from exc
    return parse_tolerances(raw, str(path))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def lookup(doc: Any, key: str) -> tuple[str, Any]:
    """Follow a dotted key; a segment `@name` is replaced by the string stored at `name` in the same
    file (`@deployed.size_mb` → `fp32.size_mb`). Returns (resolved key, value or None if absent)."""
    resolved = []
    node = doc
    for part in key.split("."):
        if part.startswith("@"):
            part = doc.get(part[1:]) if isinstance(doc, dict) else None
            if not isinstance(part, str):
                return key, None
        resolved.append(part)
        if not isinstance(node, dict) or part not in node:
            return ".".join(resolved), None
        node = node[part]
    return ".".join(resolved), node


def judge(base: float | None, now: float | None, rule: Rule) -> str:
    if now is None:
        return "MISSING"
    if rule.advisory:
        return "advisory"
    bad = (rule.min is not None and now < rule.min - EPS) or (rule.max is not None and now > rule.max + EPS)
    relative = any(v is not None for v in (rule.max_drop, rule.max_drop_rel, rule.max_increase, rule.max_increase_rel))
    if base is None:
        return "REGRESSION" if bad else ("new" if relative else "ok")
    scale = abs(base)
    limits = [
        (rule.max_drop, lambda t: now < base - t - EPS),
        (rule.max_drop_rel, lambda t: now < base - t * scale - EPS),
        (rule.max_increase, lambda t: now > base + t + EPS),
        (rule.max_increase_rel, lambda t: now > base + t * scale + EPS),
    ]
    bad = bad or any(limit is not None and breached(limit) for limit, breached in limits)
    return "REGRESSION" if bad else "ok"


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or math.isnan(value):
        raise AudioclfError(f"{where}: is {value!r}, not a number; gate only numeric metrics")
    return value  # ints stay ints so counts print as counts


def compare(checks: list[Check], baseline: Metrics, now: Metrics) -> list[Row]:
    rows = []
    for check in checks:
        base_key, base_value = lookup(baseline.get(check.file, {}), check.key)
        now_key, now_value = lookup(now.get(check.file, {}), check.key)
        name = f"{check.file}:{check.key}"
        if now_key != check.key:
            name += f" ({now_key})" if base_key == now_key else f" ({now_key}; baseline {base_key})"
        b, n = _number(base_value, f"baseline {name}"), _number(now_value, name)
        rows.append(Row(name, b, n, check.rule.describe(), judge(b, n, check.rule)))
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"


def _delta(base: float | None, now: float | None) -> str:
    if base is None or now is None:
        return "-"
    rel = f" ({(now - base) / abs(base):+.1%})" if base else ""
    diff = now - base
    return f"{diff:+d}{rel}" if isinstance(diff, int) else f"{diff:+.4f}{rel}"


def format_table(rows: list[Row], markdown: bool = False) -> str:
    header = ("metric", "baseline", "now", "delta", "limit", "verdict")
    body = [(r.metric, _fmt(r.baseline), _fmt(r.now), _delta(r.baseline, r.now), r.limit, r.verdict) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(cells) + " |" for cells in body])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *body]
    )


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AudioclfError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def read_workspace(files: list[str], root: Path) -> Metrics:
    out = {}
    for file in files:
        path = root / file
        if not path.is_file():
            raise AudioclfError(f"{path}: not found; run `dvc repro` first to produce the current metrics")
        out[file] = _parse_json(path.read_text(), str(path))
    return out


def read_git(files: list[str], ref: str, root: Path) -> Metrics:
    """The files as committed at `ref`; `./` makes paths relative to `root`, not the git top level."""
    out = {}
    for file in files:
        proc = subprocess.run(["git", "show", f"{ref}:./{file}"], cwd=root, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
            raise AudioclfError(
                f"{file}: no baseline at git ref {ref!r} ({why}); commit the metrics or pass --baseline PATH"
            )
        out[file] = _parse_json(proc.stdout, f"{ref}:{file}")
    return out


def read_baseline_path(files: list[str], path: Path) -> Metrics:
    """A directory holding the same relative paths (another checkout), or one JSON file mapping each
    metrics path to its content (also accepts `dvc metrics show --json` output)."""
    if path.is_dir():
        return read_workspace(files, path)
    if not path.is_file():
        raise AudioclfError(f"--baseline {path}: not found; pass a metrics JSON file or a project directory")
    doc = _parse_json(path.read_text(), str(path))
    if isinstance(doc, dict) and len(doc) == 1:  # dvc metrics show --json: {rev: {"data": {file: {"data": ...}}}}
        (inner,) = doc.values()
        if isinstance(inner, dict) and isinstance(inner.get("data"), dict):
            doc = {f: v.get("data", {}) for f, v in inner["data"].items()}
    missing = [f for f in files if f not in doc] if isinstance(doc, dict) else files
    if missing:
        raise AudioclfError(f"--baseline {path}: has no entry for {missing[0]}; map each metrics path to its JSON")
    return {f: doc[f] for f in files}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="audioclf check-metrics", description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group()
    source.add_argument("--baseline-ref", default="HEAD", help="git ref holding the baseline metrics (default: HEAD)")
    source.add_argument("--baseline", type=Path, help="baseline JSON file, or a directory with the same metrics paths")
    p.add_argument("--tolerances", type=Path, default=DEFAULT_TOLERANCES, help="rules file (default: %(default)s)")
    p.add_argument("--root", type=Path, default=Path("."), help="project root holding the metrics (default: .)")
    p.add_argument("--md", action="store_true", help="print the table as Markdown (for a CI job summary)")
    args = p.parse_args(argv)

    checks = load_tolerances(args.tolerances if args.tolerances.is_absolute() else args.root / args.tolerances)
    files = list(dict.fromkeys(c.file for c in checks))
    now = read_workspace(files, args.root)
    if args.baseline is not None:
        baseline, label = read_baseline_path(files, args.baseline), str(args.baseline)
    else:
        baseline, label = read_git(files, args.baseline_ref, args.root), f"git {args.baseline_ref}"
    rows = compare(checks, baseline, now)
    print(f"check-metrics: workspace vs {label}, rules from {args.tolerances}")
    print(format_table(rows, markdown=args.md))
    failed = [r.metric for r in rows if r.failed]
    if failed:
        print(
            f"check-metrics: FAILED, {len(failed)} regression(s): {', '.join(failed)}. If the change is intended, "
            "commit the new dvc.lock and metrics with it (or loosen the rule in the tolerances file)."
        )
        return 1
    advisory = sum(r.verdict == "advisory" for r in rows)
    print(f"check-metrics: passed, {len(rows) - advisory} gated metric(s) within tolerance, {advisory} advisory")
    return 0
