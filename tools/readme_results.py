"""The README's results block, generated from a committed, small results file of the quoted run.

    python tools/readme_results.py --from-run runs/offline --date 2026-12-02 \
        --machine "2-core CPU (avx512_bf16)"        # writes docs/results/offline_seed0.json, then the README
    python tools/readme_results.py                  # rewrites README.md's block from docs/results/offline_seed0.json
    python tools/readme_results.py --check          # exit 1 when README.md and that file disagree (CI, tests)
    python tools/readme_results.py --figure docs/results/headline.png   # also draw the headline figure from it

The block sits between the markers `emotion_fusion.writeup.BEGIN` and `END` in README.md; everything else in
the README is left alone.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emotion_fusion.writeup import BEGIN, END, readme_block, slim_results  # noqa: E402

RESULTS = "docs/results/offline_seed0.json"


def _pattern(source: str) -> re.Pattern:
    return re.compile(re.escape(BEGIN.format(source)) + r".*?" + re.escape(END), re.S)


def render(readme: str, slim: dict, source: str = RESULTS) -> str:
    """README text with its block replaced by the one `slim` gives; an error if the README has no block."""
    pat = _pattern(source)
    if not pat.search(readme):
        raise SystemExit(f"README.md has no block starting {BEGIN.format(source)!r} and ending {END!r}")
    return pat.sub(lambda _: readme_block(slim, source), readme, count=1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", default=RESULTS, help=f"the slim results file (default {RESULTS})")
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when they disagree")
    ap.add_argument("--from-run", metavar="RUN_DIR", help="first write the results file from this run dir")
    ap.add_argument("--date", help="the run's date (with --from-run)")
    ap.add_argument("--figure", metavar="PNG", help="also draw the headline figure (ef.plot_headline) from the file")
    ap.add_argument("--machine", help="the machine in words, e.g. '2-core CPU (avx512_bf16)' (with --from-run)")
    a = ap.parse_args(argv)
    path = Path(a.results) if Path(a.results).is_absolute() else ROOT / a.results
    if a.from_run:
        if not (a.date and a.machine):
            ap.error("--from-run needs --date and --machine (the README names the run it quotes)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(slim_results(a.from_run, a.date, a.machine), indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {path}")
    readme = Path(a.readme)
    old, slim = readme.read_text(), json.loads(path.read_text())
    if a.figure:
        import matplotlib
        matplotlib.use("Agg")
        from emotion_fusion.scoring.headline import plot_headline
        plot_headline(slim).savefig(a.figure)
        print(f"wrote {a.figure}")
    new = render(old, slim, a.results)
    if a.check:
        if new != old:
            print(f"{readme} disagrees with {a.results}: run `python tools/readme_results.py`", file=sys.stderr)
            return 1
        print(f"{readme} agrees with {a.results}")
        return 0
    readme.write_text(new)
    print(f"{'rewrote' if new != old else 'unchanged:'} {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
