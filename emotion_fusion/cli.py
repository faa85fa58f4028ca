"""The command line (DESIGN.md section 6; the contract is firm: other tools call it).

Each command imports what it needs inside its handler, so `fuse` and `sweep` never import torch.
Bad input ends with one line on stderr (`error: ...`) and exit status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from emotion_fusion.errors import InputError, WriteError


def _print(obj: Any, as_json: bool, text: str, out) -> None:
    from emotion_fusion.runs import to_jsonable
    print(json.dumps(obj, default=to_jsonable, allow_nan=False) if as_json else text, file=out)


def _weight(text: str) -> float:
    """Parse a --weight value; the range check is fusion's own (one rule, one message)."""
    from emotion_fusion.scoring.fusion import check_weight
    try:
        w = float(text)
    except ValueError:
        raise InputError(f"fusion weight {text!r} is not a number; use a value between 0 and 1") from None
    return check_weight(w)


# --- handlers -------------------------------------------------------------------------------------
def _cmd_data(a: argparse.Namespace, out) -> int:
    from emotion_fusion import data
    fer_path, go_path = data.resolve_paths(a.fer2013, a.goemotions)
    fer = data.load_fer2013(fer_path, skip_bad=a.skip_bad, progress=not a.json,
                            allow_empty_classes=a.allow_empty_classes)
    go = data.load_goemotions(go_path, mapping=a.label_map, skip_bad=a.skip_bad)
    summary = data.summarize(fer, go)
    _print(summary, a.json, data.format_summary(summary), out)
    return 0


def _cmd_run(a: argparse.Namespace, out) -> int:
    from emotion_fusion.config import Config
    from emotion_fusion.pipeline import run
    overrides: dict[str, Any] = {}
    if a.fusion_weight is not None:
        overrides["fusion_weight"] = _weight(a.fusion_weight)
    if a.seed is not None:
        overrides["seed"] = a.seed
    for flag in ("skip_bad", "allow_empty_classes"):
        if getattr(a, flag):
            overrides[flag] = True
    for flag, key in (("--fusion-weight", "fusion_weight"), ("--seed", "seed")):
        given = [p for p in a.set or [] if p.partition("=")[0].strip() == key]
        if key in overrides and given:
            raise InputError(f"{flag} and --set {given[0]} both set {key}; give it once")
    cfg = Config.from_profile(a.profile, **overrides).with_overrides(a.set or [])
    if a.seeds:
        from emotion_fusion.repeat import format_aggregate, run_seeds
        if a.seed is not None:
            raise InputError("give either --seed S or --seeds S1 S2 ..., not both")
        agg = run_seeds(cfg, a.seeds, fer2013=a.fer2013, goemotions=a.goemotions, out=a.out)
        if agg is None:     # a non-main process of a distributed run
            return 0
        _print(agg, a.json, format_aggregate(agg), out)
        return 0
    result = run(cfg, fer2013=a.fer2013, goemotions=a.goemotions, out=a.out)
    if result is None:      # a non-main process of a distributed run: rank 0 writes and reports
        return 0
    text = result.table_text()
    if cfg.protocol == "seed":
        text += _seed_extras(result)
    _print(result.results, a.json, text, out)
    return 0


# the pairing summary's columns for a terminal: the pools, each rule in order, the split, the kept similarity
_PAIRING_COLUMNS = {"pool_images": "faces", "pool_texts": "texts", "target": "target", "sampled": "sampled",
                    "matched": "matched", "above_threshold": ">= min sim", "kept_top_target": "top target",
                    "after_word_count": "words ok", "after_unique_ratio": "unique ok", "after_spam": "no spam",
                    "train": "train", "val": "val", "test": "test", "sim_kept_mean": "mean sim"}


