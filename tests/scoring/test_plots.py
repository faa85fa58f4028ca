"""plots: every function returns a Figure with the expected panels; bad input is refused."""
import matplotlib

matplotlib.use("Agg")  # tests only; the library never selects a backend

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from emotion_fusion.data.labels import CLASSES  # noqa: E402
from emotion_fusion.errors import InputError  # noqa: E402
from emotion_fusion.scoring.fusion import fuse, sweep  # noqa: E402
from emotion_fusion.scoring.plots import (  # noqa: E402
    plot_confusions,
    plot_dependence,
    plot_example_pairs,
    plot_face_grid,
    plot_history,
    plot_sweep,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _probs(n, seed):
    e = np.exp(np.random.default_rng(seed).normal(size=(n, 7)))
    return e / e.sum(axis=1, keepdims=True)


def _render(fig, tmp_path) -> np.ndarray:
    """The figure saved as PNG and decoded again: (H, W, 3) uint8 of the figure's size at its dpi."""
    from PIL import Image
    path = tmp_path / "fig.png"
    fig.savefig(path)
    with Image.open(path) as im:
        assert im.format == "PNG"
        rgb = np.asarray(im.convert("RGB"))
    w, h = fig.get_size_inches() * fig.dpi
    assert abs(rgb.shape[0] - h) <= 1 and abs(rgb.shape[1] - w) <= 1
    return rgb


def _ink(rgb: np.ndarray) -> float:
    """Share of pixels that are not (near) white: 0 for an empty figure."""
    return float((rgb.min(axis=2) < 200).mean())


def _colour(rgb: np.ndarray) -> int:
    """Pixels that are clearly coloured (not grey): data drawn in a colour map or line colours."""
    return int((rgb.max(axis=2).astype(int) - rgb.min(axis=2) > 40).sum())


def test_plot_confusions_one_panel_per_model(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 100)
    preds = {"visual": rng.integers(0, 7, 100), "text": _probs(100, 1), "fusion": y}
    fig = plot_confusions(y, preds)
    assert isinstance(fig, Figure) and len(fig.axes) == 4          # three panels and one colour bar
    assert [a.get_title() for a in fig.axes[:3]] == ["visual", "text", "fusion"]
    assert fig.axes[3].get_ylabel() == "share of the true class's pairs" and "row-normalised" in fig._suptitle.get_text()
    assert fig.axes[0].get_yticklabels()[0].get_text() == "angry"
    # a perfect predictor: the diagonal cells are the darkest blue, off-diagonal cells white
    fig = plot_confusions(y, {"v": y}, normalize=False)
    rgb = _render(fig, tmp_path)
    assert _colour(rgb) > 0.05 * rgb.shape[0] * rgb.shape[1] and _ink(rgb) > 0.05
    img = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(img), np.diag(np.bincount(y, minlength=7)))
    with pytest.raises(InputError, match="at least one model"):
        plot_confusions(y, {})


def test_plot_sweep_marks_best_and_chosen(tmp_path):
    y = np.random.default_rng(2).integers(0, 7, 200)
    val = {"p_visual": _probs(200, 3), "p_text": _probs(200, 4), "y": y}
    sw = sweep(val, val, n_boot=50)
    fig = plot_sweep(sw, chosen=0.3, validation_weight=0.45)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 5  # val, test, the default pairing's own best, the default, the validation weight
    assert [ln.get_xdata()[0] for ln in fig.axes[0].lines[2:]] == [sw["best_weight"], 0.3, 0.45]
    assert fig.axes[0].get_legend().get_texts()[4].get_text() == "validation weight w = 0.45"
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), 100 * np.asarray(sw["val_macro_f1"]))   # in %
    assert fig.axes[0].get_ylabel() == "macro-F1, %"
    assert _colour(_render(fig, tmp_path)) > 500
    with pytest.raises(InputError, match="sweep result lacks"):
        plot_sweep({"weights": [0, 1]})


@pytest.mark.parametrize("as_rows", [False, True])
def test_plot_history(as_rows, tmp_path):
    hist = {"train_loss": [2.0, 1.5, 1.2], "val_loss": [1.9, 1.6, 1.7], "val_acc": [0.3, 0.45, 0.42]}
    if as_rows:
        hist = [dict(zip(hist, v)) for v in zip(*hist.values())]
    fig = plot_history(hist)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[1].lines[-1].get_xdata()[0] == 2  # best val_acc is epoch 2
    if not as_rows:  # the trainer's own best epoch (lowest val loss) wins over val_acc
        assert plot_history({**hist, "best_epoch": 1}).axes[0].lines[-1].get_xdata()[0] == 1
        # restore_best=False scored the last epoch: that is the one marked, and so labelled
        last = plot_history({**hist, "best_epoch": 1, "scored_epoch": 3, "restore_best": False}).axes[0].lines[-1]
        assert last.get_xdata()[0] == 3 and last.get_label() == "scored epoch 3"
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [2.0, 1.5, 1.2])   # train loss
    assert _colour(_render(fig, tmp_path)) > 500
    with pytest.raises(InputError, match=r"training history lacks \['val_acc'\]"):
        plot_history({"train_loss": [1], "val_loss": [1]})


