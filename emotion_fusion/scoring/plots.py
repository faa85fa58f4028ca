"""Figures for the notebook and the CLI. Each function returns a matplotlib Figure.

Figures come from `pyplot.figure` so that Jupyter's inline backend shows each one once at the end of
the cell (end the line with `;` so the returned Figure is not shown a second time) and then closes
it. The backend is never touched and `plt.show()` never called: scripts save with `fig.savefig(...)`
and should `plt.close(fig)` when making many. Nothing here imports torch.

Legible at 100% zoom: a PNG is shown one pixel per CSS pixel (96 per inch), so a font of s points drawn at
DPI dots per inch appears as s * DPI / 96 points; at DPI = 96 every font of at least MIN_FONT_PT points
(SIZES) reads at that size. Every figure carries alt text (`DescribedFigure.alt`): its repr, so the saved
notebook's text/plain and the HTML report's `alt` attribute describe what it shows.
"""
from __future__ import annotations

import textwrap
from typing import Mapping

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from emotion_fusion.data.labels import CLASSES, NUM_CLASSES
from emotion_fusion.errors import InputError

from .metrics import as_labels, as_pred, confusion

PANEL = 2.6  # inches per panel: small enough that the executed notebook stays under its size goal
DPI = 96     # one PNG pixel per CSS pixel: fonts show at their point size at 100% zoom
MIN_FONT_PT = 8
SIZES = {"title": 9, "label": 8, "tick": 8, "legend": 8, "suptitle": 10}   # points; none under MIN_FONT_PT
PNG_COLOURS = 64    # palette PNGs: a third of the bytes of full colour, no visible difference at these sizes
CMAP = "Blues"
HISTORY_KEYS = ("train_loss", "val_loss", "val_acc")


class DescribedFigure(Figure):
    """A Figure whose repr is its alt text (what a reader who cannot see it needs to know)."""

    alt: str = ""

    def __repr__(self) -> str:
        return self.alt or super().__repr__()


class PaletteCanvas(FigureCanvasAgg):
    """Agg drawing, PNG written as a PNG_COLOURS palette image: Jupyter's inline backend and `savefig`
    both print through the figure's canvas, so the executed notebook and saved files stay small."""

    def print_png(self, filename_or_obj, *, metadata=None, pil_kwargs=None, **_ignored):
        from PIL import Image
        FigureCanvasAgg.draw(self)
        rgb = Image.fromarray(np.asarray(self.buffer_rgba())).convert("RGB")
        rgb.quantize(PNG_COLOURS, method=Image.Quantize.MEDIANCUT).save(
            filename_or_obj, format="png", optimize=True, dpi=(self.figure.dpi, self.figure.dpi))


def _figure(width: float, height: float) -> DescribedFigure:
    # sizes are set on the artists (_finish), not with plt.rc_context: figures made inside an rc_context
    # are not all shown by Jupyter's inline backend
    fig = plt.figure(FigureClass=DescribedFigure, figsize=(width, height), layout="constrained", dpi=DPI)
    PaletteCanvas(fig)       # becomes fig.canvas; pyplot still tracks (and closes) the figure
    return fig


def _finish(fig: DescribedFigure, alt: str) -> DescribedFigure:
    """Fonts to SIZES (and never under MIN_FONT_PT), and the alt text."""
    for ax in fig.axes:
        ax.tick_params(labelsize=SIZES["tick"])
        ax.title.set_fontsize(SIZES["title"])
        ax.xaxis.label.set_fontsize(SIZES["label"])
        ax.yaxis.label.set_fontsize(SIZES["label"])
        if ax.get_legend() is not None:
            for t in ax.get_legend().get_texts():
                t.set_fontsize(SIZES["legend"])
    if fig._suptitle is not None:
        fig._suptitle.set_fontsize(SIZES["suptitle"])
    for t in fig.findobj(Text):
        if t.get_fontsize() < MIN_FONT_PT:
            t.set_fontsize(MIN_FONT_PT)
    fig.alt = alt
    return fig


