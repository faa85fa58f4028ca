"""Config: profiles, overrides, and one-line errors for bad values."""
import pytest

from emotion_fusion.config import PROFILES, Config, load_config
from emotion_fusion.errors import InputError


def test_profiles_build_and_differ():
    cfgs = {p: Config.from_profile(p) for p in PROFILES}
    assert cfgs["full"].image_weights == "imagenet" and cfgs["full"].text_weights == "openai"
    assert cfgs["full"].image_size == 224 and cfgs["full"].text_model == "ViT-B/32"
    assert cfgs["offline"].image_weights is None and cfgs["offline"].text_model == "minilm"
    assert cfgs["smoke"].image_weights is None and cfgs["smoke"].text_weights is None
    assert cfgs["smoke"].text_model == "ViT-B/32"          # the full text-branch code path
    assert cfgs["smoke"].random_init_branches(1) == ["text"] and cfgs["full"].random_init_branches(3) == []
    assert all(c.fusion_weight == 0.6 for c in cfgs.values())


@pytest.mark.parametrize("profile, overrides, epochs, random, image", [
    # smoke: the ResNet-50 trains (1 epoch from scratch), the random CLIP encoder never does
    ("smoke", {}, 1, ["text"], "trained from scratch, 1 epoch"),
    # offline: trained from scratch and pretrained MiniLM: real, modest ability, no flag
    ("offline", {}, 2, [], "trained from scratch, 2 epochs"),
    # a random ResNet-50 that trained no step, or whose random backbone stays frozen, is used untrained
    ("offline", {}, 0, ["image"], "RANDOM-INIT (never trained)"),
    ("offline", {"image_mode": "frozen"}, 2, ["image"], "RANDOM-INIT backbone (never trained); only its head trained 2 epochs"),
    # pretrained weights are never flagged, whatever the training
    ("full", {}, 3, [], "pretrained (imagenet), fine-tuned 3 epochs"),
    # the dry run: real-format weight files declared random flag both branches, trained or not
    ("full", {"weights_declared_random": True}, 3, ["image", "text"], "RANDOM-INIT (weight files declared random)"),
])
def test_random_init_flag_only_for_untrained_or_declared_random_weights(profile, overrides, epochs, random, image):
    cfg = Config.from_profile(profile, **overrides)
    status = cfg.weights_status(epochs)
    assert cfg.random_init_branches(epochs) == status["random_init"] == random
    assert status["image"] == image
    assert status["text"].startswith("RANDOM-INIT") == ("text" in random)
    for words in status.values():    # never "untrained" beside "trained" in one phrase
        assert "untrained" not in str(words)


def test_a_random_text_encoder_is_described_without_contradiction():
    status = Config.from_profile("smoke").weights_status(1)
    assert status["text"] == "RANDOM-INIT encoder (never trained); only a head on its random features trained"


def test_weights_declared_random_is_a_checked_setting():
    assert Config().weights_declared_random is False
    assert Config.from_profile("full").with_overrides(["weights_declared_random=true"]).weights_declared_random
    with pytest.raises(InputError, match="weights_declared_random must be true or false, got 'yes'"):
        Config(weights_declared_random="yes")


@pytest.mark.parametrize("weight", [1.5, -0.1])
def test_fusion_weight_outside_unit_interval(weight):
    with pytest.raises(InputError, match=rf"fusion_weight {weight} is outside \[0, 1\]"):
        Config(fusion_weight=weight)


def test_unknown_profile_and_choice_list_valid_ones():
    with pytest.raises(InputError, match="unknown profile 'fast'; choose one of: full, offline, smoke"):
        Config.from_profile("fast")
    with pytest.raises(InputError, match="unknown fusion_rule 'max'"):
        Config(fusion_rule="max")
    with pytest.raises(InputError, match=r"unknown setting\(s\) \['epoch'\]"):
        Config.from_profile("smoke", epoch=3)


def test_set_overrides_parse_types():
    cfg = Config.from_profile("smoke").with_overrides(
        ["epochs=3", "lr=0.01", "augment=false", "image_weights=none", "text_head=probe"])
    assert (cfg.epochs, cfg.lr, cfg.augment, cfg.image_weights, cfg.text_head) == (3, 0.01, False, None, "probe")
    with pytest.raises(InputError, match="bad --set 'epochs'"):
        cfg.with_overrides(["epochs"])
    with pytest.raises(InputError, match=r"--set epochs='three': expected int"):
        cfg.with_overrides(["epochs=three"])
    with pytest.raises(InputError, match="fusion_weight 2.0 is outside"):
        cfg.with_overrides(["fusion_weight=2"])


