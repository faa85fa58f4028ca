"""The demo's banner says RANDOM-INIT only for branches used untrained (results.json `weights`), never for a
model trained from scratch; the banner names the random branches."""
from __future__ import annotations

import html

import pytest

from emotion_fusion.app.demo import Demo, _Models
from emotion_fusion.config import Config

OFFLINE_TITLE = ("offline profile — image: ResNet-50 trained from scratch, 2 epochs, at 48px; text: MiniLM-L6 "
                 "+ probe head — test = FER2013 test × GoEmotions dev")
SMOKE_TITLE = ("smoke profile — image: ResNet-50 trained from scratch, 1 epoch, at 48px; text: CLIP ViT-B/32 "
               "(random init) + probe head — test = FER2013 test × GoEmotions dev — RANDOM-INIT WEIGHTS (text "
               "branch untrained: numbers show the mechanism, not the models' ability)")


def _demo(tmp_path, profile: str, title: str, epochs: int, **overrides) -> Demo:
    cfg = Config.from_profile(profile, **overrides)
    results = {"title": title, "weights": cfg.weights_status(epochs)}
    return Demo(tmp_path, _Models(tmp_path, cfg, {"title": title}, results, predictor=None))


def test_a_model_trained_from_scratch_gets_no_banner(tmp_path):
    d = _demo(tmp_path, "offline", OFFLINE_TITLE, 2)
    assert d.warning() == "" and "trained from scratch, 2 epochs" in d.header()


@pytest.mark.parametrize("profile, title, overrides, named", [
    ("smoke", SMOKE_TITLE, {}, "text branch uses"),
    ("full", "full profile — RANDOM-INIT WEIGHTS (weight files declared random: …)",
     {"weights_declared_random": True}, "image and text branches use"),
])
def test_untrained_random_branches_are_named_in_the_banner(tmp_path, profile, title, overrides, named):
    banner = html.unescape(_demo(tmp_path, profile, title, 1, **overrides).warning())
    assert "Random-init weights" in banner and f"This run's {named} random weights" in banner


def test_an_older_run_without_weights_falls_back_to_its_title(tmp_path):
    d = Demo(tmp_path, _Models(tmp_path, Config.from_profile("smoke"), {"title": SMOKE_TITLE},
                               {"title": SMOKE_TITLE}, predictor=None))
    assert "Some of this run's branches use random weights" in html.unescape(d.warning())
