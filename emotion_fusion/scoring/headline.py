"""The headline figure: each model's test accuracy and macro-F1 with 95% intervals, and fusion's gain over
the better single branch, dot-and-whisker, from a results dict's `draws` (results.json, or the README's slim
copy). No torch."""
from __future__ import annotations

from matplotlib.figure import Figure

from emotion_fusion.errors import InputError

from .plots import PANEL, _figure, _finish

NAMES = {"visual": "visual", "text": "text", "fusion": "fusion, default w", "fusion_best_val": "fusion, validation w"}
METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))


def _label(row: dict) -> str:
    return NAMES[row["model"]] + (f" = {row['weight']:.2f}" if "weight" in row else "")


def plot_headline(results: dict) -> Figure:
    """Three panels: accuracy and macro-F1 in % per model, then fusion minus the better branch in points."""
    d = results.get("draws")
    if not d or "rows" not in d or "comparison" not in d:
        raise InputError("plot_headline needs results with the headline (`draws`: rows and comparison); "
                         "score the run with pairing draws (`fuse`, or `run`)")
    rows = list(reversed(d["rows"]))               # top to bottom: visual, text, fusion, fusion at validation w
    fig = _figure(3 * PANEL + 1.8, PANEL)
    axes = fig.subplots(1, 3, sharey=False)
    colours = {"visual": "tab:blue", "text": "tab:orange", "fusion": "tab:green", "fusion_best_val": "tab:red"}
    for ax, (key, name) in zip(axes, METRICS):
        for i, r in enumerate(rows):
            v, (lo, hi) = 100 * r[key], (100 * r[f"{key}_ci"][0], 100 * r[f"{key}_ci"][1])
            ax.errorbar(v, i, xerr=[[v - lo], [hi - v]], fmt="o", color=colours[r["model"]], capsize=3)
            ax.annotate(f"{v:.1f}", (v, i), textcoords="offset points", xytext=(0, 5), ha="center")
        ax.set_yticks(range(len(rows)), [_label(r) for r in rows])
        ax.set_xlabel(f"{name}, %")
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.grid(axis="x", alpha=0.3)
    axes[1].set_yticklabels([])
    comp = d["comparison"]
    gains = [(m, key, comp[m]) for m in ("fusion_best_val", "fusion") for key, _ in reversed(METRICS)]
    for i, (m, key, c) in enumerate(gains):
        v, (lo, hi) = 100 * c[key]["mean_diff"], (100 * c[key]["ci"][0], 100 * c[key]["ci"][1])
        axes[2].errorbar(v, i, xerr=[[v - lo], [hi - v]], fmt="o", color=colours[m], capsize=3)
        axes[2].annotate(f"{v:+.1f}", (v, i), textcoords="offset points", xytext=(0, 5), ha="center")
    axes[2].set_yticks(range(len(gains)), [f"{'default' if m == 'fusion' else 'validation'} w = {c['weight']:.2f}, "
                                           f"{dict(METRICS)[key]}" for m, key, c in gains])
    axes[2].yaxis.tick_right()
    axes[2].axvline(0, color="black", linewidth=0.8)
    better = comp["fusion"]["better_branch"]
    axes[2].set_xlabel(f"fusion minus {better} (the better branch), points")
    axes[2].set_ylim(-0.6, len(gains) - 0.4)
    axes[2].grid(axis="x", alpha=0.3)
    fig.suptitle(f"Test, all same-class pairs, 95% {d.get('scheme', 'crossed two-way')} intervals")

    def words(r: dict) -> str:
        return (f"{_label(r)}: accuracy {100 * r['accuracy']:.1f}% [{100 * r['accuracy_ci'][0]:.1f}, "
                f"{100 * r['accuracy_ci'][1]:.1f}], macro-F1 {100 * r['macro_f1']:.1f}% "
                f"[{100 * r['macro_f1_ci'][0]:.1f}, {100 * r['macro_f1_ci'][1]:.1f}]")

    alt = ("Headline, dot and whisker, test pairs with 95% intervals. " + "; ".join(words(r) for r in d["rows"])
           + f". Fusion minus the better branch ({better}), macro-F1: " + "; ".join(
               f"{'default' if m == 'fusion' else 'validation'} w = {comp[m]['weight']:.2f} "
               f"{100 * comp[m]['macro_f1']['mean_diff']:+.1f} points [{100 * comp[m]['macro_f1']['ci'][0]:+.1f}, "
               f"{100 * comp[m]['macro_f1']['ci'][1]:+.1f}]" for m in ("fusion", "fusion_best_val")) + ".")
    return _finish(fig, alt)
