"""The fusion-method comparison's figure: each method's gain over the better branch, independent pairs
(all-pairs value, 95% interval) beside the two dependence families (mean and sd over the draws)."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .plots import PANEL, _figure, _finish


def plot_methods(res: dict, metric: str = "macro_f1") -> Figure:
    """Three panels sharing the methods as rows: independent pairs with the crossed two-way 95% interval;
    each dependence family at rho = 0.5 and 1, fitted on independent pairs (open) and re-fitted on pairs of
    the same dependence (filled), with the sd over the pairing draws."""
    rows = res["methods"]
    names = [r["method"] for r in rows]
    y = np.arange(len(names))[::-1]
    dep = res.get("dependence")
    families = list(dep["families"]) if dep else []
    fig = _figure(PANEL * (1.3 + 1.1 * len(families)), 1.4 + 0.3 * len(names))
    axes = fig.subplots(1, 1 + len(families), sharey=True, squeeze=False)[0]
    m = {"macro_f1": "macro-F1"}.get(metric, metric)
    gain = np.array([100 * r["vs_better_branch"][metric]["mean_diff"] for r in rows])
    ci = np.array([[100 * c for c in r["vs_better_branch"][metric]["ci"]] for r in rows])
    ax = axes[0]
    ax.errorbar(gain, y, xerr=[gain - ci[:, 0], ci[:, 1] - gain], fmt="o", color="C0", capsize=2)
    ax.set_yticks(y, names)
    ax.set_title("independent (label) pairs, 95% CI")
    alt = [f"{n}: {g:+.1f} [{lo:+.1f}, {hi:+.1f}]" for n, g, (lo, hi) in zip(names, gain, ci)]
    for ax, fam in zip(axes[1:], families):
        for k, (rho, shift) in enumerate(((0.5, 0.15), (1.0, -0.15))):
            for fit, face in (("independent", "none"), ("same dependence", f"C{k + 1}")):
                sel = {d["method"]: d for d in dep["rows"] if d["family"] == fam and d["rho"] == rho and d["fitted_on"] == fit}
                g = np.array([100 * sel[n][f"gain_{metric}"] for n in names])
                sd = np.array([100 * sel[n][f"gain_{metric}_sd"] for n in names])
                ax.errorbar(g, y + shift, xerr=sd, fmt="o", mfc=face, color=f"C{k + 1}", capsize=2,
                            label=f"rho {rho:g}, " + ("fitted independent" if fit == "independent" else "re-fitted"))
        ax.set_title(f"{fam} dependence, sd over {dep['draws']} draws")
    for ax in axes:
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_xlabel("gain (points)")
    if families:
        handles, labels = axes[-1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=4)
    fig.suptitle(f"Fusion methods: {m} gain over the better branch ({res['better_branch']}), test")
    return _finish(fig, f"Fusion methods, {m} gain over the better branch on test in points, independent pairs: "
                   + "; ".join(alt))
