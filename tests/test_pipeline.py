"""End to end on the real data with the smoke profile: run, cached re-run, determinism, evaluate, predict."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import emotion_fusion as ef
from emotion_fusion import pipeline, runs
from emotion_fusion.branches import image
from emotion_fusion.config import Config
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError
from emotion_fusion.scoring.fusion import fuse


def _stable(results: dict) -> dict:
    """results.json without the fields that legitimately differ between two runs."""
    return {k: v for k, v in results.items() if k != "reused_cached_outputs"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, fer_path, go_path):
    out = tmp_path_factory.mktemp("smoke") / "run"
    cfg = Config.from_profile("smoke", progress=False)
    return pipeline.run(cfg, fer2013=fer_path, goemotions=go_path, out=out)


@pytest.fixture
def smoke_copy(smoke, tmp_path):
    """A private copy of the module's smoke run, for tests that re-score or rewrite it."""
    return shutil.copytree(smoke.dir, tmp_path / "copy")


@pytest.mark.data
@pytest.mark.slow
def test_run_dir_is_complete(smoke):
    d = smoke.dir
    for f in ("config.json", "results.json", "run_info.json", "manifest.json", "outputs/val.npz",
              "outputs/test.npz", "models/image.pth", "models/text_head.npz", "outputs/examples.npz"):
        assert (d / f).is_file(), f
    manifest = runs.verify(d)
    assert {"models/image.pth", "models/text_head.npz", "config.json", "run_info.json",
            "outputs/val.npz", "outputs/test.npz"} <= set(manifest["files"])
    res = json.loads((d / "results.json").read_text())
    models = {r["model"] for r in res["rows"] if r["split"] == "test"}
    assert models == {"visual", "text", "fusion", "fusion_best_val"}
    for r in res["rows"]:
        assert set(r) >= {"model", "split", "accuracy", "macro_f1", "accuracy_ci", "macro_f1_ci", "n"}
        assert r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1]
    # smoke uses random-init weights: the table must say so
    assert "RANDOM-INIT" in res["title"] and "GoEmotions dev" in res["title"]
    assert res["title"] == smoke.title == runs.read_json(d / "run_info.json")["title"]
    test = runs.load_outputs(d, "test")
    assert test["p_visual"].shape == test["p_text"].shape == (70, 7)      # 10 test faces per class
    np.testing.assert_allclose(test["p_visual"].sum(1), 1, atol=1e-5)
    assert sorted(np.bincount(test["y"], minlength=7)) == [10] * 7
    # every test text of the pool is scored once; the default pairs index into them
    assert len(test["p_text_items"]) == len(test["y_text"]) >= 70
    np.testing.assert_array_equal(test["p_text"], test["p_text_items"][test["pairs"]])
    np.testing.assert_array_equal(test["y_text"][test["pairs"]], test["y"])
    assert not smoke.reused


@pytest.mark.data
@pytest.mark.slow
def test_run_result_has_typed_fields(smoke):
    h = smoke.history
    assert h["epochs_run"] == len(h["train_loss"]) == len(h["val_loss"]) == 1 and h["best_epoch"] == 1
    assert [r["kind"] for r in smoke.text_heads["scores"]] == ["zeroshot", "probe"]     # text_head=auto
    assert 0 <= smoke.text_heads["chosen"] < 2
    assert smoke.sizes["images"]["test"] == 70 and set(smoke.sizes["texts"]) == {"train", "val", "test"}
    assert smoke.timings["total_s"] >= smoke.timings["image_branch_s"] > 0
    assert {"visual", "text"} <= set(smoke.temperatures) and all(t > 0 for t in smoke.temperatures.values())
    assert set(smoke.dropped) == {"images", "texts"}
    assert smoke.summary["fer2013"]["rows"] == {"train": 28709, "test": 3589}
    test = smoke.outputs("test")
    np.testing.assert_allclose(test["p_fused"], fuse(test["p_visual"], test["p_text"], 0.6, "linear"))
    # both candidate weights' face probabilities are kept (one epoch here: the same weights, the same arrays)
    assert h["best_epoch"] == h["scored_epoch"] == h["epochs_run"] == 1 and h["restore_best"] is True
    assert test["p_image_best"].shape == test["p_image_last"].shape == test["p_image"].shape
    np.testing.assert_array_equal(test["p_image_best"], test["p_image_last"])
    assert ef.original_epoch_bug(smoke.dir).df.shape == (4, 3)
    # the tables show the run's title (RANDOM-INIT warning included), plus how the test was scored
    assert smoke.results["title"] == smoke.title
    assert smoke.table().title.startswith(smoke.title) and smoke.table_text().splitlines()[0].startswith(smoke.title)