def _seed_extras(result) -> str:
    """The reproduction's own evidence after its table: pairs per class after each of the original's
    rules, the pools next to the original's, and the original's two bugs (raw-cosine vs calibrated head,
    fused with this run's visual branch; best-val-loss vs last-epoch weights of this run's one fit)."""
    from emotion_fusion.original.bugs import original_bug, original_epoch_bug
    from emotion_fusion.original.reference import pool_comparison
    pairing = result.pairing_table()
    pairing = pairing[[c for c in _PAIRING_COLUMNS if c in pairing.columns]].rename(columns=_PAIRING_COLUMNS)
    bug, epochs = original_bug(result.dir), original_epoch_bug(result.dir)
    return (f"\n\nPairing, per class (pairs left after each of the seed protocol's rules, in order):\n"
            f"{pairing.to_string(na_rep='', float_format=lambda v: f'{v:.3f}')}\n\n"
            f"Pools and pairs, this run next to the original notebook's printed counts:\n"
            f"{pool_comparison(result.pairing_summary).to_string()}\n\n"
            f"The original's bug 1, the raw-cosine text head, on the {bug.df.attrs['n_pairs']:,} test pairs:\n"
            f"{bug.to_text()}\n\n"
            f"The original's bug 2, its shallow copy scored the last epoch, on the same pairs:\n{epochs.to_text()}")


def _cmd_fuse(a: argparse.Namespace, out) -> int:
    from emotion_fusion import report
    # the headline the run itself printed: the all-pairs estimand with its two-way interval (numpy only),
    # over config.json's pairing_draws, checked as every other setting (a bad value is a one-line error)
    res = report.score_run(a.run_dir, weight=_weight(a.weight), draws=None)
    _print(res, a.json, report.format_results(res), out)
    return 0


def _cmd_sweep(a: argparse.Namespace, out) -> int:
    from emotion_fusion import report
    from emotion_fusion.scoring.plots import plot_sweep
    res = report.score_run(a.run_dir)
    fig = plot_sweep(res["sweep"], chosen=res.get("weight"))
    plot_path = Path(a.run_dir) / "sweep.png"
    note = _save_plot(fig, plot_path, "the scores above are")
    summary = {"best_weight": res["best_weight"], "sweep": res["sweep"], "plot": None if note else str(plot_path),
               "rows": [r for r in res["rows"] if r["model"] == "fusion_best_val"]}
    if note:
        summary["plot_error"] = note
    text = (f"best validation weight: {res['best_weight']:.2f} (macro-F1 on validation)\n"
            + report.format_results({**res, "rows": summary["rows"]}) + f"\n{note or f'plot: {plot_path}'}")
    _print(summary, a.json, text, out)
    return 0


def _save_plot(fig, path: Path, what: str) -> str | None:
    """Write `fig` to `path` atomically (a symlink planted there is replaced, never written through) and
    close it; None, or the note that says why not (a read-only run dir): `what` is still complete."""
    import matplotlib.pyplot as plt

    from emotion_fusion.data.files import atomic_write
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    except OSError as e:
        return f"plot not written: {path} ({e.strerror}); {what} complete"
    finally:
        plt.close(fig)
    return None


def _cmd_dependence(a: argparse.Namespace, out) -> int:
    from emotion_fusion.report import dependence_curve
    dep = dependence_curve(a.run_dir, draws=a.draws)
    plot_path, note = Path(a.run_dir) / "dependence.png", None
    try:    # the curve is computed: a plot that cannot be drawn or written must not lose it
        fig = dep.plot()
    except InputError as e:      # phi undefined in every setting: nothing to draw against
        fig, note = None, f"plot not drawn: {e}; the table above is complete"
    if fig is not None:
        note = _save_plot(fig, plot_path, "the table above is")
    summary = {**dep.results, "plot": None if note else str(plot_path), **({"plot_error": note} if note else {})}
    _print(summary, a.json, dep.text() + f"\n{note or f'plot: {plot_path}'}", out)
    return 0


def _cmd_compare(a: argparse.Namespace, out) -> int:
    from emotion_fusion.comparison import compare_fusion
    methods = None if a.methods is None else [m for s in a.methods for m in s.split(",") if m]
    cmp = compare_fusion(a.run_dir, methods, weight=_weight(a.weight) if a.weight is not None else None,
                         draws=a.draws, dependence=not a.no_dependence)
    plot_path = Path(a.run_dir) / "compare.png"
    note = _save_plot(cmp.plot(), plot_path, "the tables above are")
    summary = {**cmp.results, "plot": None if note else str(plot_path), **({"plot_error": note} if note else {})}
    _print(summary, a.json, cmp.text() + f"\n{note or f'plot: {plot_path}'}", out)
    return 0


