"""Issue 29: each branch cached under its own key, with its per-item embeddings.

The slow tests start from one finished smoke run on small synthetic datasets (random-init ResNet-50 + the
conftest toy text encoder) and count, with spies, which branch a second run fits or encodes.
"""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from emotion_fusion import parts, pipeline, runs
from emotion_fusion.branches import image as image_mod
from emotion_fusion.branches import text as text_mod
from emotion_fusion.config import SETTING_GROUPS, Config, branch_settings, setting_group
from emotion_fusion.errors import InputError


# ---------------------------------------------------------------- which setting belongs to which branch
def test_every_setting_is_in_exactly_one_group():
    names = [f.name for f in dataclasses.fields(Config)]
    placed = [n for group in SETTING_GROUPS.values() for n in group]
    assert sorted(placed) == sorted(names), "a setting is in no group, in two, or no longer exists"
    assert {setting_group(n) for n in ("epochs", "text_head", "seed", "calibrate", "fusion_weight")} == \
        {"image", "text", "shared", "assembly", "scoring"}


def test_a_setting_in_no_group_is_an_error():
    with pytest.raises(InputError, match=r"setting 'brand_new' is in no group of groups.SETTING_GROUPS"):
        setting_group("brand_new")


def test_branch_settings_hold_their_own_and_the_shared_ones_only():
    cfg = Config.from_profile("offline")
    image, text = branch_settings(cfg, "image"), branch_settings(cfg, "text")
    assert "epochs" in image and "epochs" not in text
    assert "text_head" in text and "text_head" not in image
    assert image["seed"] == text["seed"] == 0 and "fusion_weight" not in image and "fusion_weight" not in text
    assert "calibrate" not in image and "calibrate" not in text        # assembly: neither branch refits
    # protocol=seed pairs by CLIP similarity: each branch's items depend on the text settings
    seed = Config.from_profile("seed")
    assert branch_settings(seed, "image")["text_head"] == "seed_raw"
    with pytest.raises(InputError, match="unknown branch 'audio'"):
        branch_settings(cfg, "audio")


# ---------------------------------------------------------------- runs that reuse one branch
def _cfg(**kw) -> Config:
    # fp32 (fast=False): the embedding test below re-runs the head on the stored features exactly
    settings = dict(text_model="toy", text_weights=None, progress=False, n_boot=20, pairing_draws=5,
                    weights_declared_random=True, fast=False)
    return Config.from_profile("smoke", **{**settings, **kw})


@pytest.fixture(scope="module")
def data(tmp_path_factory, fer_zip, goemotions_dir):
    root = tmp_path_factory.mktemp("data")
    return (fer_zip(root / "fer2013.zip", per_class=10),
            goemotions_dir(root / "goemotions", per_class=10, splits=("train", "dev")))


@pytest.fixture(scope="module")
def base(toy_encoder_module, data, tmp_path_factory):
    fer, go = data
    return pipeline.run(_cfg(), fer2013=fer, goemotions=go, out=tmp_path_factory.mktemp("base") / "run")


@pytest.fixture
def run_copy(base, tmp_path):
    return shutil.copytree(base.dir, tmp_path / "run")


@pytest.fixture
def spies(monkeypatch):
    """Counts ImageBranch.fit, TextBranch.fit and every text encoded (text.encode_texts)."""
    calls = {"image_fit": 0, "text_fit": 0, "texts_encoded": 0}

    def counting(owner, name, key, size=None):
        fn = getattr(owner, name)

        def wrapper(*a, **k):
            calls[key] += size(a, k) if size else 1
            return fn(*a, **k)
        monkeypatch.setattr(owner, name, wrapper)

    counting(image_mod.ImageBranch, "fit", "image_fit")
    counting(text_mod.TextBranch, "fit", "text_fit")
    counting(text_mod, "encode_texts", "texts_encoded", size=lambda a, k: len(list(a[2])))
    return calls