@pytest.mark.data
@pytest.mark.slow
def test_rerun_with_other_weight_builds_no_model(smoke, smoke_copy, count_builds, fer_path, go_path):
    again = pipeline.run(Config.from_profile("smoke", progress=False, fusion_weight=0.3),
                         fer2013=fer_path, goemotions=go_path, out=smoke_copy)
    assert count_builds == {"image": 0, "text": 0}
    assert again.reused and again.results["reused_cached_outputs"] is True
    fusion = [r for r in again.results["rows"] if r["model"] == "fusion" and r["split"] == "test"][0]
    assert fusion["weight"] == 0.3
    # the cached outputs are untouched, so the other rows are identical to the first run's
    first = {(r["model"], r["split"]): r for r in smoke.results["rows"]}
    for r in again.results["rows"]:
        if r["model"] != "fusion":
            assert r == first[(r["model"], r["split"])]
    assert runs.read_config(smoke_copy)["fusion_weight"] == 0.3    # the manifest covers the new config
    runs.verify(smoke_copy)


@pytest.mark.data
@pytest.mark.slow
def test_changed_setting_recomputes(smoke_copy, fer_path, go_path, monkeypatch):
    calls = []
    monkeypatch.setattr(image, "load_image_model",
                        lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(RuntimeError("rebuilt")))
    with pytest.raises(RuntimeError, match="rebuilt"):     # a different seed is a cache miss
        pipeline.run(Config.from_profile("smoke", progress=False, seed=1),
                     fer2013=fer_path, goemotions=go_path, out=smoke_copy)
    assert calls == [1]
    # the dir was invalidated before rebuilding: the crash leaves it incomplete, never half old, half new
    with pytest.raises(InputError, match="incomplete"):
        runs.verify(smoke_copy)


@pytest.mark.data
@pytest.mark.slow
def test_same_seed_gives_identical_results(smoke, tmp_path, fer_path, go_path):
    other = pipeline.run(Config.from_profile("smoke", progress=False), fer2013=fer_path,
                         goemotions=go_path, out=tmp_path / "again")
    a = _stable(json.loads((smoke.dir / "results.json").read_text()))
    b = _stable(json.loads((other.dir / "results.json").read_text()))
    assert a["rows"] == b["rows"] and a["title"] == b["title"] and a["best_weight"] == b["best_weight"]
    for split in ("val", "test"):
        x, y = runs.load_outputs(smoke.dir, split), runs.load_outputs(other.dir, split)
        for k in (*runs.ITEM_ARRAYS, *runs.PAIR_ARRAYS):
            np.testing.assert_array_equal(x[k], y[k])


def _check_prediction(out: dict, weight: float, rule: str = "linear") -> None:
    """Each label is its own argmax, and the fused probabilities are the run's rule at `weight`."""
    probs = {k: np.array([out[k]["probs"][c] for c in CLASSES]) for k in ("visual", "text", "fusion")}
    for k, p in probs.items():
        assert list(out[k]["probs"]) == list(CLASSES) and abs(p.sum() - 1) < 1e-4
        assert out[k]["label"] == CLASSES[int(p.argmax())]
    np.testing.assert_allclose(probs["fusion"], fuse(probs["visual"][None], probs["text"][None], weight, rule)[0],
                               atol=1e-6)
    assert out["weight"] == weight and out["rule"] == rule


@pytest.mark.data
@pytest.mark.slow
def test_evaluate_on_another_test_set(smoke, tmp_path, fer_path, go_path, make_face, make_jpeg):
    """Scores the trained branches on every FER2013 test image; the new dir serves predict too."""
    res = ef.evaluate_run(smoke.dir, fer2013=fer_path, goemotions=go_path, out=tmp_path / "eval")
    rows = {r["model"]: r for r in res.results["rows"] if r["split"] == "test"}
    # every FER2013 PublicTest image not seen in the run's training or validation data
    dropped = runs.read_json(tmp_path / "eval" / "run_info.json")["dropped_seen"]
    assert rows["visual"]["n"] == 3589 - dropped["images"] and 0 <= dropped["images"] < 100
    assert (tmp_path / "eval" / "results.json").is_file()
    assert "evaluated on FER2013 test" in res.results["title"] and "RANDOM-INIT" in res.results["title"]
    val_src, val_new = runs.load_outputs(smoke.dir, "val"), runs.load_outputs(tmp_path / "eval", "val")
    np.testing.assert_array_equal(val_src["p_text"], val_new["p_text"])     # same validation, same best weight
    extra = sorted(k for k in val_src if k.startswith(("p_image_", "p_text_items_")))
    assert "p_image_best" in extra and "p_text_items_seed_raw" in extra
    for k in extra:                                   # both epochs' faces and the other heads come along
        np.testing.assert_array_equal(val_src[k], val_new[k])
    assert ef.original_epoch_bug(tmp_path / "eval", "val").df.equals(ef.original_epoch_bug(smoke.dir, "val").df)
    with pytest.raises(InputError, match=r"was made by `evaluate`.*use split='val' here"):
        ef.original_epoch_bug(tmp_path / "eval")
    f = tmp_path / "face.jpg"
    f.write_bytes(make_jpeg(make_face(1, 3)))
    _check_prediction(ef.predict(tmp_path / "eval", image=f, text="so happy"), 0.6)