def _cmd_evaluate(a: argparse.Namespace, out) -> int:
    from emotion_fusion.app.inference import evaluate_run
    from emotion_fusion.runs import INFO, read_json
    result = evaluate_run(a.run_dir, fer2013=a.fer2013, goemotions=a.goemotions, out=a.out, skip_bad=a.skip_bad,
                          allow_empty_classes=a.allow_empty_classes)
    skipped = read_json(result.dir / INFO).get("skipped", [])
    for line in skipped:     # as `data --skip-bad` and batch `predict --skip-bad` report theirs
        print(f"skipped: {line}", file=sys.stderr)
    text = result.table_text() + (f"\n{len(skipped)} bad items skipped (listed on stderr)" if skipped else "")
    _print({**result.results, "skipped": skipped}, a.json, text, out)
    return 0


def _cmd_predict(a: argparse.Namespace, out) -> int:
    from emotion_fusion.app.inference import predict
    weight = None if a.weight is None else _weight(a.weight)
    batch = [f for f in ("images", "texts", "pairs", "out") if getattr(a, f) is not None]
    if batch:   # the batch form (batch.py); the single pair below is unchanged
        from emotion_fusion.app.batch import predict_batch
        if a.image is not None or a.text is not None or a.out is None:
            raise InputError("batch form: --images and/or --texts with --out CSV, without --image/--text")
        res = predict_batch(a.run_dir, images=a.images, texts=a.texts, pairs=a.pairs, out=a.out, weight=weight,
                            skip_bad=a.skip_bad, batch_size=a.batch_size, workers=a.workers, progress=not a.json)
        _print(res, a.json, f"{res['rows']} rows ({res['mode']}) -> {res['out']}; {len(res['skipped'])} bad rows "
                            "skipped", out)
        return 0
    if a.image is None or a.text is None:
        raise InputError("give --image FILE and --text TEXT (one pair), or --images/--texts --out CSV (batch)")
    res = predict(a.run_dir, image=a.image, text=a.text, weight=weight)
    lines = [f"{k:>8}: {res[k]['label']:<9} " + "  ".join(f"{c} {p:.3f}" for c, p in res[k]["probs"].items())
             for k in ("visual", "text", "fusion")]
    _print(res, a.json, "\n".join(lines), out)
    return 0


def _cmd_demo(a: argparse.Namespace, out) -> int:
    from emotion_fusion.app.demo import serve
    serve(a.run_dir, host=a.host, port=a.port)
    return 0


