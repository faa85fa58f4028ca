"""End to end on the real data with the smoke profile: run, cached re-run, determinism, evaluate, predict."""
from __future__ import annotations

import json

import numpy as np
import pytest

from emotion_fusion import image, pipeline, runs, text
from emotion_fusion.config import Config
from emotion_fusion.errors import InputError




def _stable(results: dict) -> dict:
    """results.json without the fields that legitimately differ between two runs."""
    return {k: v for k, v in results.items() if k != "reused_cached_outputs"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, fer_path, go_path):
    out = tmp_path_factory.mktemp("smoke") / "run"
    cfg = Config.from_profile("smoke", progress=False)
    return pipeline.run(cfg, fer2013=fer_path, goemotions=go_path, out=out)


@pytest.mark.data
@pytest.mark.slow
def test_run_dir_is_complete(smoke):
    d = smoke.dir
    for f in ("config.json", "results.json", "run_info.json", "outputs/val.npz", "outputs/test.npz",
              "models/image.pth", "models/text_head.npz", "outputs/examples.npz"):
        assert (d / f).is_file(), f
    res = json.loads((d / "results.json").read_text())
    models = {r["model"] for r in res["rows"] if r["split"] == "test"}
    assert models == {"visual", "text", "fusion", "fusion_best_val"}
    for r in res["rows"]:
        assert set(r) >= {"model", "split", "accuracy", "macro_f1", "accuracy_ci", "macro_f1_ci", "n"}
        assert r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1]
    # smoke uses random-init weights: the table must say so
    assert "RANDOM-INIT" in res["title"] and "GoEmotions dev" in res["title"]
    test = runs.load_outputs(d, "test")
    assert test["p_visual"].shape == test["p_text"].shape == (70, 7)      # 10 test faces per class
    np.testing.assert_allclose(test["p_visual"].sum(1), 1, atol=1e-5)
    assert sorted(np.bincount(test["y"], minlength=7)) == [10] * 7
    assert not smoke.reused


@pytest.fixture
def smoke_copy(smoke, tmp_path):
    """A private copy of the module's smoke run, for tests that re-score or rewrite it."""
    import shutil
    return shutil.copytree(smoke.dir, tmp_path / "copy")


