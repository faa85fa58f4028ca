"""Image branch: building, weights lookup, preprocessing, training, prediction, checkpoints."""
from __future__ import annotations

import copy
import socket

import numpy as np
import pytest
import torch
import torchvision

from emotion_fusion.branches import train
from emotion_fusion.branches.image import (
    ImageBranch,
    ImagePreprocess,
    load_image_model,
    predict_proba,
    save_image_model,
)
from emotion_fusion.branches.train import train_image_model
from emotion_fusion.branches.weights import is_online
from emotion_fusion.config import Config
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError


@pytest.fixture(scope="module")
def tiny(make_face):
    """A random-init model at 32 px (fast on CPU) and 4 synthetic faces per class."""
    x = np.stack([make_face(i, i % 7) for i in range(28)])
    y = np.arange(28) % 7
    return load_image_model(None, image_size=32, device="cpu"), x, y


def _weighted_ce(model, pp, x, y) -> float:
    p = predict_proba(model, pp, x, fast=False, progress=False)
    w = len(y) / (7 * np.bincount(y, minlength=7))
    return float(np.sum(w[y] * -np.log(p[np.arange(len(y)), y])) / np.sum(w[y]))


@pytest.mark.slow
def test_random_init_shapes_and_probabilities(tiny):
    (model, pp), x, _ = tiny
    assert model.weights_label == "random init"
    assert pp(x[0]).shape == (1, 3, 32, 32) and pp(x).dtype == torch.float32
    p = predict_proba(model, pp, x[:5], progress=False)
    assert p.shape == (5, len(CLASSES)) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_preprocess_normalises_like_imagenet():
    pp = ImagePreprocess(48)
    out = pp(np.full((2, 48, 48), 255, dtype=np.uint8))
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out[0, :, 0, 0], expected)
    with pytest.raises(InputError, match="uint8"):
        pp(np.zeros((2, 48, 48), dtype=np.float32))


@pytest.mark.slow
def test_unknown_weights_name_lists_choices():
    with pytest.raises(InputError, match="'imagenet', 'imagenet_v2'.*None"):
        load_image_model("imagenet1k")


@pytest.mark.slow
def test_missing_weights_offline_fails_fast_with_a_useful_line(tmp_path, monkeypatch, connection_attempts):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("EMOTION_FUSION_OFFLINE", "1")
    with pytest.raises(InputError) as err:
        load_image_model("imagenet")
    assert connection_attempts == []     # failed at once: no download was even tried
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("ResNet-50", "IMAGENET1K_V1", "resnet50-0676ba61.pth", str(tmp_path / "hub" / "checkpoints"),
                 "https://download.pytorch.org/models/resnet50-0676ba61.pth", "weights=<path.pth>",
                 "--set image_weights=PATH"):
        assert part in msg


