"""Issue 32, the original to the last coin: its seeded neutral draw (cell 19), its 70/15/15 split's
random_state (cell 26), both from `seed_random_state` (42 in the `seed` profile), and its fp32 image
training (`image_precision=fp32`). Each expectation is built from what the original's cells do, not from
the code path under test."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import train_test_split
from torch import nn

from emotion_fusion.branches import precision as prec
from emotion_fusion.branches import train
from emotion_fusion.branches.resnet import ImagePreprocess, predict_proba
from emotion_fusion.config import Config
from emotion_fusion.settings_table import config_table
from emotion_fusion.data.labels import CLASSES, GOEMOTIONS_LABELS, goemotions_map
from emotion_fusion.errors import InputError
from emotion_fusion.original import protocol as sp
from emotion_fusion.original import reference as ref
from emotion_fusion.original import texts as st
from emotion_fusion.original.pairing import seed_protocol_split


def go_frame(items: list[tuple[str, tuple[str, ...]]]) -> pd.DataFrame:
    rows = [("train", t, tuple(GOEMOTIONS_LABELS.index(n) for n in names), names, None, -1, f"id{i}")
            for i, (t, names) in enumerate(items)]
    return pd.DataFrame(rows, columns=["split", "text", "label_ids", "go_labels", "label", "y", "id"])


def originals_loop(go: pd.DataFrame, seed: int, ratio: float = 0.2) -> tuple[list[str], int, int]:
    """Cell 19's loop over the train rows in file order: skip by length, then for a text whose mapped
    labels are exactly {neutral} one draw of NumPy's global legacy stream, seeded once; skip it when the
    draw exceeds the ratio. Returns (kept cleaned texts, neutral candidates, neutral kept)."""
    mapping = goemotions_map("seed")
    np.random.seed(seed)
    kept, n_cand, n_kept = [], 0, 0
    for raw, names in zip(go.text, go.go_labels):
        text = st.clean_text(raw)
        if not 3 <= len(text.split()) <= 50:
            continue
        if {mapping[n] for n in names} == {"neutral"}:
            n_cand += 1
            if np.random.random() > ratio:
                continue
            n_kept += 1
        kept.append(text)
    return kept, n_cand, n_kept


@pytest.fixture
def mixed_go() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    kinds = [("joy",), ("neutral",), ("caring",), ("neutral", "desire"), ("anger", "neutral"), ("fear",)]
    items = []
    for i in range(600):
        names = kinds[int(rng.integers(len(kinds)))]
        words = int(rng.integers(1, 7))                  # 1-2 words: dropped by length before any draw
        items.append((" ".join(f"w{i}x{k}" for k in range(words)), names))
    return go_frame(items)


# ---- 1. the neutral thinning replays the original's legacy stream --------------------------------------
def test_mapped_bernoulli_replays_the_originals_legacy_stream_in_file_order(mixed_go):
    for seed in (42, 7):
        texts, n_cand, n_kept = originals_loop(mixed_go, seed)
        pool, counts = st.text_pool(mixed_go, seed)      # no neutral_seed: the run's seed seeds the stream
        assert pool.text.tolist() == texts
        assert (counts["neutral_only"], counts["neutral_only_kept"], counts["after_neutral"]) == (
            n_cand, n_kept, len(texts))
        other, _ = st.text_pool(mixed_go, 0, neutral_seed=seed)   # the stream's seed, apart from the run's
        assert other.text.tolist() == texts and counts["neutral_seed"] == seed
    assert originals_loop(mixed_go, 42)[0] != originals_loop(mixed_go, 7)[0]
    with pytest.raises(InputError, match=r"neutral_seed -1 must be an integer in \[0, 2\*\*32\)"):
        st.text_pool(mixed_go, 0, neutral_seed=-1)


@pytest.mark.data
def test_seed_profile_text_pool_gives_cell_19s_printed_counts_and_weights(go_path):
    from emotion_fusion.data import load_goemotions
    cfg = Config.from_profile("seed")
    go = load_goemotions(go_path, mapping=cfg.label_map, multi_label=cfg.multi_label)
    pool, counts = st.text_pool(go, cfg.seed, neutral_rule=cfg.neutral_rule, dominant=cfg.dominant_label,
                                neutral_seed=sp.random_state(cfg))
    assert counts["neutral_seed"] == 42 and counts["train_rows"] == 43410
    assert (counts["neutral_only"], counts["neutral_only_kept"]) == (ref.NEUTRAL_ONLY, ref.NEUTRAL_KEPT) == (13525, 2743)
    assert (counts["train_rows"] - counts["after_neutral"], counts["after_neutral"]) == (
        ref.POOL_SKIPPED, ref.POOL_FINAL) == (11825, 31585)
    labels = st.mapped_label_counts(pool)
    assert labels == ref.LABEL_COUNTS == {"angry": 5485, "disgust": 1066, "fear": 711, "happy": 15691,
                                          "neutral": 4597, "sad": 2957, "surprise": 5307}
    weights = st.seed_text_class_weights(labels)
    assert np.round(weights.astype(np.float64), 3).tolist() == [ref.TEXT_COUNT_WEIGHTS[c] for c in CLASSES]
    assert np.round(weights.astype(np.float64), 3).tolist() == [0.933, 4.8, 7.196, 0.326, 1.113, 1.73, 0.964]


# ---- 3. the split: the original's two train_test_split calls, random_state 42 -------------------------
def originals_split(labels: list[int], random_state: int) -> dict[str, list[int]]:
    """Cell 26 on a list of pairs (each a dict): 30% held out stratified, then halved stratified, the
    second call on the first's held-out list as returned."""
    pairs = [{"i": i, "emotion": c} for i, c in enumerate(labels)]
    train_p, temp = train_test_split(pairs, test_size=0.30, stratify=[p["emotion"] for p in pairs],
                                     random_state=random_state)
    val, test = train_test_split(temp, test_size=0.50, stratify=[p["emotion"] for p in temp],
                                 random_state=random_state)
    return {k: [p["i"] for p in v] for k, v in (("train", train_p), ("val", val), ("test", test))}


