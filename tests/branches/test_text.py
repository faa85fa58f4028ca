"""Text branch: model loading, tokenisation, truncated/bf16 encoding, zero-shot and probe heads."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from emotion_fusion.branches.encoders import _find_openai
from emotion_fusion.branches.heads import TextHead, choose_text_head, fit_probe, zero_shot_head
from emotion_fusion.branches.text import TextBranch, available_models, encode_texts, load_text_model
from emotion_fusion.config import Config
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError

TEXTS = ["hello world", "I can't believe you did that, I'm furious!!", "ok", "The meeting is at noon.",
         "so happy for you " * 30,   # longer than 77 tokens: the tokenizer cuts it, EOT stays last
         "What a joyful day, I love it", "I miss her so much, it hurts", "Wow", "meh.",
         "That is disgusting and gross, honestly the worst thing I have seen this year"]


def _encoder(model, tokenize):
    """The `encode` callable zero_shot_head takes: texts -> L2-normalised embeddings."""
    return lambda texts: encode_texts(model, tokenize, texts, progress=False)


@pytest.fixture(scope="module")
def clip():
    return load_text_model("ViT-B/32", weights=None, device="cpu")


@pytest.fixture(scope="module")
def minilm():
    return load_text_model("minilm", device="cpu")


def _full_padding_reference(model, tokenize, texts) -> np.ndarray:
    with torch.inference_mode():
        return torch.nn.functional.normalize(model.net.encode_text(tokenize(texts)), dim=-1).numpy()


def test_available_models_and_unknown_name():
    assert available_models() == ["ViT-B/32", "minilm"]
    with pytest.raises(InputError, match="unknown text model 'ViT-L/14'; available: ViT-B/32, minilm"):
        load_text_model("ViT-L/14")


@pytest.mark.slow
def test_random_clip_label_and_known_token_ids(clip):
    model, tokenize = clip
    assert model.label == "CLIP ViT-B/32 (random init)"
    ids = tokenize(["hello world"])[0]
    assert ids[:4].tolist() == [49406, 3306, 1002, 49407] and not ids[4:].any() and len(ids) == 77
    assert model.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)


@pytest.mark.slow
def test_truncated_fp32_equals_full_padding(clip):
    model, tokenize = clip
    emb = encode_texts(model, tokenize, TEXTS, batch_size=3, fast=False, progress=False)
    assert emb.shape == (len(TEXTS), 512) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, _full_padding_reference(model, tokenize, TEXTS), atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_fast_and_bf16_agree_with_fp32(clip, monkeypatch):
    model, tokenize = clip
    ref = _full_padding_reference(model, tokenize, TEXTS)
    for forced in ("1", None):    # bf16 forced on, then whatever this CPU's fast path is
        if forced:
            monkeypatch.setenv("EMOTION_FUSION_BF16", forced)
        else:
            monkeypatch.delenv("EMOTION_FUSION_BF16", raising=False)
        emb = encode_texts(model, tokenize, TEXTS, batch_size=4, fast=True, progress=False)
        assert (emb * ref).sum(axis=1).min() >= 0.999


@pytest.mark.slow
def test_empty_text_is_rejected(clip):
    model, tokenize = clip
    with pytest.raises(InputError, match="text #1 is ''"):
        encode_texts(model, tokenize, ["fine", "", "x"], progress=False)
    with pytest.raises(InputError, match="no texts"):
        encode_texts(model, tokenize, [], progress=False)


def test_missing_clip_weights_offline_fails_fast(tmp_path, monkeypatch, connection_attempts):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))           # ~/.cache/clip, open_clip's url cache
    monkeypatch.setenv("EMOTION_FUSION_OFFLINE", "1")
    import huggingface_hub  # noqa: F401  (library imports are not the lookup: they took 5-10 s on a loaded CPU)
    import open_clip  # noqa: F401
    with pytest.raises(InputError) as err:
        load_text_model("ViT-B/32", weights="openai")
    assert connection_attempts == []     # failed at once: no download was even tried
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("CLIP ViT-B/32", "open_clip_model.safetensors", "timm/vit_base_patch32_clip_224.openai",
                 str(tmp_path / "hub"), "ViT-B-32.pt", "--set text_weights=PATH"):
        assert part in msg


def test_openai_weights_found_in_the_hf_cache_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("EMOTION_FUSION_OFFLINE", "1")
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "open_clip_model.safetensors").write_bytes(b"x")
    assert _find_openai(None) == repo / "snapshots" / "abc123" / "open_clip_model.safetensors"


@pytest.mark.slow
def test_unreadable_local_clip_file_is_an_input_error(tmp_path):
    bad = tmp_path / "clip.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot load CLIP ViT-B/32 weights from .*clip.pt"):
        load_text_model("ViT-B/32", weights=bad)


def test_minilm_loads_offline_and_is_deterministic(minilm, tmp_path, monkeypatch):
    model, tokenize = minilm
    assert model.label == "MiniLM-L6 (all-MiniLM-L6-v2, bundled)" and model.logit_scale is None
    monkeypatch.setenv("HF_HOME", str(tmp_path))        # an empty cache: nothing can come from it
    again, _ = load_text_model("minilm", device="cpu")
    a = encode_texts(model, tokenize, TEXTS, progress=False)
    b = encode_texts(again, tokenize, TEXTS, progress=False)
    assert a.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert tokenize("hello world")["input_ids"][:1] == [101]


def test_minilm_progress_is_ours_not_sentence_transformers_widget(minilm, monkeypatch):
    """sentence-transformers' bar is an ipywidgets bar in a kernel (saved into the executed notebook): it stays
    off, our bar counts the batches, and the embeddings equal one plain `encode` call in the input order."""
    import emotion_fusion.branches.encoders as encoders
    model, tokenize = minilm
    texts = TEXTS + ["a much longer sentence than the others, so that the length order differs", "ok"]
    expected = model.net.encode(texts, batch_size=3, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
    flags, bars, encode = [], [], model.net.encode

    def spy_encode(*args, **kwargs):
        flags.append(kwargs.get("show_progress_bar"))
        return encode(*args, **kwargs)

    def spy_bar(iterable, desc, enabled=True, **kw):
        bars.append((len(iterable), enabled))
        return iter(iterable)
    monkeypatch.setattr(model.net, "encode", spy_encode)
    monkeypatch.setattr(encoders, "bar_iter", spy_bar)
    got = encoders._minilm_encode(model.net, tokenize, texts, 3, False, torch.device("cpu"), True)
    assert flags and set(flags) == {False}
    assert bars == [(-(-len(texts) // 3), True)]          # one bar step per batch, shown when asked
    np.testing.assert_allclose(got, expected, atol=1e-5)


def _clusters(seed: int, n: int = 210, dim: int = 32, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(7, dim))
    y = np.arange(n) % 7
    emb = centres[y] + noise * rng.normal(size=(n, dim))
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32), y


def test_probe_beats_chance_and_round_trips(tmp_path):
    (e_tr, y_tr), (e_va, y_va) = _clusters(1), _clusters(2)
    head = fit_probe(e_tr, y_tr, e_va, y_va)
    assert head.kind == "probe" and head.info["C"] in (0.01, 0.1, 1, 10)
    assert set(head.info["val_macro_f1_by_C"]) == {"0.01", "0.1", "1", "10"}
    p = head.predict_proba(e_va)
    assert p.shape == (len(y_va), 7) and (p.argmax(1) == y_va).mean() > 0.8
    path = head.save(tmp_path / "probe.npz")
    np.testing.assert_allclose(TextHead.load(path).predict_proba(e_va), p, rtol=1e-6)


@pytest.mark.slow
def test_zero_shot_uses_clip_logit_scale(clip):
    model, tokenize = clip
    head = zero_shot_head(_encoder(model, tokenize), model.logit_scale, model.label, templates=("I feel {}.",),
                          class_words={c: (c,) for c in CLASSES})
    assert head.kind == "zeroshot" and head.scale == pytest.approx(model.logit_scale)
    emb = encode_texts(model, tokenize, TEXTS, progress=False)
    p = head.predict_proba(emb)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    logits = model.logit_scale * emb @ head.W
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(p, expected / expected.sum(1, keepdims=True), rtol=1e-4)
    with pytest.raises(InputError, match="one '\\{\\}'"):
        zero_shot_head(_encoder(model, tokenize), model.logit_scale, templates=("no slot",))


def test_zero_shot_minilm_fits_its_scale_and_choose_picks_by_f1(minilm):
    model, tokenize = minilm
    with pytest.raises(InputError, match="no logit scale"):
        zero_shot_head(_encoder(model, tokenize), model.logit_scale, model.label)
    texts = ["I am furious with you", "this is revolting", "I'm terrified", "best day ever, so happy",
             "the bus leaves at nine", "I miss him and feel so down", "wow, I never saw that coming"]
    emb, y = encode_texts(model, tokenize, texts, progress=False), np.arange(7)
    zs = zero_shot_head(_encoder(model, tokenize), model.logit_scale, model.label, emb_val=emb, y_val=y)
    assert zs.info["scale_source"].startswith("fitted") and zs.scale > 1
    probe = fit_probe(emb, y, emb, y, Cs=(10,))
    best, report = choose_text_head([zs, probe], emb, y)
    scores = [r["val_macro_f1"] for r in report["scores"]]
    assert best is [zs, probe][int(np.argmax(scores))] and len(scores) == 2


def test_a_saved_head_predicts_without_torch(tmp_path):
    emb, y = _clusters(3)
    path = fit_probe(emb, y, emb, y, Cs=(1,)).save(tmp_path / "head.npz")
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\nfrom emotion_fusion.branches.heads import TextHead\n"
            f"p = TextHead.load({str(path)!r}).predict_proba(np.ones((2, 32), dtype=np.float32) / 32**0.5)\n"
            "print(p.shape, round(float(p.sum()), 4))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(2, 7) 2.0"


@pytest.mark.slow
def test_local_clip_checkpoint_round_trip(clip, tmp_path):
    model, tokenize = clip
    torch.save(model.net.state_dict(), tmp_path / "clip.pt")
    loaded, _ = load_text_model("ViT-B/32", weights=tmp_path / "clip.pt", device="cpu")
    assert loaded.label == "CLIP ViT-B/32 (file clip.pt)"
    np.testing.assert_allclose(encode_texts(loaded, tokenize, TEXTS[:3], fast=False, progress=False),
                               encode_texts(model, tokenize, TEXTS[:3], fast=False, progress=False), atol=1e-6)


def test_minilm_rejects_a_weights_file(tmp_path):
    with pytest.raises(InputError, match="cannot be used with 'minilm'"):
        load_text_model("minilm", weights=tmp_path / "x.pt")


def test_probe_with_two_classes_separates_them():
    """sklearn keeps a single row of coefficients for two classes; the head must still tell them apart."""
    rng = np.random.default_rng(0)
    y = np.repeat([1, 4], 40)
    emb = rng.normal(size=(80, 16)).astype(np.float32)
    emb[:, 0] += np.where(y == 1, 3.0, -3.0)
    head = fit_probe(emb[::2], y[::2], emb[1::2], y[1::2])
    pred = head.predict_proba(emb[1::2]).argmax(1)
    assert set(pred) == {1, 4} and (pred == y[1::2]).mean() > 0.9


def test_a_registered_encoder_is_one_entry(toy_encoder, tmp_path, goemotions_dir):
    """The toy encoder registered in conftest works everywhere a name is accepted, with no other change."""
    from emotion_fusion.data import load_goemotions
    assert available_models() == ["ViT-B/32", "minilm", "toy"]
    cfg = Config.from_profile("smoke", text_model="toy", text_weights=None, progress=False)
    assert Config.from_profile("smoke").with_overrides(["text_model=toy"]).text_model == "toy"
    assert not cfg.text_encoder_random and cfg.random_init_branches(1) == []   # "toy" is not random_init
    model, tokenize = load_text_model("toy", device="cpu")
    assert model.label == "Toy BoW (hashed bag of words)" and str(model.device) == "cpu"   # no parameters
    go = load_goemotions(goemotions_dir(tmp_path / "go", per_class=6))
    train, val, test = (go[go.split == s] for s in ("train", "dev", "test"))
    branch = TextBranch.from_config(cfg)
    scores = branch.fit(train, val)
    assert [r["kind"] for r in scores["scores"]] == ["zeroshot", "probe"]      # text_head=auto: both
    assert branch.head.kind == scores["scores"][scores["chosen"]]["kind"]
    assert branch.label.startswith("Toy BoW (hashed bag of words) + ")
    p = branch.predict_proba(test)
    assert p.shape == (len(test), 7)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(branch.predict_proba(test.text.tolist()), p, atol=1e-6)
    assert branch.save(tmp_path / "models") == tmp_path / "models" / "text_head.npz"
    np.testing.assert_allclose(TextBranch.load(tmp_path / "models", cfg).predict_proba(test), p, atol=1e-6)
    with pytest.raises(InputError, match="text branch has no head yet"):
        TextBranch.from_config(cfg).predict_proba(test)
    with pytest.raises(InputError, match=r"text_head\.npz is missing; re-run"):
        TextBranch.load(tmp_path / "none", cfg)


def test_unknown_encoder_in_a_config_lists_the_registry():
    with pytest.raises(InputError, match="unknown text_model 'toy'; choose one of: ViT-B/32, minilm"):
        Config(text_model="toy")