def _again(run_dir, data, **kw):
    fer, go = data
    return pipeline.run(_cfg(**kw), fer2013=fer, goemotions=go, out=run_dir)


@pytest.mark.slow     # trains a ResNet-50 on tiny data
def test_a_text_only_change_does_not_fit_the_image_branch(run_copy, data, spies, capsys):
    before = parts.read_branch_record(run_copy, "image")
    res = _again(run_copy, data, text_head="zeroshot", progress=True)
    assert spies["image_fit"] == 0 and spies["text_fit"] == 1
    printed = capsys.readouterr().out
    assert f"image branch: reused (trained {before['created']}, key {before['key'][:12]})" in printed
    assert "text branch: recomputed: text_head changed ('auto' -> 'zeroshot')" in printed
    cache = runs.read_json(run_copy / runs.INFO)["cache"]
    assert cache["image"]["reused"] is True and cache["text"]["reused"] is False
    assert res.results["cache"] == cache
    assert parts.read_branch_record(run_copy, "image") == before          # the image part is untouched
    assert [h["kind"] for h in res.text_heads["scores"]] == ["zeroshot"]     # the only head it built
    runs.verify(run_copy)                                                # one manifest over both parts


@pytest.mark.slow     # trains a ResNet-50 on tiny data
def test_an_image_only_change_encodes_no_text(run_copy, data, spies):
    res = _again(run_copy, data, epochs=2)
    assert spies["image_fit"] == 1 and spies["text_fit"] == 0 and spies["texts_encoded"] == 0
    assert len(res.history["train_loss"]) == 2
    cache = res.results["cache"]
    assert cache["image"]["reason"] == "epochs changed (1 -> 2)" and cache["text"]["reused"] is True


@pytest.mark.slow     # trains a ResNet-50 on tiny data
def test_an_assembly_change_refits_nothing_but_rewrites_the_outputs(run_copy, data, spies):
    before = runs.load_outputs(run_copy, "test")
    res = _again(run_copy, data, calibrate=False)
    assert spies["image_fit"] == spies["text_fit"] == spies["texts_encoded"] == 0
    after = runs.load_outputs(run_copy, "test")
    assert res.temperatures["visual"] == 1.0 and not np.allclose(before["p_image"], after["p_image"])


@pytest.mark.slow     # trains a ResNet-50 on tiny data
@pytest.mark.parametrize("change", ["seed", "dataset"])
def test_the_seed_or_a_dataset_file_recomputes_both(run_copy, data, spies, tmp_path, change):
    fer, go = data
    if change == "dataset":
        go = shutil.copytree(go, tmp_path / "goemotions2")
        tsv = go / "train.tsv"
        tsv.write_text(tsv.read_text() + "one more happy text here\t17\tzz9\n")   # 17 = joy
        res = pipeline.run(_cfg(), fer2013=fer, goemotions=go, out=run_copy)
    else:
        res = _again(run_copy, data, seed=1)
    assert spies["image_fit"] == 1 and spies["text_fit"] == 1
    reasons = {b: res.results["cache"][b]["reason"] for b in runs.BRANCHES}
    if change == "seed":
        assert reasons == {b: "seed changed (0 -> 1)" for b in runs.BRANCHES}
    else:
        assert reasons == {b: "the datasets, its weight file or the code version changed" for b in runs.BRANCHES}


@pytest.mark.slow     # trains a ResNet-50 on tiny data
def test_an_older_run_dir_is_recomputed_once_with_one_line(run_copy, data, spies, capsys):
    shutil.rmtree(run_copy / runs.BRANCH_DIR)                 # a dir made before per-branch caches
    runs.write_manifest(run_copy, "an-old-single-key")
    _again(run_copy, data, progress=True)
    printed = capsys.readouterr().out
    line = "recomputed: the run dir was made before per-branch caches (one key for both branches); recomputed once"
    assert f"image branch: {line}" in printed and f"text branch: {line}" in printed
    assert spies["image_fit"] == spies["text_fit"] == 1
    _again(run_copy, data)                                    # once: the next run reuses both
    assert spies["image_fit"] == spies["text_fit"] == 1


