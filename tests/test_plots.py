"""plots: every function returns a Figure with the expected panels; bad input is refused."""
import matplotlib

matplotlib.use("Agg")  # tests only; the library never selects a backend

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from emotion_fusion.errors import InputError  # noqa: E402
from emotion_fusion.fusion import fuse, sweep  # noqa: E402
from emotion_fusion.plots import (plot_confusions, plot_example_pairs, plot_face_grid,  # noqa: E402
                                  plot_history, plot_sweep)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _probs(n, seed):
    e = np.exp(np.random.default_rng(seed).normal(size=(n, 7)))
    return e / e.sum(axis=1, keepdims=True)


def _png_ok(fig, tmp_path):
    path = tmp_path / "fig.png"
    fig.savefig(path)
    return path.stat().st_size > 1000


def test_plot_confusions_one_panel_per_model(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 100)
    preds = {"visual": rng.integers(0, 7, 100), "text": _probs(100, 1), "fusion": y}
    fig = plot_confusions(y, preds)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert [a.get_title() for a in fig.axes] == ["visual", "text", "fusion"]
    assert fig.axes[0].get_yticklabels()[0].get_text() == "angry"
    assert _png_ok(plot_confusions(y, {"v": y}, normalize=False), tmp_path)
    with pytest.raises(InputError, match="at least one model"):
        plot_confusions(y, {})


def test_plot_sweep_marks_best_and_chosen(tmp_path):
    y = np.random.default_rng(2).integers(0, 7, 200)
    val = {"p_visual": _probs(200, 3), "p_text": _probs(200, 4), "y": y}
    sw = sweep(val, val, n_boot=50)
    fig = plot_sweep(sw, chosen=0.3)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 4  # val, test, best, chosen
    assert _png_ok(fig, tmp_path)
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
    assert _png_ok(fig, tmp_path)
    with pytest.raises(InputError, match=r"training history lacks \['val_acc'\]"):
        plot_history({"train_loss": [1], "val_loss": [1]})


def test_plot_face_grid(tmp_path):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(60, 48, 48), dtype=np.uint8)
    y = np.r_[np.repeat(np.arange(7), 8), [0, 1, 2, 3]]
    fig = plot_face_grid(pixels, y, per_class=4)
    assert isinstance(fig, Figure) and len(fig.axes) == 7 * 4
    assert sum(len(a.images) for a in fig.axes) == 28
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
    assert _png_ok(fig, tmp_path)
    with pytest.raises(InputError, match="same pairs"):
        plot_example_pairs(pixels, texts[:3], y, pv, pt, pv)