def plot_confusions(y, preds: Mapping[str, np.ndarray], normalize: bool = True) -> Figure:
    """One confusion-matrix panel per model (true rows, predicted columns, class names on axes)."""
    if not preds:
        raise InputError("plot_confusions needs at least one model in preds ({name: predictions})")
    fig = _figure(PANEL * len(preds) + 0.6, PANEL + 0.7)
    axes = fig.subplots(1, len(preds), squeeze=False)[0]
    recalls = []
    for ax, (name, pred) in zip(axes, preds.items()):
        cm = confusion(y, pred, normalize=normalize)
        im = ax.imshow(cm, cmap=CMAP, vmin=0, vmax=1 if normalize else None)
        fmt = "{:.2f}" if normalize else "{:d}"
        recalls.append(f"{name} {100 * np.mean(np.diag(confusion(y, pred, normalize=True))):.1f}%")
        top = cm.max() or 1
        for i in range(NUM_CLASSES):
            for j in range(NUM_CLASSES):
                ax.text(j, i, fmt.format(cm[i, j]).lstrip("0") or "0", ha="center", va="center", fontsize=MIN_FONT_PT,
                        color="white" if cm[i, j] > 0.6 * (1 if normalize else top) else "black")
        ax.set_xticks(range(NUM_CLASSES), CLASSES, rotation=45, ha="right")
        ax.set_yticks(range(NUM_CLASSES), CLASSES)
        ax.set(xlabel="predicted", title=name)
    axes[0].set_ylabel("true")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="share of the true class's pairs" if normalize else "pairs")
    fig.suptitle("Confusion matrices, test pairs" + (", row-normalised (each row sums to 1)" if normalize else ""))
    alt = (f"Confusion matrices, one per model ({', '.join(preds)}): true class in rows, predicted in columns, "
           f"{'each row as shares' if normalize else 'counts'}. Mean of the diagonal shares (balanced "
           f"accuracy): {', '.join(recalls)}.")
    return _finish(fig, alt)