@pytest.mark.slow     # trains a ResNet-50 on tiny data
def test_an_edited_branch_file_is_caught_by_verify_and_recomputes_that_branch(run_copy, data, spies):
    part = run_copy / runs.BRANCH_DIR / "text_test.npz"
    a = parts.load_branch_items(run_copy, "text", "test")
    a["p"] = a["p"][:, ::-1].copy()
    with open(part, "wb") as f:
        np.savez(f, **a)
    with pytest.raises(InputError, match=r"text_test.npz changed after the run"):
        runs.verify(run_copy)
    res = _again(run_copy, data)
    assert spies["image_fit"] == 0 and spies["text_fit"] == 1
    assert res.results["cache"]["text"]["reason"] == "its cached part is damaged or was changed after it was written"
    runs.verify(run_copy)


@pytest.mark.slow     # trains a ResNet-50 on tiny data
def test_an_interrupted_recomputation_leaves_the_dir_incomplete_not_mixed(run_copy, data, monkeypatch):
    def interrupted(self, train, val):
        raise KeyboardInterrupt
    with monkeypatch.context() as m:
        m.setattr(text_mod.TextBranch, "fit", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _again(run_copy, data, text_head="zeroshot")
    with pytest.raises(InputError, match="is incomplete"):
        runs.load_outputs(run_copy, "test")
    assert parts.read_branch_record(run_copy, "text") is None          # no record vouches for a half part
    assert parts.read_branch_record(run_copy, "image") is not None     # the image part survives
    res = _again(run_copy, data, text_head="zeroshot")
    assert res.results["cache"]["image"]["reused"] is True and res.results["cache"]["text"]["reused"] is False
    runs.verify(run_copy)


@pytest.mark.slow     # trains a ResNet-50 on tiny data
def test_embeddings_are_what_each_head_classifies(base, toy_encoder_module):
    emb = parts.load_embeddings(base.dir, "test")
    out = runs.load_outputs(base.dir, "test")
    assert emb["image"].dtype == emb["text"].dtype == np.float16
    assert emb["image"].shape == (len(out["p_image"]), 2048)
    assert np.array_equal(emb["y_image"], out["y_image"]) and np.array_equal(emb["y_text"], out["y_text"])
    # the text embedding is the toy encoder's L2-normalised sentence vector of each test text, in order
    model, tokenize = text_mod.load_text_model("toy", weights=None)
    texts = [t for t in np.load(base.dir / "outputs" / "examples.npz")["pair_texts"]]
    idx = np.load(base.dir / "outputs" / "examples.npz")["pair_index"]
    pairs = out["pairs"][idx]
    want = text_mod.encode_texts(model, tokenize, texts, progress=False)
    assert np.allclose(emb["text"][pairs].astype(np.float32), want, atol=2e-3)
    # the image embedding is the pooled feature under the head: re-running the head on it gives p_image
    net, _ = image_mod.load_image_model(str(base.dir / "models" / image_mod.MODEL_FILE))
    import torch
    with torch.no_grad():
        logits = net.fc.eval()(torch.from_numpy(emb["image"].astype(np.float32)))
    raw = parts.load_branch_items(base.dir, "image", "test")["p"]
    assert np.abs(torch.softmax(logits, 1).numpy() - raw).max() < 2e-3
    shuffled = net.fc(torch.from_numpy(emb["image"][::-1].astype(np.float32))).softmax(1).detach().numpy()
    assert np.abs(shuffled - raw).max() > 10 * np.abs(torch.softmax(logits, 1).numpy() - raw).max()


def test_load_embeddings_of_a_dir_without_them_says_what_to_do(run_dir):
    with pytest.raises(InputError, match=r"has no cached image embeddings for 'test'.*re-run"):
        parts.load_embeddings(run_dir, "test")