def test_load_config_roundtrip_and_errors(tmp_path):
    import json
    cfg = Config.from_profile("offline", seed=3)
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    assert load_config(tmp_path / "config.json") == cfg
    with pytest.raises(InputError, match="missing.json not found"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json is not valid JSON"):
        load_config(tmp_path / "bad.json")


def test_seed_protocol_needs_clip_and_integers_are_checked():
    with pytest.raises(InputError, match="protocol=seed pairs faces and texts by CLIP similarity"):
        Config.from_profile("offline", protocol="seed")
    with pytest.raises(InputError, match="epochs must be an integer, got 1.5"):
        Config(epochs=1.5)
    with pytest.raises(InputError, match="seed must be >= 0"):
        Config(seed=-1)
    with pytest.raises(InputError, match="lr must be a finite number, got nan"):
        Config(lr=float("nan"))
    with pytest.raises(InputError, match="lr must be > 0"):
        Config(lr=0.0)
    with pytest.raises(InputError, match="bad --set 'profile=smoke'"):
        Config().with_overrides(["profile=smoke"])


@pytest.mark.parametrize("overrides, message", [
    (["device=tpu"], r"device 'tpu' is not one of cpu, cuda, cuda:N, mps"),
    (["device=cuda:x"], r"device 'cuda:x' is not one of"),
    (["lr=inf"], "lr must be a finite number, got inf"),
    (["weight_decay=-inf"], "weight_decay must be a finite number, got -inf"),
    (["fusion_weight=nan"], "fusion_weight must be a finite number, got nan"),
    (["augment=maybe"], r"--set augment='maybe': expected bool"),
    (["pairing_draws=0"], "pairing_draws must be a positive integer, got 0"),
])
def test_set_values_are_checked(overrides, message):
    with pytest.raises(InputError, match=message):
        Config.from_profile("smoke").with_overrides(overrides)


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:1", "mps", None])
def test_device_syntax_is_accepted_without_looking_for_the_device(device):
    assert Config(device=device).device == device     # availability is checked when a run starts


def test_new_fields_and_their_types():
    cfg = Config()
    assert (cfg.pairing_draws, cfg.skip_bad, cfg.allow_empty_classes) == (200, False, False)
    for name, bad in (("skip_bad", 1), ("allow_empty_classes", "yes"), ("progress", None)):
        with pytest.raises(InputError, match=f"{name} must be true or false, got {bad!r}"):
            Config(**{name: bad})
    with pytest.raises(InputError, match="pairing_draws must be an integer, got 2.5"):
        Config(pairing_draws=2.5)
    with pytest.raises(InputError, match="seed must be an integer, got 'x'"):
        Config(seed="x")


@pytest.mark.parametrize("content, message", [
    ("null", r"config\.json holds a JSON null, not an object of settings"),
    ("[]", r"config\.json holds a JSON array, not an object of settings"),
    ('{"seed": "x"}', r"config\.json: seed must be an integer, got 'x'"),
    ('{"lr": 1e999}', r"config\.json: lr must be a finite number, got inf"),
    ('{"device": "tpu"}', r"config\.json: device 'tpu' is not one of"),
])
def test_load_config_names_the_file(tmp_path, content, message):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(InputError, match=message + ".*re-run"):
        load_config(tmp_path / "config.json")


def test_an_older_runs_weights_are_recomputed_from_its_history():
    cfg = Config.from_profile("smoke")
    own = {"image": "x", "text": "y", "random_init": []}
    assert cfg.run_weights({"weights": own, "history": {"train_loss": []}}) is own
    assert cfg.run_weights({"history": {"train_loss": [1.9]}}) == cfg.weights_status(1)
    assert cfg.run_weights({"history": {"train_loss": []}})["random_init"] == ["image", "text"]
    assert cfg.run_weights({"title": "… RANDOM-INIT WEIGHTS"}) is None and cfg.run_weights({"history": None}) is None