# --- parser ---------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (the contract), pointing at --help."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m emotion_fusion",
                                description="Multimodal emotion recognition with weighted late fusion.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def datasets(sp: argparse.ArgumentParser, required: bool = False) -> None:
        sp.add_argument("--fer2013", required=required,
                        help="FER2013 zip or folder (default: $EMOTION_FUSION_DATA, else data/)")
        sp.add_argument("--goemotions", required=required,
                        help="GoEmotions TSV folder or HF id (default: $EMOTION_FUSION_DATA, else data/)")

    def bad_input(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--skip-bad", action="store_true", help="skip unreadable images / malformed rows, report them")
        sp.add_argument("--allow-empty-classes", action="store_true",
                        help="accept a FER2013 class folder with no images (an error otherwise)")

    sp = sub.add_parser("data", help="counts per split and class, duplicates")
    datasets(sp)
    sp.add_argument("--label-map", default="ekman", choices=["ekman", "seed"])
    bad_input(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_data)

    sp = sub.add_parser("run", help="train and evaluate both branches, write RUN_DIR")
    sp.add_argument("--profile", required=True, choices=["full", "offline", "smoke", "seed"])
    datasets(sp)
    sp.add_argument("--out", required=True, help="run directory to write")
    sp.add_argument("--fusion-weight", help="visual share of the fusion, in [0, 1] (default 0.6)")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--seeds", type=int, nargs="+", metavar="S",
                    help="repeat the run for each training seed into OUT/seed-S/ and write OUT/aggregate.json")
    sp.add_argument("--set", nargs="*", action="extend", metavar="KEY=VALUE",
                    help="override any config setting (repeatable; each key once)")
    bad_input(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_run)

    sp = sub.add_parser("fuse", help="re-score fusion at a weight from cached outputs (no torch)")
    sp.add_argument("--run-dir", required=True)
    sp.add_argument("--weight", required=True)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_fuse)

    sp = sub.add_parser("sweep", help="weight sweep on validation, best weight, its test scores, a plot")
    sp.add_argument("--run-dir", required=True)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_sweep)

    sp = sub.add_parser("dependence", help="the fusion gain under controlled dependence of the pairing (no torch)")
    sp.add_argument("--run-dir", required=True)
    sp.add_argument("--draws", type=int, help="seeded pairing draws per setting (default 20)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_dependence)

    sp = sub.add_parser("compare", help="fusion methods fitted on validation, compared on test with intervals (no torch)")
    sp.add_argument("--run-dir", required=True)
    sp.add_argument("--methods", nargs="+", metavar="NAME",
                    help="fusion methods to compare (names, or comma-separated; default: every registered one)")
    sp.add_argument("--draws", type=int, help="validation pairings to fit on (default: config.json's pairing_draws)")
    sp.add_argument("--weight", help="linear and loglinear at this visual weight in [0, 1] (default: chosen on validation)")
    sp.add_argument("--no-dependence", action="store_true", help="skip the dependence rows")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_compare)

    sp = sub.add_parser("evaluate", help="score RUN_DIR's trained branches on another test set")
    sp.add_argument("--run-dir", required=True)
    datasets(sp)
    sp.add_argument("--out", required=True)
    bad_input(sp)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_evaluate)

    sp = sub.add_parser("predict", help="one image + one text, or batches (--images/--texts --out CSV) -> probabilities")
    sp.add_argument("--run-dir", required=True)
    sp.add_argument("--image", help="one face image (with --text)")
    sp.add_argument("--text", help="one text (with --image)")
    sp.add_argument("--weight")
    sp.add_argument("--images", help="batch: a folder or zip of faces")
    sp.add_argument("--texts", help="batch: a .txt (one per line), .csv or .tsv (column `text`) of texts")
    sp.add_argument("--pairs", help="batch: CSV with columns image,text (ids) to fuse; default row-aligned")
    sp.add_argument("--out", help="batch: the predictions CSV to write")
    sp.add_argument("--skip-bad", action="store_true", help="batch: skip and list bad rows instead of stopping")
    sp.add_argument("--workers", type=int, default=2, help="batch: DataLoader worker processes (default 2)")
    sp.add_argument("--batch-size", type=int, default=64, help="batch: faces per batch (default 64)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_cmd_predict)

    sp = sub.add_parser("demo", help="the interactive page for a finished run (Gradio, local only)")
    sp.add_argument("--run-dir", required=True)
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sp.add_argument("--port", type=int, help="port (default: the first free one from 7860)")
    sp.set_defaults(func=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stdout = sys.stdout
    try:
        if getattr(args, "json", False):
            # progress lines (tqdm.write, library chatter) go to stderr: stdout carries one JSON object
            with contextlib.redirect_stdout(sys.stderr):
                return args.func(args, stdout)
        return args.func(args, stdout)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:   # stdout closed early (`| head`): nothing left to say
        return 0
    except WriteError as e:   # a full disk or an unwritable --out: atomic_write left the file as it was
        print(f"error: {e.filename}: {e.strerror or e}; check the folder, its permissions and the free disk "
              "space (nothing was half-written)", file=sys.stderr)
        return 2
    except OSError as e:   # anything else the OS refused (most often reading): say which file, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}; check the path and its permissions", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
