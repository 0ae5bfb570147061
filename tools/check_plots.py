"""Render `dvc plots show`'s page in headless Chromium with no network and check what it drew.

    dvc plots show && python tools/check_plots.py            # or: make plots-check
    python tools/check_plots.py --page dvc_plots/index.html --metrics metrics --chromium chromium

Checks, per Vega plot on the page: it rendered (no embed error) and drew marks; the confusion
matrices are N x N cells per revision (N = the classes in metrics/plots/confusion.csv); the
training curves' x axis is titled `epoch` and starts at 1; the console logged no error; no image is
broken. Saves a screenshot next to the page (dvc_plots/screenshot.png). Exit 1 on a failed check.

How: a copy of the page gets a small script (first in <body>) that records console errors and
wraps `vegaEmbed`, then walks each finished view's scenegraph and writes a JSON summary into the
DOM, which `chromium --dump-dom` prints. Chromium runs with a dead proxy, so any network fetch
fails instead of quietly succeeding.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = r"""
<script>
(function () {
  var errors = [], plots = {}, pending = 0, loaded = false, done = false;
  var oldError = console.error;
  console.error = function () { errors.push(Array.from(arguments).join(' ')); oldError.apply(console, arguments); };
  window.addEventListener('error', function (e) { errors.push('uncaught: ' + (e.message || e.target.src)); }, true);
  function walk(node, out) {
    if (node.marktype) {
      var titles = node.role === 'axis-title' ? node.items.map(function (i) { return i.text; }) : [];
      out.push({marktype: node.marktype, role: node.role, n: node.items.length, titles: titles});
    }
    (node.items || []).forEach(function (item) { (item.items || []).forEach(function (c) { walk(c, out); }); });
    return out;
  }
  function report() {
    if (!loaded || pending > 0 || done) { return; }
    done = true;
    var pre = document.createElement('pre');
    pre.id = 'plot-check';
    pre.textContent = JSON.stringify({plots: plots, errors: errors, images: Array.from(document.images).map(
      function (im) { return {src: im.getAttribute('src'), ok: im.complete && im.naturalWidth > 0}; })});
    document.body.appendChild(pre);
  }
  var embed = window.vegaEmbed;
  if (!embed) { errors.push('vegaEmbed is not defined: the page did not load Vega-Embed'); }
  window.vegaEmbed = function (el, spec, opts) {
    pending += 1;
    return embed(el, spec, opts).then(function (res) {
      plots[el] = {marks: walk(res.view.scenegraph().root, [])};
      return res;
    }, function (err) { plots[el] = {error: String(err)}; }).finally(function () {
      pending -= 1;
      setTimeout(report, 0);
    });
  };
  window.addEventListener('load', function () { loaded = true; setTimeout(report, 0); });
})();
</script>
"""
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # CI and containers run as root
    "--disable-gpu",
    "--allow-file-access-from-files",
    "--proxy-server=127.0.0.1:9",  # nothing listens there: a CDN fetch would fail, not pass
    "--proxy-bypass-list=<-loopback>",
    "--virtual-time-budget=20000",
]
CURVES = ("#loss", "#f1")  # dvc.yaml plot ids drawn with viz/templates/curves.json
CONFUSIONS = ("#confusion", "#confusion_normalized")


def find_chromium(name: str | None) -> str:
    for candidate in [name] if name else ["chromium", "chromium-browser", "google-chrome"]:
        path = shutil.which(candidate)
        if path:
            return path
    raise SystemExit("check_plots: no chromium found; `apt-get install chromium` or pass --chromium PATH")


def class_count(metrics: Path) -> int:
    with open(metrics / "plots" / "confusion.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return len({r["actual"] for r in rows} | {r["predicted"] for r in rows})


def probe(chromium: str, page: Path) -> dict:
    html = page.read_text(encoding="utf-8")
    first_plot = html.find("<div id")
    body = html.rfind("<body>", 0, first_plot if first_plot >= 0 else len(html))  # the inlined JS holds "<body>" too
    if body < 0:
        raise SystemExit(f"{page}: no <body> tag; is it the page `dvc plots show` wrote?")
    cut = body + len("<body>")
    with tempfile.NamedTemporaryFile("w", suffix=".html", dir=page.parent, delete=False, encoding="utf-8") as fh:
        fh.write(html[:cut] + PROBE + html[cut:])
        probed = Path(fh.name)
    try:
        cmd = [chromium, *CHROMIUM_FLAGS, "--dump-dom", probed.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    finally:
        probed.unlink(missing_ok=True)
    found = re.search(r'<pre id="plot-check">(.*?)</pre>', proc.stdout, re.S)
    if not found:
        why = proc.stderr[-800:]
        raise SystemExit(f"check_plots: the page never reported (chromium exit {proc.returncode}): {why}")
    text = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return json.loads(text)


def check(result: dict, n_classes: int) -> list[str]:
    problems = [f"console error: {e}" for e in result["errors"]]
    problems += [f"image did not load: {im['src']}" for im in result["images"] if not im["ok"]]
    if not result["plots"]:
        problems.append("no Vega plot on the page")
    for plot, info in result["plots"].items():
        if "error" in info:
            problems.append(f"{plot}: did not render ({info['error']})")
            continue
        data_marks = [m for m in info["marks"] if m["role"] == "mark" and m["n"] > 0]
        if not data_marks:
            problems.append(f"{plot}: drew no marks")
        titles = [t for m in info["marks"] for t in m["titles"]]
        if plot in CONFUSIONS:
            cells = [m["n"] for m in info["marks"] if m["role"] == "mark" and m["marktype"] == "rect"]
            if not cells or any(n != n_classes * n_classes for n in cells):
                problems.append(f"{plot}: confusion cells {cells}, expected {n_classes}x{n_classes} per revision")
        if plot in CURVES:
            if "epoch" not in titles:
                problems.append(f"{plot}: x axis titled {titles}, not epoch")
            legend = [m for m in info["marks"] if m["role"] == "legend-label"]
            if not legend or sum(m["n"] for m in legend) < 2:
                problems.append(f"{plot}: no legend naming its series")
    return problems


def screenshot(chromium: str, page: Path, out: Path) -> None:
    cmd = [chromium, *CHROMIUM_FLAGS, f"--screenshot={out.resolve()}", "--window-size=1280,1800"]
    subprocess.run([*cmd, page.resolve().as_uri()], capture_output=True, text=True, timeout=180, check=False)
    if not out.is_file() or out.stat().st_size == 0:
        raise SystemExit(f"check_plots: chromium wrote no screenshot at {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--page", type=Path, default=Path("dvc_plots/index.html"))
    p.add_argument("--metrics", type=Path, default=Path("metrics"), help="holds plots/confusion.csv")
    p.add_argument("--chromium", help="browser binary (default: chromium on PATH)")
    p.add_argument("--screenshot", type=Path, help="default: screenshot.png next to the page")
    args = p.parse_args(argv)
    if not args.page.is_file():
        raise SystemExit(f"{args.page}: not found; run `dvc plots show` first")
    chromium = find_chromium(args.chromium)
    n_classes = class_count(args.metrics)
    result = probe(chromium, args.page)
    shot = args.screenshot or args.page.parent / "screenshot.png"
    screenshot(chromium, args.page, shot)
    problems = check(result, n_classes)
    for plot, info in sorted(result["plots"].items()):
        marks = sum(m["n"] for m in info.get("marks", []) if m["role"] == "mark")
        print(f"{plot}: {marks} marks" + (f", error {info['error']}" if "error" in info else ""))
    print(f"{len(result['images'])} image(s), {len(result['errors'])} console error(s); screenshot {shot}")
    if problems:
        print("check_plots: FAILED\n  " + "\n  ".join(problems))
        return 1
    print(f"check_plots: passed ({len(result['plots'])} plots, confusion {n_classes}x{n_classes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