def test_probe_gives_up_on_a_hanging_network(monkeypatch):
    monkeypatch.delenv("EMOTION_FUSION_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import threading
    release = threading.Event()

    gave_up = threading.Event()

    def hanging(*a, **k):          # a connection that answers after a minute (or when the test lets it go)
        release.wait(60)
        gave_up.set()
        raise OSError("connection abandoned")
    monkeypatch.setattr(socket, "create_connection", hanging)
    try:
        assert is_online("https://example.invalid/file.pth", timeout=1.0) is False
        # it answered while the connection was still pending: it gave up instead of waiting for it
        assert not gave_up.is_set()
    finally:
        release.set()              # end the probe thread cleanly instead of leaving it to a later test


@pytest.mark.slow
def test_cached_hub_weights_load_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("EMOTION_FUSION_OFFLINE", "1")
    ref = torchvision.models.resnet50().state_dict()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(ref, tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth")
    model, _ = load_image_model("imagenet", image_size=64)
    assert model.weights_label == "ImageNet IMAGENET1K_V1"
    torch.testing.assert_close(model.conv1.weight, ref["conv1.weight"])
    assert model.fc[-1].out_features == 7


@pytest.mark.slow
def test_plain_state_dict_file_loads_backbone_only(tmp_path):
    ref = torchvision.models.resnet50().state_dict()
    torch.save(ref, tmp_path / "resnet.pth")
    model, _ = load_image_model(tmp_path / "resnet.pth")
    assert model.weights_label == "file resnet.pth"
    torch.testing.assert_close(model.layer4[2].conv3.weight, ref["layer4.2.conv3.weight"])
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(InputError, match="bad.pth"):
        load_image_model(tmp_path / "bad.pth")
    with pytest.raises(InputError, match="does not exist"):
        load_image_model(tmp_path / "absent.pth")


@pytest.mark.slow
def test_save_load_round_trip(tmp_path, tiny):
    (model, pp), x, _ = tiny
    path = save_image_model(model, tmp_path / "ckpt" / "image.pth", epochs=3)
    loaded, pp2 = load_image_model(path, image_size=224)       # the checkpoint's size wins
    assert pp2.image_size == 32 and loaded.checkpoint_meta == {"epochs": 3}
    assert loaded.weights_label == "file image.pth (from random init)"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)
    np.testing.assert_array_equal(predict_proba(model, pp, x, fast=False, progress=False),
                                  predict_proba(loaded, pp2, x, fast=False, progress=False))


@pytest.mark.slow
def test_frozen_mode_trains_only_the_head(tiny):
    (model, pp), x, y = tiny
    model = copy.deepcopy(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hist = train_image_model(model, pp, x, y, x[:7], y[:7], epochs=1, batch_size=14, lr=1e-2,
                             mode="frozen", progress=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("fc.") for k in changed)    # BN statistics included
    assert hist["mode"] == "frozen" and len(hist["train_loss"]) == 1


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed(tiny):
    (model, pp), x, y = tiny
    runs = []
    for _ in range(2):
        m = copy.deepcopy(model)
        hist = train_image_model(m, pp, x, y, x[:7], y[:7], epochs=1, batch_size=14, seed=3, progress=False)
        runs.append((hist["train_loss"], m.fc[1].weight.detach().clone()))
    assert runs[0][0] == runs[1][0]
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=0, atol=0)


@pytest.mark.slow
def test_training_rejects_bad_input(tiny):
    (model, pp), x, y = tiny
    with pytest.raises(InputError, match="unknown training mode 'linear'"):
        train_image_model(model, pp, x, y, x, y, mode="linear")
    with pytest.raises(InputError, match="labels must be ints in 0..6"):
        train_image_model(model, pp, x, y + 7, x, y)


def _fer_subset(fer_path, per_class: int):
    """The first `per_class` train faces per class, read by the package's own loader."""
    from emotion_fusion.data import load_fer2013, stack_pixels
    fer = load_fer2013(fer_path, splits=["train"], progress=False)
    sub = fer.groupby("y", sort=True).head(per_class)
    return stack_pixels(sub), sub.y.to_numpy()


@pytest.mark.data
@pytest.mark.slow
def test_short_training_on_real_faces_lowers_the_loss(fer_path):
    x, y = _fer_subset(fer_path, 20)
    assert x.shape == (140, 48, 48) and x.dtype == np.uint8
    model, pp = load_image_model(None, image_size=48, device="cpu")
    loss_before = _weighted_ce(model, pp, x, y)
    hist = train_image_model(model, pp, x, y, x[::5], y[::5], epochs=2, batch_size=35, lr=1e-3,
                             augment=False, progress=False)
    assert _weighted_ce(model, pp, x, y) < loss_before
    assert hist["img_per_s"] > 0 and hist["precision"] in ("fp32", "bf16 autocast")
    assert set(hist) >= {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "best_epoch"}


@pytest.mark.slow
def test_tta_averages_the_face_and_its_mirror(make_face):
    model, pre = load_image_model(weights=None, image_size=48, seed=0)
    x = np.stack([make_face(i, i) for i in range(4)])
    plain = predict_proba(model, pre, x, progress=False)
    mirror = predict_proba(model, pre, x[:, :, ::-1].copy(), progress=False)
    tta = predict_proba(model, pre, x, progress=False, tta=True)
    np.testing.assert_allclose(tta, (plain + mirror) / 2, atol=1e-6)
    np.testing.assert_allclose(tta.sum(1), 1, atol=1e-5)
    assert not np.allclose(plain, mirror)          # the mirror really is a second view


@pytest.mark.slow
def test_diverged_training_is_a_clear_error(monkeypatch, make_face):
    model, pre = load_image_model(weights=None, image_size=32, seed=0)
    x = np.stack([make_face(i, i % 7) for i in range(14)])
    y = np.arange(14) % 7
    monkeypatch.setattr(train, "_evaluate", lambda *a, **k: (float("nan"), 0.0))
    with pytest.raises(InputError, match="training diverged: validation loss nan .* lower the learning rate"):
        train_image_model(model, pre, x, y, x, y, epochs=1, batch_size=7, progress=False)


@pytest.mark.slow
def test_image_branch_protocol_round_trip(tmp_path, fer_tree):
    """from_config -> fit -> predict_proba -> save -> load gives the same probabilities (a DataFrame from
    load_fer2013 or a pixel array alike)."""
    from emotion_fusion.data import load_fer2013, stack_pixels
    fer = load_fer2013(fer_tree(tmp_path / "fer", per_class=3), progress=False)
    train_df, test_df = fer[fer.split == "train"], fer[fer.split == "test"]
    cfg = Config.from_profile("smoke", image_size=32, batch_size=7, progress=False, device="cpu")
    branch = ImageBranch.from_config(cfg)
    hist = branch.fit(train_df, test_df)
    assert hist["epochs_run"] == 1 and branch.history is hist
    assert branch.label == "ResNet-50 trained from scratch, 1 epoch, at 32px"   # trained, so not RANDOM-INIT
    p = branch.predict_proba(test_df)
    assert p.shape == (21, 7) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(branch.predict_proba(stack_pixels(test_df)), p)
    path = branch.save(tmp_path / "models")
    assert path == tmp_path / "models" / "image.pth"
    loaded = ImageBranch.load(tmp_path / "models", cfg)
    np.testing.assert_allclose(loaded.predict_proba(test_df), p, atol=1e-6)
    with pytest.raises(InputError, match=r"image\.pth is missing; re-run"):
        ImageBranch.load(tmp_path / "nothing", cfg)


@pytest.mark.parametrize("mode, words", [("finetune", "ResNet-50 trained from scratch, 2 epochs, at 48px"),
                                         ("frozen", "ResNet-50 random init, frozen; head trained 2 epochs, at 48px")])
def test_the_label_of_a_random_init_resnet_says_what_was_trained(mode, words):
    """A frozen random backbone under a trained head is not "trained from scratch" (its title says RANDOM-INIT)."""
    from types import SimpleNamespace

    from emotion_fusion.config import Config
    net = torch.nn.Linear(1, 1)
    net.weights_label = "random init"
    cfg = Config.from_profile("offline", image_mode=mode)
    branch = ImageBranch(cfg, net, SimpleNamespace(image_size=48), {"train_loss": [1.9, 1.7]})
    assert branch.label == words
    assert ("image" in cfg.random_init_branches(2)) == (mode == "frozen")