@pytest.mark.data
@pytest.mark.slow
def test_evaluating_an_older_run_recomputes_its_random_init_flag(smoke_copy, tmp_path, fer_zip, goemotions_dir):
    """A run dir from before run_info had `weights`, whose title (then) lacked the flag: evaluate judges from
    its config and image history (the text encoder is random) and writes the flag and `weights`."""
    info = runs.read_json(smoke_copy / runs.INFO)
    old = {k: v for k, v in info.items() if k != "weights"}
    old["title"] = old["title"].split(" — RANDOM-INIT")[0]
    runs.write_json(smoke_copy / runs.INFO, old)
    runs.write_manifest(smoke_copy, info["key"])
    fer = fer_zip(tmp_path / "fer.zip", per_class=2, splits=("test",))
    go = goemotions_dir(tmp_path / "go", per_class=3, splits=("test",))
    res = ef.evaluate_run(smoke_copy, fer2013=fer, goemotions=go, out=tmp_path / "eval")
    assert res.results["title"].endswith(" — RANDOM-INIT WEIGHTS")
    assert res.results["weights"] == info["weights"] and res.results["weights"]["random_init"] == ["text"]


@pytest.mark.data
@pytest.mark.slow
def test_evaluate_on_a_test_only_source(smoke, tmp_path, fer_zip, goemotions_dir):
    fer = fer_zip(tmp_path / "fer.zip", per_class=2, splits=("test",))
    go = goemotions_dir(tmp_path / "go", per_class=3, splits=("test",))
    res = ef.evaluate_run(smoke.dir, fer2013=fer, goemotions=go, out=tmp_path / "eval")
    rows = {r["model"]: r for r in res.results["rows"] if r["split"] == "test"}
    assert rows["fusion"]["n"] == 14 and "GoEmotions test" in res.results["title"]
    test = runs.load_outputs(tmp_path / "eval", "test")
    assert len(test["p_text_items"]) == 21 and len(test["p_image"]) == 14    # every text scored once


@pytest.mark.data
@pytest.mark.slow
def test_predict_reproduces_a_stored_test_pair(smoke, tmp_path):
    """predict rebuilds the same branches (random-init CLIP included) as the run that scored the pair."""
    from PIL import Image
    ex = ef.load_examples(smoke.dir)
    test = runs.load_outputs(smoke.dir, "test")
    i = int(ex["pair_index"][0])
    f = tmp_path / "face.png"                        # PNG: lossless, the very pixels that were scored
    Image.fromarray(ex["pair_pixels"][0]).save(f)
    assert str(ex["pair_texts"][0]).strip()
    out = ef.predict(smoke.dir, image=f, text=str(ex["pair_texts"][0]))
    np.testing.assert_allclose(list(out["visual"]["probs"].values()), test["p_visual"][i], atol=2e-3)
    np.testing.assert_allclose(list(out["text"]["probs"].values()), test["p_text"][i], atol=2e-3)


@pytest.mark.data
@pytest.mark.slow
def test_predict_one_pair(smoke, tmp_path, make_face, make_jpeg):
    f = tmp_path / "face.jpg"
    f.write_bytes(make_jpeg(make_face(1, 3)))
    out = ef.predict(smoke.dir, image=f, text="What a wonderful surprise party!", weight=0.5)
    _check_prediction(out, 0.5)
    default = ef.predict(smoke.dir, image=f, text="What a wonderful surprise party!")
    _check_prediction(default, 0.6)                  # the run's own weight when none is given
    assert default["visual"] == out["visual"] and default["text"] == out["text"]
    with pytest.raises(InputError, match="nope.jpg not found"):
        ef.predict(smoke.dir, image=tmp_path / "nope.jpg", text="hi")
    with pytest.raises(InputError, match="text is empty"):
        ef.predict(smoke.dir, image=f, text="   ")


