"""The demo's banner says RANDOM-INIT only for branches used untrained (results.json `weights`), never for a
model trained from scratch; the banner names the random branches in the words of `Config.weights_status`."""
from __future__ import annotations

import html

import pytest

from emotion_fusion.app.demo import Demo, _Models
from emotion_fusion.config import Config
from emotion_fusion.pipeline import run_title

LABELS = {"offline": "image: ResNet-50 trained from scratch, 2 epochs, at 48px; text: MiniLM-L6 + probe head",
          "smoke": "image: ResNet-50 trained from scratch, 1 epoch, at 48px; text: CLIP ViT-B/32 (random init) "
                   "+ probe head",
          "full": "image: ResNet-50 (imagenet) → trained 1 epoch at 224px; text: CLIP ViT-B/32 (openai) + probe head"}


def _run(profile: str, epochs: int, **overrides) -> tuple[Config, dict, str]:
    """A run's config, its `weights` and the title the pipeline gives it."""
    cfg = Config.from_profile(profile, **overrides)
    weights = cfg.weights_status(epochs)
    return cfg, weights, run_title(cfg, LABELS[profile], "FER2013 test × GoEmotions dev", weights["random_init"])


def _demo(tmp_path, profile: str, epochs: int, **overrides) -> Demo:
    cfg, weights, title = _run(profile, epochs, **overrides)
    return Demo(tmp_path, _Models(tmp_path, cfg, {"title": title}, {"title": title, "weights": weights},
                                  predictor=None))


def test_a_model_trained_from_scratch_gets_no_banner(tmp_path):
    d = _demo(tmp_path, "offline", 2)
    assert d.warning() == "" and "RANDOM-INIT" not in d.header()
    assert "trained from scratch, 2 epochs" in d.header()


@pytest.mark.parametrize("profile, overrides, named, words", [
    ("smoke", {}, "text branch uses",
     "Text branch: RANDOM-INIT encoder (never trained); only a head on its random features trained."),
    ("full", {"weights_declared_random": True}, "image and text branches use",
     "Image branch: RANDOM-INIT (weight files declared random)."),
])
def test_untrained_random_branches_are_named_in_the_banner(tmp_path, profile, overrides, named, words):
    d = _demo(tmp_path, profile, 1, **overrides)
    banner = html.unescape(d.warning())
    assert "Random-init weights" in banner and f"This run's {named} random weights." in banner
    assert words in banner and "RANDOM-INIT WEIGHTS" in d.header()
    assert "untrained" not in banner


def _older_run(tmp_path, info: dict) -> Demo:
    """A run made before run_info had `weights`: the smoke title of then, which flagged any random start."""
    old_title = "smoke profile — … — RANDOM-INIT WEIGHTS (image and text branches untrained)"
    return Demo(tmp_path, _Models(tmp_path, Config.from_profile("smoke"), {"title": old_title, **info},
                                  {"title": old_title}, predictor=None))


def test_an_older_run_without_weights_is_judged_from_its_history_not_its_title(tmp_path):
    banner = html.unescape(_older_run(tmp_path, {"history": {"train_loss": [1.9]}}).warning())
    # the ResNet-50 trained an epoch: only the text branch is random, whatever the old title said
    assert "This run's text branch uses random weights." in banner and "image" not in banner.lower()
    untrained = html.unescape(_older_run(tmp_path, {"history": {"train_loss": []}}).warning())
    assert "This run's image and text branches use random weights." in untrained


def test_an_older_run_without_a_history_falls_back_to_its_title(tmp_path):
    assert "Some of this run's branches use random weights" in html.unescape(_older_run(tmp_path, {}).warning())
