"""Rebuild viz/page.html: DVC's plots page with Vega, Vega-Lite and Vega-Embed inlined, so
`dvc plots show` / `dvc plots diff` draw with no network (DVC's own page loads them from a CDN).

    python tools/vendor_vega.py            # `npm pack`s the pinned versions from the npm registry
    python tools/vendor_vega.py --from D   # or uses the .tgz files already in folder D

The versions are the newest of the major versions DVC 3's templates are written for (Vega 5,
Vega-Lite 5, Vega-Embed 6). The page keeps DVC's placeholder `{plot_divs}`; `.dvc/config`
(`plots.html_template`) points DVC at it. All three libraries are BSD-3-Clause; the licence is
repeated in the page.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "viz" / "page.html"
PACKAGES = {"vega": "5.33.1", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}  # load order
DVC_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")  # what DVC substitutes in the page


def _member(tgz: Path, name: str) -> str:
    with tarfile.open(tgz) as tar:
        handle = tar.extractfile(f"package/{name}")
        if handle is None:
            raise SystemExit(f"{tgz}: has no package/{name}")
        return io.TextIOWrapper(handle, encoding="utf-8").read()


def build_page(tarballs: dict[str, Path]) -> str:
    scripts, licence = [], _member(tarballs["vega-lite"], "LICENSE").strip()
    for name, version in PACKAGES.items():
        js = _member(tarballs[name], f"build/{name}.min.js")
        for marker in ("</script", *DVC_PLACEHOLDERS):
            if marker in js:  # would end the inline script early or be replaced by DVC
                raise SystemExit(f"{name}@{version}: its build contains {marker!r}; cannot inline it")
        scripts.append(f"<script>/* {name}@{version} (npm), BSD-3-Clause */\n{js}\n</script>")
    versions = ", ".join(f"{n}@{v}" for n, v in PACKAGES.items())
    return (
        "<!DOCTYPE html>\n<!--\n"
        f"DVC plots page for offline use, built by tools/vendor_vega.py with {versions} inlined.\n"
        f"Their licence (BSD-3-Clause, the same for all three):\n\n{licence}\n-->\n"
        '<html>\n<head>\n<meta charset="utf-8">\n{refresh_tag}\n<title>audioclf plots</title>\n'
        + "\n".join(scripts)
        + "\n<style>body { font-family: sans-serif; } table { border-spacing: 15px; }</style>\n"
        "</head>\n<body>\n{plot_divs}\n</body>\n</html>\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", type=Path, help="folder holding the npm .tgz files")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.source or Path(tmp)
        if args.source is None:
            specs = [f"{n}@{v}" for n, v in PACKAGES.items()]
            subprocess.run(["npm", "pack", "--silent", *specs], cwd=folder, check=True, stdout=subprocess.DEVNULL)
        tarballs = {n: folder / f"{n}-{v}.tgz" for n, v in PACKAGES.items()}
        PAGE.parent.mkdir(exist_ok=True)
        PAGE.write_text(build_page(tarballs), encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)} ({PAGE.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