def test_plot_face_grid(tmp_path):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(60, 48, 48), dtype=np.uint8)
    y = np.r_[np.repeat(np.arange(6), 9), [6, 6], [0, 1, 2, 3]]      # class 6 (surprise) has only 2 faces
    fig = plot_face_grid(pixels, y, per_class=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 1 and len(fig.axes[0].images) == 1
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(CLASSES)
    mosaic = np.asarray(fig.axes[0].images[0].get_array())
    cell = 48 + 2
    assert mosaic.shape == (7 * cell, 4 * cell)
    shown = (pixels // 8) * 8 + 4                  # the display quantisation (32 grey levels)
    for c in range(7):
        for j in range(4):
            face = mosaic[c * cell:c * cell + 48, j * cell:j * cell + 48]
            hits = [i for i in np.flatnonzero(y == c) if np.array_equal(face, shown[i])]
            if c == 6 and j >= 2:
                assert (face == 255).all() and not hits       # blank cells: the class has fewer faces
            else:
                assert len(hits) == 1                          # each cell is a face of its row's class
    assert _ink(_render(fig, tmp_path)) > 0.3
    with pytest.raises(InputError, match="60 images but 59 labels"):
        plot_face_grid(pixels, y[:59])


def test_plot_example_pairs(tmp_path):
    n = 8
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    y = rng.integers(0, 7, n)
    pv, pt = _probs(n, 7), _probs(n, 8)
    texts = [f"text number {i} that is long enough to need wrapping in the panel" for i in range(n)]
    fig = plot_example_pairs(pixels, texts, y, pv, pt, fuse(pv, pt), n=5)
    assert isinstance(fig, Figure) and len(fig.axes) == 10
    fused = fuse(pv, pt).argmax(1)
    for i in range(5):
        face_ax, note_ax = fig.axes[i], fig.axes[5 + i]
        assert face_ax.get_title() == f"true: {CLASSES[y[i]]}"
        verdict = note_ax.texts[1].get_text().splitlines()
        for line, (name, p) in zip(verdict, (("visual", pv), ("text", pt), ("fused", fused))):
            pred = p[i].argmax() if p.ndim == 2 else p[i]
            assert line == f"{name}: {CLASSES[pred]} {'(right)' if pred == y[i] else '(wrong)'}"
        assert note_ax.texts[0].get_text().replace("\n", " ").startswith(f"text number {i} ")
    assert _ink(_render(fig, tmp_path)) > 0.05
    with pytest.raises(InputError, match="same pairs"):
        plot_example_pairs(pixels, texts[:3], y, pv, pt, pv)


def _curve() -> dict:
    """A small dependence curve (scoring.dependence.curve) of synthetic branches: visual weaker than text."""
    from conftest import synthetic_probs

    from emotion_fusion.scoring.dependence import curve

    def split(seed):
        rng = np.random.default_rng(seed)
        y = {"y_image": rng.integers(0, 7, 140), "y_text": rng.integers(0, 7, 160)}
        return {**y, "p_image": synthetic_probs(rng, y["y_image"], 1.0),
                "p_text_items": synthetic_probs(rng, y["y_text"], 1.5)}
    return curve(split(1), split(2), weight=0.5, R=3, rhos=(0.5, 1))


def _every_figure():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 7, 120)
    pv, pt = _probs(120, 10), _probs(120, 11)
    val = {"p_visual": pv, "p_text": pt, "y": y}
    pixels = rng.integers(0, 256, size=(120, 48, 48), dtype=np.uint8)
    texts = [f"a sentence of some length, number {i}, about how the day went" for i in range(120)]
    return {"confusions": plot_confusions(y, {"visual": pv, "text": pt, "fusion": fuse(pv, pt)}),
            "sweep": plot_sweep(sweep(val, val, n_boot=0), chosen=0.6),
            "history": plot_history({"train_loss": [2.0, 1.5], "val_loss": [1.9, 1.6], "val_acc": [0.3, 0.4]}),
            "faces": plot_face_grid(pixels, y, per_class=3),
            "pairs": plot_example_pairs(pixels, texts, y, pv, pt, fuse(pv, pt), n=4),
            "dependence": plot_dependence(_curve())}


def test_every_text_reads_at_8_pt_or_more_at_100_percent_zoom():
    """A PNG is shown one pixel per CSS pixel (96 per inch): a font of s pt drawn at d dpi shows as s*d/96 pt."""
    for name, fig in _every_figure().items():
        fig.canvas.draw()
        texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
                 if t.get_visible() and t.get_text().strip()]
        assert texts, name
        small = {t.get_text(): t.get_fontsize() * fig.dpi / 96 for t in texts
                 if t.get_fontsize() * fig.dpi / 96 < 8 - 1e-9}
        assert not small, (name, small)