def test_out_dir_inside_input_is_refused(tmp_path, fer_tree, goemotions_dir, take_snapshot):
    fer = fer_tree(tmp_path / "fer")
    go = goemotions_dir(tmp_path / "go")
    before = take_snapshot(tmp_path)
    for out in (fer / "runs", fer, go, tmp_path):      # inside an input, an input, the folder holding them
        with pytest.raises(InputError, match="would write into the input"):
            pipeline.run(Config.from_profile("smoke", progress=False), fer2013=fer, goemotions=go, out=out)
    assert take_snapshot(tmp_path) == before and not (fer / "runs").exists()


@pytest.mark.data
@pytest.mark.slow
def test_seed_protocol_pairs_by_clip_similarity(tmp_path, fer_path, go_path, capsys):
    cfg = Config.from_profile("smoke", progress=False, protocol="seed", label_map="seed", multi_label="first",
                              seed_pairs_rare=5, seed_pairs_common=10, seed_min_similarity=-1.0)  # random CLIP
    res = pipeline.run(cfg, fer2013=fer_path, goemotions=go_path, out=tmp_path / "seed")
    # at most 2 x 5 + 5 x 10 = 60 pairs, split 70/15/15; faces and texts stay aligned row by row
    n = sum(res.sizes["images"].values())
    assert 0 < n <= 60 and res.sizes["images"] == res.sizes["texts"]
    assert "seed protocol" in res.results["title"]
    # the headline scores the CLIP pairs themselves, not random re-pairings of their faces and texts
    assert res.results["draws"]["pairing"] == "fixed" and res.results["draws"]["draws"] == 1
    assert "the protocol's own pairs (fixed, not redrawn)" in res.table().title
    test = runs.load_outputs(res.dir, "test")
    assert len(test["y"]) == res.sizes["images"]["test"]
    np.testing.assert_array_equal(test["pairs"], np.arange(len(test["y"])))
    np.testing.assert_array_equal(test["y_text"], test["y_image"])

    # the CLI's table for a seed-protocol run goes on with the pairing summary, the pools next to the
    # original's, and the original's two bugs
    from emotion_fusion.cli import main
    capsys.readouterr()
    assert main(["run", "--profile", "smoke", "--fer2013", str(fer_path), "--goemotions", str(go_path),
                 "--out", str(res.dir), "--set", "protocol=seed", "label_map=seed", "multi_label=first",
                 "seed_pairs_rare=5", "seed_pairs_common=10", "seed_min_similarity=-1"]) == 0
    printed = capsys.readouterr().out
    pairing = printed.split("Pairing, per class")[1].split("Pools and pairs")[0].splitlines()
    assert pairing[1].split() == ["faces", "texts", "target", "sampled", "matched", ">=", "min", "sim", "top",
                                  "target", "words", "ok", "unique", "ok", "no", "spam", "train", "val", "test",
                                  "mean", "sim"]
    total = next(ln for ln in pairing if ln.startswith("total")).split()
    assert int(total[3]) == 2 * 5 + 5 * 10 and int(total[-3]) + int(total[-2]) + int(total[-1]) == n
    pools = printed.split("Pools and pairs")[1].split("The original's bug 1")[0].splitlines()
    assert pools[1].split() == ["faces", "faces", "(original)", "texts", "texts", "(original)", "pairs", "pairs",
                                "(original)"]
    assert next(ln for ln in pools if ln.startswith("total")).split()[-1] == "8472"   # the original's cell 25
    bug = printed.split("The original's bug 1, the raw-cosine text head, on the ")[1].split("bug 2")[0]
    assert bug.startswith(f"{res.sizes['images']['test']} test pairs")
    raw, calibrated = (ln for ln in bug.splitlines() if "fused 0.6·visual + 0.4·text" in ln)
    assert raw.split()[-1].isdigit() and calibrated.split()[-1].isdigit()   # pairs whose label fusion changed
    epochs = printed.split("The original's bug 2")[1]
    assert "best val loss (restored as intended), epoch 1" in epochs and "last epoch (the original), epoch 1" in epochs


@pytest.mark.parametrize("override, message", [
    ({}, r"ResNet-50 \(torchvision ResNet50_Weights.IMAGENET1K_V1\) weights not found"),
    ({"image_weights": None}, r"CLIP ViT-B/32 .* not found"),
])
def test_full_profile_without_weights_fails_before_reading_data(tmp_path, monkeypatch, override, message,
                                                                 goemotions_dir):
    """Offline and uncached: the run stops at once, naming the weights, before any dataset is decoded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))          # ~/.cache/clip, open_clip's url cache
    monkeypatch.setenv("EMOTION_FUSION_OFFLINE", "1")
    monkeypatch.setattr("emotion_fusion.data.load_fer2013",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("data was read")))
    with pytest.raises(InputError, match=message):
        pipeline.run(Config.from_profile("full", progress=False, **override), fer2013=tmp_path / "fer.zip",
                     goemotions=goemotions_dir(tmp_path / "go"), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