def test_seed_profile_splits_the_pairs_as_cell_26_did():
    y = np.repeat(np.arange(7), [ref.FINAL_PAIRS[c] for c in CLASSES])   # its 8,472 pairs, class by class
    state = Config.from_profile("seed").seed_random_state
    parts = seed_protocol_split(y, state)
    assert state == 42
    assert {k: v.tolist() for k, v in parts.items()} == originals_split(y.tolist(), 42)   # members and order
    for part, per_class in ref.SPLIT_PAIRS.items():
        assert np.bincount(y[parts[part]], minlength=7).tolist() == [per_class[c] for c in CLASSES]
    assert set(seed_protocol_split(y, 0)["val"].tolist()) != set(parts["val"].tolist())


def _fake_pairs(n_per_class: int) -> dict:
    y = np.repeat(np.arange(7), n_per_class)
    frame = pd.DataFrame({"y": y, "text": [f"t{i}" for i in range(y.size)]})
    return {"images": frame.copy(), "texts": frame, "similarity": np.ones(y.size),
            "summary": {"images": {"duplicates_dropped": 0}, "label_counts": dict(ref.LABEL_COUNTS),
                        "classes": [{"class": c} for c in CLASSES]}}


@pytest.mark.parametrize("overrides, stream, split", [({}, 42, 42), ({"seed": 3}, 42, 42),
                                                      ({"seed_random_state": 9}, 9, 9),
                                                      ({"seed": 5, "seed_random_state": None}, 5, 5)])
def test_seed_split_takes_the_stream_and_the_split_seed_from_seed_random_state(monkeypatch, overrides, stream,
                                                                                split):
    from emotion_fusion.branches import text as text_branch
    seen = {}

    def fake_seed_pairs(fer, go, embed_images, embed_texts, **kw):
        seen.update(kw)
        return _fake_pairs(20)

    monkeypatch.setattr(text_branch, "load_text_model", lambda *a, **k: (None, None))
    monkeypatch.setattr(sp, "seed_pairs", fake_seed_pairs)
    cfg = Config.from_profile("seed", progress=False, **overrides)
    out = sp.seed_split(cfg, None, None)
    assert seen["neutral_seed"] == stream and seen["seed"] == cfg.seed and seen["neutral_rule"] == "mapped_bernoulli"
    assert out["pairing_summary"]["split_random_state"] == split
    expected = seed_protocol_split(np.repeat(np.arange(7), 20), split)
    for part in ("train", "val", "test"):
        assert out["texts"][part].text.tolist() == [f"t{i}" for i in expected[part]]