def test_every_figure_has_alt_text_that_describes_it():
    figs = _every_figure()
    for name, fig in figs.items():
        assert len(repr(fig)) > 40 and not repr(fig).startswith("<Figure"), name   # Jupyter's text/plain
    assert "visual" in repr(figs["confusions"]) and "balanced accuracy" in repr(figs["confusions"])
    assert "the default pairing's own best weight" in repr(figs["sweep"]) and "default weight 0.60" in repr(figs["sweep"])
    assert repr(figs["history"]).startswith("Training curves over 2 epochs: train loss 2.000 to 1.500")
    assert all(c in repr(figs["faces"]) for c in CLASSES)
    assert repr(figs["pairs"]).startswith("4 test pairs") and "number 3" in repr(figs["pairs"])
    assert repr(figs["dependence"]).lower().startswith("fusion minus the better branch (macro-f1, points) against phi")
    assert "independent pairing at phi = " in repr(figs["dependence"])


@pytest.mark.parametrize("restore, kept", [
    (True, "best epoch 2 (its weights are kept)."),
    (False, "best epoch 2; the last epoch's weights (epoch 3) are kept, not the best's (restore_best off)."),
    (None, "best epoch 2."),      # a history that does not say: no claim
])
def test_history_alt_text_says_whose_weights_were_kept(restore, kept):
    hist = {"train_loss": [2.0, 1.5, 1.2], "val_loss": [1.9, 1.6, 1.7], "val_acc": [0.3, 0.45, 0.42], "best_epoch": 2}
    if restore is not None:
        hist.update(restore_best=restore, scored_epoch=2 if restore else 3)
    fig = plot_history(hist)
    assert repr(fig).endswith(kept)
    plt.close(fig)


def _dependence_curve(visual_signal=1.0, seed=0):
    from emotion_fusion.scoring.dependence import curve
    rng = np.random.default_rng(seed)

    def split(n):
        y, yt = rng.integers(0, 7, n), rng.integers(0, 7, n + 50)
        pv = np.eye(7)[y] * 0.9 + 0.1 / 7 if visual_signal is None else _signal(rng, y, visual_signal)
        return {"p_image": pv, "y_image": y, "p_text_items": _signal(rng, yt, 1.0), "y_text": yt}
    return curve(split(300), split(400), weight=0.5, R=3, rhos=(-0.5, 0.5, 1))


def _signal(rng, y, strength):
    z = rng.normal(size=(y.size, 7))
    z[np.arange(y.size), y] += strength
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_plot_dependence_draws_against_phi_within_class_and_leaves_out_undefined_points():
    """Review of issue 21, findings 2 and 3: the x-axis is phi within class (pooled phi carries the class
    mix); a setting whose phi is undefined is left out (it was passed to ax.plot as None)."""
    from emotion_fusion.scoring.plots import plot_dependence
    res = _dependence_curve()
    copula = [r for r in res["rows"] if r["family"] == "copula"]
    copula[0]["phi_within"] = copula[1]["phi_within"] = None      # rho = -0.5 and 0 (the independent point)
    fig = plot_dependence(res)
    first = fig.axes[0].get_lines()[1]          # [0] is the zero line; then copula at the best val weight
    assert list(first.get_xdata()) == [r["phi_within"] for r in copula if r["phi_within"] is not None]
    assert "phi within class" in fig.axes[0].get_xlabel()
    assert "independent pairing at an undefined phi (not drawn)" in repr(fig)
    assert "2 settings with undefined phi left out" in repr(fig)


def test_plot_dependence_with_phi_undefined_everywhere_is_one_clear_error():
    from emotion_fusion.scoring.plots import plot_dependence
    res = _dependence_curve(visual_signal=None)     # the visual branch is right on every face
    assert all(r["phi_within"] is None for r in res["rows"])
    with pytest.raises(InputError, match="phi within class is undefined in every setting"):
        plot_dependence(res)