def plot_sweep(sweep: dict, chosen: float | None = None, validation_weight: float | None = None) -> Figure:
    """Macro-F1 and accuracy in % vs fusion weight (val, and test when swept). Marked: the default pairing's
    own best validation weight, `chosen` (the default weight) and `validation_weight` (the headline's)."""
    missing = [k for k in ("weights", "val_macro_f1", "val_accuracy", "best_weight") if k not in sweep]
    if missing:
        raise InputError(f"sweep result lacks {missing}; pass the dict returned by fusion.sweep")
    w = np.asarray(sweep["weights"])
    fig = _figure(2 * PANEL + 1.6, PANEL + 0.3)
    axes = fig.subplots(1, 2)
    marks = [(sweep["best_weight"], "tab:green", "--", "default pairing's own best"), (chosen, "tab:red", ":", "default"),
             (validation_weight, "tab:purple", "-.", "validation weight")]
    for ax, metric, label in zip(axes, ("macro_f1", "accuracy"), ("macro-F1, %", "accuracy, %")):
        ax.plot(w, 100 * np.asarray(sweep[f"val_{metric}"]), label="validation")
        if f"test_{metric}" in sweep:
            ax.plot(w, 100 * np.asarray(sweep[f"test_{metric}"]), label="test", alpha=0.8)
        for x, colour, style, name in [m for m in marks if m[0] is not None]:
            ax.axvline(x, color=colour, linestyle=style, label=f"{name} w = {x:.2f}")
        ax.set(xlabel="visual weight w (0 text only, 1 visual only)", ylabel=label, xlim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{sweep.get('rule', 'linear')} fusion: weight sweep on the default pairing")
    f1 = np.asarray(sweep["val_macro_f1"], dtype=float)
    alt = (f"Weight sweep of {sweep.get('rule', 'linear')} fusion: validation macro-F1 {100 * f1[0]:.1f}% at "
           f"w = {w[0]:.2f} (text only) and {100 * f1[-1]:.1f}% at w = {w[-1]:.2f} (visual only), best "
           f"{100 * f1.max():.1f}% at the default pairing's own best weight {sweep['best_weight']:.2f}"
           + (f"; default weight {chosen:.2f}" if chosen is not None else "")
           + (f"; validation weight {validation_weight:.2f}" if validation_weight is not None else "")
           + ("; test curves drawn beside them." if "test_macro_f1" in sweep else "."))
    return _finish(fig, alt)


def _history_columns(history) -> dict[str, np.ndarray]:
    # Accept a dict of per-epoch lists, a list of per-epoch dicts, or a DataFrame.
    if hasattr(history, "to_dict") and hasattr(history, "columns"):
        history = {c: history[c].to_numpy() for c in history.columns}
    elif isinstance(history, (list, tuple)):
        history = {k: [row[k] for row in history] for k in (history[0] if history else {})}
    if not isinstance(history, Mapping):
        raise InputError(f"history is a {type(history).__name__}; pass a dict of per-epoch lists")
    missing = [k for k in HISTORY_KEYS if k not in history]
    if missing:
        raise InputError(f"training history lacks {missing}; it needs {', '.join(HISTORY_KEYS)} per epoch")
    cols = {k: np.asarray(history[k], dtype=float) for k in HISTORY_KEYS}
    if len({c.size for c in cols.values()}) != 1 or cols["val_acc"].size == 0:
        raise InputError("training history columns are empty or of different lengths; one value per epoch")
    return cols


def plot_history(history, best_epoch: int | None = None) -> Figure:
    """Train/val loss and val accuracy per epoch, with one epoch (1-based) marked.

    The marked epoch is `best_epoch`, else the history's `scored_epoch` (the weights the run scored:
    the best-val-loss epoch, or the last one with restore_best=False), else its `best_epoch`, else the
    epoch with the highest val_acc.
    """
    cols = _history_columns(history)
    epochs = np.arange(1, cols["val_acc"].size + 1)
    what = "best epoch"
    if best_epoch is None and isinstance(history, Mapping):
        if "scored_epoch" in history:
            best_epoch, what = history["scored_epoch"], "scored epoch"
        elif "best_epoch" in history:
            best_epoch = history["best_epoch"]
    best = int(np.argmax(cols["val_acc"])) + 1 if best_epoch is None else int(best_epoch)
    fig = _figure(2 * PANEL + 1, PANEL)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, cols["train_loss"], marker="o", label="train")
    ax_loss.plot(epochs, cols["val_loss"], marker="o", label="validation")
    ax_loss.set_ylabel("loss")
    ax_acc.plot(epochs, cols["val_acc"], marker="o", color="tab:orange")
    ax_acc.set_ylabel("validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.axvline(best, color="tab:green", linestyle="--", label=f"{what} {best}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    ax_loss.legend()
    tl, vl, va = cols["train_loss"], cols["val_loss"], cols["val_acc"]
    # the best-validation-loss epoch the history records (the marker may show the scored one)
    best_val = int(history["best_epoch"]) if isinstance(history, Mapping) and "best_epoch" in history else best
    alt = (f"Training curves over {epochs.size} epoch{'s' * (epochs.size != 1)}: train loss {tl[0]:.3f} to "
           f"{tl[-1]:.3f}, validation loss {vl[0]:.3f} to {vl[-1]:.3f}, validation accuracy {100 * va[0]:.1f}% "
           f"to {100 * va[-1]:.1f}%; best epoch {best_val}{_kept_words(history, epochs.size)}.")
    return _finish(fig, alt)


def _kept_words(history, n_epochs: int) -> str:
    """Whose weights training kept, as the history records it (`restore_best`); nothing when it does not."""
    if not isinstance(history, Mapping) or "restore_best" not in history:
        return ""
    if history["restore_best"]:
        return " (its weights are kept)"
    last = history.get("scored_epoch", n_epochs)
    return f"; the last epoch's weights (epoch {last}) are kept, not the best's (restore_best off)"


def _display(face: np.ndarray) -> np.ndarray:
    """A face for display: 32 grey levels (indistinguishable at gallery size) compress several times
    better as PNG, which keeps the executed notebook small enough to share."""
    return (np.asarray(face, dtype=np.uint8) // 8) * 8 + 4


def _check_pixels(pixels, n: int | None = None) -> np.ndarray:
    a = np.asarray(pixels)
    if a.ndim != 3:
        raise InputError(f"pixels have shape {a.shape}; expected N x H x W grayscale images")
    if n is not None and a.shape[0] != n:
        raise InputError(f"{a.shape[0]} images but {n} labels; pass one label per image")
    return a


def plot_face_grid(pixels, y, per_class: int = 6, seed: int = 0) -> Figure:
    """A 7-row mosaic of `per_class` seeded random faces per class (blank cells if a class has fewer).

    One image rather than 42 small axes: the same picture at a fraction of the PNG size.
    """
    y = as_labels(y)
    pixels = _check_pixels(pixels, y.size)
    rng = np.random.default_rng(seed)
    h, w = pixels.shape[1:]
    gap = 2
    mosaic = np.full((NUM_CLASSES * (h + gap), per_class * (w + gap)), 255, dtype=np.uint8)
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(y == c)
        pick = rng.choice(members, size=min(per_class, members.size), replace=False)
        for j, i in enumerate(pick):
            mosaic[c * (h + gap):c * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = _display(pixels[i])
    # one face pixel per screen pixel at 100% (the faces are 48 px): sharp and the smallest PNG
    fig = _figure(mosaic.shape[1] / DPI + 0.9, mosaic.shape[0] / DPI + 0.15)
    ax = fig.subplots()
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([c * (h + gap) + h / 2 for c in range(NUM_CLASSES)], CLASSES)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    return _finish(fig, f"Up to {per_class} training faces per class, one row per class "
                        f"({', '.join(CLASSES)}), {h}x{w} grayscale.")


def plot_example_pairs(pixels, texts, y, p_visual, p_text, p_fused, n: int = 6) -> Figure:
    """The first `n` pairs: each face over its text, with the true, visual, text and fused labels."""
    y = as_labels(y)
    pixels = _check_pixels(pixels, y.size)
    preds = {k: as_pred(p, k) for k, p in (("visual", p_visual), ("text", p_text), ("fused", p_fused))}
    if len(texts) != y.size or any(p.size != y.size for p in preds.values()):
        raise InputError("pixels, texts, labels and the three probability arrays must describe the "
                         "same pairs (equal lengths)")
    n = min(n, y.size)
    fig = _figure(2.0 * n, 3.3)
    axes = fig.subplots(2, n, squeeze=False, height_ratios=[3, 2])
    for i in range(n):
        face, note = axes[0, i], axes[1, i]
        face.imshow(_display(pixels[i]), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        face.set_axis_off()
        face.set_title(f"true: {CLASSES[y[i]]}")
        verdict = "\n".join(f"{k}: {CLASSES[p[i]]} {'(right)' if p[i] == y[i] else '(wrong)'}"
                            for k, p in preds.items())
        note.set_axis_off()
        shown = textwrap.fill(textwrap.shorten(str(texts[i]), 84, placeholder=" …"), 27)   # 4 lines at most
        note.text(0, 1, shown, va="top", fontsize=MIN_FONT_PT)
        note.text(0, 0, verdict, va="bottom", fontsize=MIN_FONT_PT, family="monospace")
    pairs = "; ".join(f"{i + 1}) true {CLASSES[y[i]]}, \"{textwrap.shorten(str(texts[i]), 60, placeholder=' …')}\", "
                      + ", ".join(f"{k} {CLASSES[p[i]]}" for k, p in preds.items()) for i in range(n))
    return _finish(fig, f"{n} test pairs, each a face over its text, with the true label and each branch's "
                        f"prediction: {pairs}.")


def plot_dependence(curve: dict, metric: str = "macro_f1") -> Figure:
    """Fusion minus the better branch (points) against phi within class, the correlation of the branches'
    correctness with the class means removed (pooled phi would also carry how the classes differ in
    difficulty, and is above 0 even for random pairs), one line per dependence family
    (`scoring.dependence.curve`): solid at each draw's best validation weight, dashed at the configured
    weight, bands of +-1 sd over draws; the independent point, where the gain reaches zero and (seed
    protocol) the stored pairs marked. Settings where phi is undefined (a branch right on all or none of
    each class's pairs) are left out; an InputError if that leaves none."""
    missing = [k for k in ("rows", "families", "crossing", "weight") if k not in curve]
    if missing:
        raise InputError(f"dependence curve lacks {missing}; pass the dict returned by dependence.curve")
    defined = [r for r in curve["rows"] if r.get("phi_within") is not None]
    if not defined:
        raise InputError("no dependence curve to plot: phi within class is undefined in every setting (a branch "
                         "is right on all or none of each class's test pairs); read the table instead")
    fig = _figure(2 * PANEL + 1, PANEL + 0.8)
    ax = fig.subplots()
    ax.axhline(0, color="grey", linewidth=0.8)
    for (family, label), color in zip(curve["families"].items(), ("tab:blue", "tab:red")):
        rows = [r for r in defined if r["family"] == family]
        x = np.array([r["phi_within"] for r in rows])
        for model, style, name in (("fusion_best_val", "-", "best val w"),
                                   ("fusion", "--", f"w = {curve['weight']:.2f}")):
            y = 100 * np.array([r[f"gain_{model}_{metric}"] for r in rows])
            sd = 100 * np.array([r[f"gain_{model}_{metric}_sd"] for r in rows])
            ax.plot(x, y, style, color=color, marker="o" if style == "-" else None, markersize=3,
                    label=f"{label}, {name}")
            ax.fill_between(x, y - sd, y + sd, color=color, alpha=0.12 if style == "-" else 0.06, linewidth=0)
        cross = curve["crossing"][family][f"gain_fusion_best_val_{metric}"]
        if cross["crosses"] and cross["rho"] > 0 and cross["phi_within"] is not None:
            ax.axvline(cross["phi_within"], color=color, linestyle=":", linewidth=1)
            ax.annotate(f"gain 0 at phi = {cross['phi_within']:.2f}", (cross["phi_within"], 0), xytext=(4, 6),
                        textcoords="offset points", color=color)
    zero = next(r for r in curve["rows"] if r["rho"] == 0)
    zero_gain = 100 * zero[f"gain_fusion_best_val_{metric}"]
    if zero["phi_within"] is not None:
        ax.plot(zero["phi_within"], zero_gain, "ko", markersize=7, fillstyle="none",
                label="independent (random label pairing)")
    stored = curve.get("stored_pairs")
    if stored and stored.get("phi_within") is not None:
        ax.plot(stored["phi_within"], 100 * stored[f"gain_fusion_best_val_{metric}"], "k*", markersize=11,
                label="the protocol's own pairs (CLIP matches)")
    ax.set_xlabel("phi within class: correlation of 'visual correct' with 'text correct' (test pairs)")
    ax.set_ylabel(f"fusion - better branch, {'macro-F1' if metric == 'macro_f1' else metric} (points)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"How much of the gain survives dependence (mean of {curve['draws']} draws, band +-1 sd)")
    crossings = "; ".join(
        f"{label}: gain reaches 0 at phi within class = {c['phi_within']:.2f}"
        if c["crosses"] and c["phi_within"] is not None else
        f"{label}: gain stays above 0" if not c["crosses"] else f"{label}: gain reaches 0 where phi is undefined"
        for (family, label) in curve["families"].items()
        for c in [curve["crossing"][family][f"gain_fusion_best_val_{metric}"]])
    at = f"phi = {zero['phi_within']:.2f}" if zero["phi_within"] is not None else "an undefined phi (not drawn)"
    skipped = len(curve["rows"]) - len(defined)
    return _finish(fig, f"Fusion minus the better branch ({metric.replace('_', '-')}, points) against phi within "
                        f"class, the correlation of the two branches' correctness, one line per dependence family; "
                        f"independent pairing at {at} with a gain of {zero_gain:+.1f}; {crossings}"
                        + (f"; {skipped} settings with undefined phi left out." if skipped else "."))


def message_figure(text: str) -> Figure:
    """A small figure that only says `text` (its alt text too): where a plot has nothing to draw."""
    fig = _figure(2 * PANEL + 1, 1.0)
    ax = fig.subplots()          # an axes, hidden: IPython shows no figure that has none
    ax.axis("off")
    ax.text(0.5, 0.5, textwrap.fill(text, 90), ha="center", va="center", fontsize=MIN_FONT_PT)
    return _finish(fig, text)