@pytest.mark.data
@pytest.mark.slow
def test_rerun_with_other_weight_builds_no_model(smoke, smoke_copy, monkeypatch, fer_path, go_path):
    calls = {"image": 0, "text": 0}

    def counting(name, fn):
        def wrapper(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapper

    monkeypatch.setattr(image, "load_image_model", counting("image", image.load_image_model))
    monkeypatch.setattr(text, "load_text_model", counting("text", text.load_text_model))
    again = pipeline.run(Config.from_profile("smoke", progress=False, fusion_weight=0.3),
                         fer2013=fer_path, goemotions=go_path, out=smoke_copy)
    assert calls == {"image": 0, "text": 0}
    assert again.reused
    fusion = [r for r in again.results["rows"] if r["model"] == "fusion" and r["split"] == "test"][0]
    assert fusion["weight"] == 0.3
    # the cached outputs are untouched, so the other rows are identical to the first run's
    first = {(r["model"], r["split"]): r for r in smoke.results["rows"]}
    for r in again.results["rows"]:
        if r["model"] != "fusion":
            assert r == first[(r["model"], r["split"])]


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
        for k in ("p_visual", "p_text", "y"):
            np.testing.assert_array_equal(x[k], y[k])


@pytest.mark.data
@pytest.mark.slow
def test_evaluate_on_another_test_set(smoke, tmp_path, fer_path, go_path):
    """Scores the trained branches on every FER2013 test image; the new dir serves predict too."""
    res = pipeline.evaluate_run(smoke.dir, fer2013=fer_path, goemotions=go_path, out=tmp_path / "eval")
    rows = {r["model"]: r for r in res.results["rows"] if r["split"] == "test"}
    assert rows["visual"]["n"] == 3589                    # every FER2013 PublicTest image
    assert (tmp_path / "eval" / "results.json").is_file()
    assert "evaluated on FER2013 test" in res.results["title"]
    val_src, val_new = runs.load_outputs(smoke.dir, "val"), runs.load_outputs(tmp_path / "eval", "val")
    np.testing.assert_array_equal(val_src["p_text"], val_new["p_text"])     # same validation, same best weight
    assert pipeline.predict(tmp_path / "eval", image=_face_file(tmp_path), text="so happy")["fusion"]["label"]


@pytest.mark.data
@pytest.mark.slow
def test_evaluate_on_a_test_only_source(smoke, tmp_path):
    from conftest import make_fer_zip, make_goemotions_dir
    fer = make_fer_zip(tmp_path / "fer.zip", per_class=2, splits=("test",))
    go = make_goemotions_dir(tmp_path / "go", per_class=3, splits=("test",))
    res = pipeline.evaluate_run(smoke.dir, fer2013=fer, goemotions=go, out=tmp_path / "eval")
    rows = {r["model"]: r for r in res.results["rows"] if r["split"] == "test"}
    assert rows["fusion"]["n"] == 14 and "GoEmotions test" in res.results["title"]


def _face_file(tmp_path):
    from conftest import face, jpeg_bytes
    f = tmp_path / "face.jpg"
    f.write_bytes(jpeg_bytes(face(1, 3)))
    return f


@pytest.mark.data
@pytest.mark.slow
def test_predict_reproduces_a_stored_test_pair(smoke, tmp_path):
    """predict rebuilds the same branches (random-init CLIP included) as the run that scored the pair."""
    from PIL import Image
    ex = pipeline.load_examples(smoke.dir)
    test = runs.load_outputs(smoke.dir, "test")
    i = int(ex["pair_index"][0])
    f = tmp_path / "face.png"                        # PNG: lossless, the very pixels that were scored
    Image.fromarray(ex["pair_pixels"][0]).save(f)
    out = pipeline.predict(smoke.dir, image=f, text=str(ex["pair_texts"][0]))
    np.testing.assert_allclose(list(out["visual"]["probs"].values()), test["p_visual"][i], atol=2e-3)
    np.testing.assert_allclose(list(out["text"]["probs"].values()), test["p_text"][i], atol=2e-3)


@pytest.mark.data
@pytest.mark.slow
def test_predict_one_pair(smoke, tmp_path):
    from conftest import face, jpeg_bytes
    f = tmp_path / "face.jpg"
    f.write_bytes(jpeg_bytes(face(1, 3)))
    out = pipeline.predict(smoke.dir, image=f, text="What a wonderful surprise party!", weight=0.5)
    for k in ("visual", "text", "fusion"):
        p = np.array(list(out[k]["probs"].values()))
        assert p.shape == (7,) and abs(p.sum() - 1) < 1e-4 and out[k]["label"] in out[k]["probs"]
    with pytest.raises(InputError, match="nope.jpg not found"):
        pipeline.predict(smoke.dir, image=tmp_path / "nope.jpg", text="hi")
    with pytest.raises(InputError, match="text is empty"):
        pipeline.predict(smoke.dir, image=f, text="   ")


@pytest.mark.data
@pytest.mark.slow
def test_out_dir_inside_input_is_refused(tmp_path, go_path, fer_path):
    from conftest import make_fer_tree
    fer = make_fer_tree(tmp_path / "fer")
    with pytest.raises(InputError, match="is inside the input"):
        pipeline.run(Config.from_profile("smoke", progress=False), fer2013=fer, goemotions=go_path,
                     out=fer / "runs")


@pytest.mark.data
@pytest.mark.slow
def test_seed_protocol_pairs_by_clip_similarity(tmp_path, fer_path, go_path):
    cfg = Config.from_profile("smoke", progress=False, protocol="seed", label_map="seed",
                              multi_label="first", seed_image_target=10, seed_text_target=20)
    res = pipeline.run(cfg, fer2013=fer_path, goemotions=go_path, out=tmp_path / "seed")
    info = res.info
    # 10 images per class in the pool -> 70/15/15 of 70 pairs
    assert sum(info["sizes"]["images"].values()) == 70
    assert info["sizes"]["images"] == info["sizes"]["texts"]
    assert "seed protocol" in res.results["title"]
    test = runs.load_outputs(res.dir, "test")
    assert len(test["y"]) == info["sizes"]["images"]["test"]




@pytest.mark.parametrize("override, message", [
    ({}, r"ResNet-50 \(torchvision ResNet50_Weights.IMAGENET1K_V1\) weights not found"),
    ({"image_weights": None}, r"CLIP ViT-B/32 .* not found"),
])
def test_full_profile_without_weights_fails_before_reading_data(tmp_path, monkeypatch, override, message):
    """Offline and uncached: the run stops at once, naming the weights, before any dataset is decoded."""
    from conftest import make_goemotions_dir
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("EMOTION_FUSION_OFFLINE", "1")
    monkeypatch.setattr("emotion_fusion.data.load_fer2013",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("data was read")))
    with pytest.raises(InputError, match=message):
        pipeline.run(Config.from_profile("full", progress=False, **override), fer2013=tmp_path / "fer.zip",
                     goemotions=make_goemotions_dir(tmp_path / "go"), out=tmp_path / "run")