# ---- the settings ---------------------------------------------------------------------------------------
def test_seed_profile_sets_the_originals_seed_and_fp32_and_full_keeps_its_own():
    seed, full = Config.from_profile("seed"), Config.from_profile("full")
    assert (seed.seed, seed.seed_random_state, seed.image_precision, seed.fast) == (0, 42, "fp32", True)
    assert (full.seed_random_state, full.image_precision) == (None, "auto")
    assert Config.from_profile("offline").image_precision == "auto"
    assert seed.with_overrides(["seed_random_state=none", "image_precision=auto"]).seed_random_state is None
    assert seed.with_overrides(["seed_random_state=7"]).seed_random_state == 7
    rows = config_table(seed.with_overrides(["seed_random_state=none"])).df["value"].to_dict()
    assert rows["changed: seed_random_state"] == "none (the run's seed) (profile: 42)"
    for bad, match in ((-1, r"seed_random_state must be in \[0, 2\*\*32\)"), (2**32, r"must be in \[0, 2\*\*32\)"),
                       (True, "seed_random_state must be an integer, got True"),
                       ("42", "seed_random_state must be an integer, got '42'")):
        with pytest.raises(InputError, match=match):
            Config.from_profile("seed", seed_random_state=bad)
    with pytest.raises(InputError, match="unknown image_precision 'fp16'; choose one of: auto, fp32"):
        Config.from_profile("seed", image_precision="fp16")


# ---- 2. precision: the seed profile's image branch never autocasts ---------------------------------------
def test_seed_profiles_precision_maps_to_no_autocast_on_cuda_and_cpu(monkeypatch):
    monkeypatch.setenv(prec.BF16_ENV, "1")              # as on a CPU with native bf16
    seed, full = Config.from_profile("seed"), Config.from_profile("full")
    assert prec.autocast_dtype("cuda", seed.fast, seed.image_precision) is None
    assert prec.autocast_dtype("cpu", seed.fast, seed.image_precision) is None
    assert prec.autocast_dtype("cuda", full.fast, full.image_precision) is torch.float16
    assert prec.autocast_dtype("cpu", full.fast, full.image_precision) is torch.bfloat16
    assert prec.precision_label("cuda", seed.fast, seed.image_precision) == "fp32 (TF32 off)"
    assert prec.precision_label("cpu", seed.fast, seed.image_precision) == "fp32"
    assert prec.precision_label("cuda", full.fast, full.image_precision) == "fp16 AMP"
    with pytest.raises(InputError, match="unknown image_precision 'bf16'"):
        prec.autocast_dtype("cuda", True, "bf16")


def test_strict_fp32_turns_tf32_off_and_puts_the_flags_back():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with prec.strict_fp32():
            assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (False, False)
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
        with prec.strict_fp32(False):
            assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


class Spy(nn.Module):
    """A linear "ResNet" (same interface) that records, per forward, whether autocast was on and
    whether cuDNN could use TF32."""
    num_classes = 7

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 7))
        self.seen = set()

    def forward(self, x):
        self.seen.add((torch.is_autocast_enabled("cpu"), torch.backends.cudnn.allow_tf32))
        return self.fc(x)


@pytest.mark.parametrize("precision, seen, label", [("fp32", {(False, False)}, "fp32"),
                                                    ("auto", {(True, True)}, "bf16 autocast")])
def test_image_training_and_prediction_follow_image_precision(make_face, monkeypatch, precision, seen, label):
    monkeypatch.setenv(prec.BF16_ENV, "1")              # `fast` would pick bf16 autocast here
    torch.backends.cudnn.allow_tf32 = True              # PyTorch's default
    x = np.stack([make_face(i, i % 7) for i in range(14)])
    y = np.arange(14) % 7
    model = Spy()
    hist = train.train_image_model(model, ImagePreprocess(32), x, y, x, y, epochs=1, batch_size=7, fast=True,
                                   augment=False, progress=False, device="cpu", precision=precision)
    assert hist["precision"] == label and model.seen == seen
    model.seen.clear()
    predict_proba(model, ImagePreprocess(32), x, fast=True, device="cpu", progress=False, precision=precision)
    assert model.seen == seen and torch.backends.cudnn.allow_tf32 is True


def test_the_image_branch_passes_the_seed_profiles_precision(make_face, monkeypatch):
    from emotion_fusion.branches.image import ImageBranch
    monkeypatch.setenv(prec.BF16_ENV, "1")
    x = np.stack([make_face(i, i % 7) for i in range(14)])
    frame = pd.DataFrame({"pixels": list(x), "y": np.arange(14) % 7})
    cfg = Config.from_profile("seed", epochs=1, augment=False, device="cpu", progress=False)
    branch = ImageBranch(cfg, Spy(), ImagePreprocess(32))
    assert branch.fit(frame, frame)["precision"] == "fp32"
    branch.model.seen.clear()
    branch.predict_proba(frame)
    assert branch.model.seen == {(False, False)}
