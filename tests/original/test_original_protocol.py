"""The original notebook's `seed` protocol, rule by rule, on synthetic pools with fake embeddings
(no CLIP), plus one real-data run with a random-init CLIP. The bug table: test_seedbug.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import face

from emotion_fusion.data.labels import CLASS_INDEX, CLASSES, GOEMOTIONS_LABELS
from emotion_fusion.errors import InputError
from emotion_fusion.original import augment as aug
from emotion_fusion.original import protocol as sp
from emotion_fusion.original import texts as st

D, H, F = CLASS_INDEX["disgust"], CLASS_INDEX["happy"], CLASS_INDEX["fear"]
# one GoEmotions label per canonical class that the seed map sends there ("caring": not raw neutral-only,
# so pools built with OLD = the raw_exact rule are not thinned; the original's rules: test_original_rules.py)
GO_FOR = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "joy", "neutral": "caring",
          "sad": "sadness", "surprise": "surprise"}
OLD = dict(neutral_rule="raw_exact", dominant="first_raw")   # the project's earlier text rules, still settings


def fer_frame(counts: dict[str, int], split: str = "train", start: int = 0) -> pd.DataFrame:
    rows, k = [], start
    for name, n in counts.items():
        for _ in range(n):
            px = face(k, CLASS_INDEX[name])
            rows.append((split, name, CLASS_INDEX[name], f"{split}/{name}/{k}.jpg", f"h{k}", px))
            k += 1
    return pd.DataFrame(rows, columns=["split", "label", "y", "source", "hash", "pixels"])


def go_frame(items: list[tuple[str, tuple[str, ...]]], split: str = "train") -> pd.DataFrame:
    """Rows (text, GoEmotions label names) shaped like load_goemotions' frame (label/y deliberately -1)."""
    rows = [(split, t, tuple(GOEMOTIONS_LABELS.index(n) for n in names), names, None, -1, f"id{i}")
            for i, (t, names) in enumerate(items)]
    return pd.DataFrame(rows, columns=["split", "text", "label_ids", "go_labels", "label", "y", "id"])


class FakeClip:
    """Every image embeds to one vector u; text t embeds to s_t*u + sqrt(1-s_t^2)*e_t, so the cosine of
    ANY image with text t is exactly s_t (looked up by the cleaned text). Records call sizes."""

    def __init__(self, sims: dict[str, float]):
        self.sims, self.index = sims, {t: i for i, t in enumerate(sims)}
        self.dim = len(sims) + 1
        self.calls = {"images": [], "texts": []}

    def images(self, px: np.ndarray) -> np.ndarray:
        assert px.ndim == 3 and px.shape[1:] == (48, 48) and px.dtype == np.uint8
        self.calls["images"].append(len(px))
        out = np.zeros((len(px), self.dim))
        out[:, 0] = 1.0
        return out

    def texts(self, texts: list[str]) -> np.ndarray:
        self.calls["texts"].append(len(texts))
        out = np.zeros((len(texts), self.dim))
        for r, t in enumerate(texts):
            s = self.sims[t]
            out[r, 0], out[r, 1 + self.index[t]] = s, np.sqrt(1 - s * s)
        return out


def words(k: int, tag: str) -> str:
    """A clean text of k distinct words, unique per tag."""
    return " ".join([tag] + [f"w{i}" for i in range(k - 1)])


# ---- texts ------------------------------------------------------------------------------------
def test_clean_text_rules():
    raw = "Check THIS: https://x.co/a?b=1 @bob_2   [NAME] is great!!! 😀 #yes don't www.spam.com a_b é?"
    assert st.clean_text(raw) == "check this name is great!!! yes don't a_b é?"
    assert st.clean_text("  Hello,\tWorld.  ") == "hello, world."
    assert st.clean_text("@only http://gone") == ""


def test_text_pool_old_rules_lengths_exact_neutral_share_and_first_label():
    items = [(words(3, "three"), ("joy",)), (words(50, "fifty"), ("anger",)),
             ("two words", ("joy",)), (words(51, "fiftyone"), ("joy",)),
             ("hi @bob there", ("joy",)),                              # 2 words once cleaned: dropped
             (words(5, "embar"), ("embarrassment",)),                  # seed map: disgust (ekman: sad)
             (words(5, "caring"), ("caring", "joy")),                  # first label caring -> neutral
             (words(5, "neutralfirst"), ("neutral", "joy"))]           # not neutral-ONLY: always kept
    items += [(words(4, f"neu{i}"), ("neutral",)) for i in range(50)]
    go = pd.concat([go_frame(items), go_frame([(words(5, "devtext"), ("joy",))], split="dev")], ignore_index=True)
    pool, counts = st.text_pool(go, seed=0, **OLD)
    assert counts == {"train_rows": 58, "after_length": 55, "neutral_only": 50, "neutral_only_kept": 10,
                      "after_neutral": 15, "neutral_rule": "raw_exact", "dominant_label": "first_raw"}
    assert len(pool) == 15 and (pool.split == "train").all()
    kept = set(pool.text)
    assert {words(3, "three"), words(50, "fifty")} <= kept
    assert not kept & {"two words", words(51, "fiftyone"), "hi there", words(5, "devtext")}
    by_text = dict(zip(pool.text, pool.label))
    assert by_text[words(5, "embar")] == "disgust"
    assert by_text[words(5, "caring")] == "neutral"
    assert by_text[words(5, "neutralfirst")] == "neutral"
    assert (pool.y == [CLASS_INDEX[lab] for lab in pool.label]).all()
    def neutral_only(frame):
        return sorted(t for t in frame.text if t.startswith("neu") and not t.startswith("neutralfirst"))
    assert len(neutral_only(pool)) == 10
    assert neutral_only(st.text_pool(go, seed=0, **OLD)[0]) == neutral_only(pool)
    other = neutral_only(st.text_pool(go, seed=1, **OLD)[0])
    assert len(other) == 10 and other != neutral_only(pool)
    assert pool.raw_text.iloc[0] == go.text.iloc[0]


def test_text_pool_needs_the_loader_columns():
    with pytest.raises(InputError, match=r"lacks column\(s\) \['go_labels'\]"):
        st.text_pool(pd.DataFrame({"split": ["train"], "text": ["a b c"]}), seed=0)


def test_post_pair_filters():
    ok = "one two three four"
    texts = ["one two three", ok, words(50, "x"), words(51, "y"), "a a a b b", "a a a b b b c c c c",
             "please click here now", "time to subscribe today", "we visited the zoo", "buy nowhere else ok"]
    m = st.post_pair_masks(texts)
    assert m["word_count"].tolist() == [False, True, True, False, True, True, True, True, True, True]
    assert m["unique_ratio"].tolist() == [True, True, True, True, True, False, True, True, True, True]
    assert m["spam"].tolist() == [True, True, True, True, True, True, False, False, False, False]
    for phrase in st.SPAM_PHRASES:
        assert not st.post_pair_masks([f"well {phrase} for sure"])["spam"][0]


# ---- images -----------------------------------------------------------------------------------
class RecordingRng:
    def __init__(self, value: float):
        self.value, self.asked = value, []

    def uniform(self, lo, hi):
        self.asked.append((lo, hi))
        return self.value


def test_augment_face_transforms_and_ranges():
    px = face(7, 1)
    before = px.copy()
    assert np.array_equal(aug.augment_face(px, "hflip", RecordingRng(0)), px[:, ::-1])
    from PIL import Image
    for kind, rng_value, expect_range, sign in (("rotate_neg", 15.0, (10.0, 20.0), -1),
                                                ("rotate_pos", 12.0, (10.0, 20.0), 1)):
        rng = RecordingRng(rng_value)
        out = aug.augment_face(px, kind, rng)
        assert rng.asked == [expect_range]
        assert np.array_equal(out, np.asarray(Image.fromarray(px).rotate(sign * rng_value)))
    for kind, expect_range in (("brightness", (0.7, 1.3)), ("contrast", (0.7, 1.3)), ("blur", (0.5, 1.5))):
        rng = RecordingRng(expect_range[0])
        out = aug.augment_face(px, kind, rng)
        assert rng.asked == [expect_range] and out.shape == (48, 48) and out.dtype == np.uint8
        assert not np.array_equal(out, px)
    assert aug.augment_face(px, "brightness", RecordingRng(0.7)).mean() < px.mean()
    assert aug.augment_face(px, "blur", RecordingRng(1.5)).std() < px.std()
    assert np.array_equal(px, before)
    with pytest.raises(InputError, match="unknown transform 'zoom'"):
        aug.augment_face(px, "zoom", RecordingRng(0))


def test_disgust_augmented_to_target_by_cycling_originals_unchanged():
    fer = fer_frame({"disgust": 4, "happy": 3})
    snapshot = [p.copy() for p in fer.pixels]
    out, added = aug.augment_class(fer, seed=0, target=15)
    assert added == 11 and len(out) == 18
    assert (out.y == D).sum() == 15 and (out.y == H).sum() == 3
    assert out.augmented.sum() == 11 and not out.augmented.iloc[:7].any()
    new = out[out.augmented]
    originals = fer[fer.y == D].source.tolist()
    for k, (_, row) in enumerate(new.iterrows()):
        assert row.source == f"{originals[k % 4]}#aug{k}:{aug.TRANSFORMS[k % 6]}"
        assert row.label == "disgust" and row.split == "train"
    assert np.array_equal(new.pixels.iloc[0], fer.pixels.iloc[0][:, ::-1])   # k=0: original 0, hflip
    assert new.hash.nunique() == 11 and not set(new.hash) & set(fer.hash)
    assert all(np.array_equal(a, b) for a, b in zip(fer.pixels, snapshot))    # inputs untouched
    assert "augmented" not in fer.columns
    again, _ = aug.augment_class(fer, seed=0, target=15)
    assert all(np.array_equal(a, b) for a, b in zip(again.pixels, out.pixels))
    other, _ = aug.augment_class(fer, seed=1, target=15)
    assert not all(np.array_equal(a, b) for a, b in zip(other.pixels, out.pixels))
    assert aug.augment_class(fer, seed=0, target=4)[1] == 0


def test_image_pool_train_only_dedup_and_default_target():
    train = fer_frame({"disgust": 3, "happy": 2})
    dup = train.iloc[[0]].assign(source="copy.jpg")        # same pixels and hash as row 0
    fer = pd.concat([train, dup, fer_frame({"happy": 2}, split="test", start=100)], ignore_index=True)
    pool, counts = sp.image_pool(fer, seed=0)
    assert counts == {"train_images": 6, "dedup": True, "duplicates_dropped": 1, "augmented_added": 1497,
                      "pool_images": 1502}
    assert (pool.split == "train").all() and (pool.y == D).sum() == aug.AUG_TARGET
    _, counts = sp.image_pool(fer, seed=0, dedup=False)
    assert counts["duplicates_dropped"] == 0 and counts["augmented_added"] == 1496


# ---- pairing ----------------------------------------------------------------------------------
def _class_frames(n_images: int, sims: list[float]):
    images = fer_frame({"happy": n_images})
    texts = pd.DataFrame({"text": [words(5, f"t{i}") for i in range(len(sims))], "y": H})
    return images, texts, FakeClip(dict(zip(texts.text, sims)))


@pytest.mark.parametrize("n_images, n_texts, target, n", [(10, 7, 2, 4), (10, 7, 5, 7), (3, 9, 5, 3)])
def test_pair_class_samples_twice_the_target(n_images, n_texts, target, n):
    images, texts, clip = _class_frames(n_images, [0.5] * n_texts)
    ip, tp, sims, row = sp.pair_class(images, texts, target, clip.images, clip.texts, np.random.default_rng(0))
    assert clip.calls == {"images": [n], "texts": [n]}
    assert row["sampled"] == row["matched"] == n and len(ip) == min(target, n)
    assert len(set(ip)) == len(ip) and len(set(tp)) == len(tp)


def test_pair_class_threshold_and_top_target():
    s = [0.9, 0.05, 0.1500001, 0.1499999, 0.6, -0.2, 0.3, 0.2]
    images, texts, clip = _class_frames(8, s)
    ip, tp, sims, row = sp.pair_class(images, texts, 100, clip.images, clip.texts, np.random.default_rng(0))
    assert np.allclose(sims, [0.9, 0.6, 0.3, 0.2, 0.1500001])          # all >= 0.15, best first
    assert [s[i] for i in tp] == pytest.approx(sims.tolist())
    assert row["above_threshold"] == row["kept_top_target"] == 5
    assert row["sim_matched_min"] == pytest.approx(-0.2) and row["sim_matched_max"] == pytest.approx(0.9)
    ip, tp, sims, row = sp.pair_class(images, texts, 4, clip.images, clip.texts, np.random.default_rng(0))
    assert row["sampled"] == 8                                          # 2 x 4: every text
    assert np.allclose(sims, [0.9, 0.6, 0.3, 0.2]) and row["above_threshold"] == 5 and row["kept_top_target"] == 4
    _, _, sims, _ = sp.pair_class(images, texts, 100, clip.images, clip.texts, np.random.default_rng(0),
                                  min_similarity=-1.0)
    assert len(sims) == 8


def test_pair_class_hungarian_maximises_similarity():
    """With image-specific embeddings the assignment picks the best one-to-one matching."""
    images = fer_frame({"happy": 3})
    texts = pd.DataFrame({"text": ["a b c d", "e f g h", "i j k l"], "y": H})
    img_vecs = np.eye(3)
    txt_vecs = np.array([[0.8, 0.6, 0.0], [0.0, 0.6, 0.8], [1.0, 0.0, 0.0]])   # greedy != optimal
    ip, tp, sims, _ = sp.pair_class(images, texts, 3, lambda px: img_vecs, lambda t: txt_vecs,
                                    np.random.default_rng(0), min_similarity=-1.0)
    assert dict(zip(ip.tolist(), tp.tolist())) == {0: 2, 1: 0, 2: 1}
    assert sims.sum() == pytest.approx(1.0 + 0.6 + 0.8)


def test_pair_class_checks_embeddings():
    images, texts, clip = _class_frames(4, [0.5] * 4)
    with pytest.raises(InputError, match=r"embed_images returned shape \(3, 5\) for 4 images"):
        sp.pair_class(images, texts, 2, lambda px: np.ones((3, 5)), clip.texts, np.random.default_rng(0))


def _synthetic_pool(per_class_images: int, per_class_texts: int, sims_of=lambda c, i: 0.5, extra_texts=()):
    fer = pd.concat([fer_frame({c: per_class_images for c in CLASSES}),
                     fer_frame({"happy": 5}, split="test", start=10_000)], ignore_index=True)
    items = [(words(6, f"{c}{i}"), (GO_FOR[c],)) for c in CLASSES for i in range(per_class_texts)]
    go = pd.concat([go_frame(items + list(extra_texts)),
                    go_frame([(words(6, "devonly"), ("joy",))], split="dev")], ignore_index=True)
    sims = {words(6, f"{c}{i}"): sims_of(c, i) for c in CLASSES for i in range(per_class_texts)}
    sims.update({st.clean_text(t): 0.99 for t, _ in extra_texts})
    sims[words(6, "devonly")] = 0.99
    return fer, go, FakeClip(sims)


def test_seed_pairs_targets_filters_and_summary():
    spam = [(f"best deal click here {i} now", ("joy",)) for i in range(3)] + \
           [("ha ha ha ha ha ha", ("joy",)), ("so so so so so good", ("joy",))]   # unique-word ratio 1/6, 2/6
    fer, go, clip = _synthetic_pool(12, 12, sims_of=lambda c, i: 0.10 if i < 2 else 0.5, extra_texts=spam)
    targets = sp.pair_targets(small=3, large=5)
    assert targets[D] == targets[F] == 3 and targets[H] == 5 and sum(targets.values()) == 31
    out = sp.seed_pairs(fer, go, clip.images, clip.texts, seed=0, targets=targets, aug_target=15, **OLD)
    rows = {r["class"]: r for r in out["summary"]["classes"]}
    assert rows["disgust"]["pool_images"] == 15 and rows["disgust"]["sampled"] == 6
    assert rows["happy"]["pool_texts"] == 17 and rows["happy"]["sampled"] == 10
    assert sorted(clip.calls["images"]) == sorted([6, 6] + [10] * 5)
    for name, r in rows.items():
        assert r["kept_top_target"] == min(targets[CLASS_INDEX[name]], r["above_threshold"])
        assert r["after_word_count"] >= r["after_unique_ratio"] >= r["after_spam"] == r["final"]
        assert r["sim_kept_min"] >= 0.15
    # happy: the 5 spam/repetitive texts have similarity 0.99, so they are sampled-and-kept, then filtered
    happy_texts = set(out["texts"].text[out["texts"].y == H])
    assert not any("click here" in t or t.startswith("ha ha") or t.startswith("so so") for t in happy_texts)
    assert (out["images"].y.to_numpy() == out["texts"].y.to_numpy()).all()
    assert len(out["similarity"]) == len(out["images"]) == out["summary"]["n_pairs"]
    assert (out["images"].split == "train").all() and "devonly" not in " ".join(out["texts"].text)
    assert out["summary"]["images"]["augmented_added"] == 3
    again = sp.seed_pairs(fer, go, clip.images, clip.texts, seed=0, targets=targets, aug_target=15, **OLD)
    assert again["texts"].text.tolist() == out["texts"].text.tolist()


def test_seed_pairs_counts_each_post_filter():
    bad = {"happy": [("click here to win this prize", ("joy",)), ("wow wow wow wow wow wow", ("joy",)),
                     ("very short yes", ("joy",))]}
    fer, go, clip = _synthetic_pool(4, 1, extra_texts=bad["happy"])   # one ordinary text per class (0.5)
    clip.sims["very short yes"] = 0.99
    out = sp.seed_pairs(fer, go, clip.images, clip.texts, seed=0, targets=sp.pair_targets(2, 3), aug_target=4, **OLD)
    happy = next(r for r in out["summary"]["classes"] if r["class"] == "happy")
    assert (happy["kept_top_target"], happy["after_word_count"], happy["after_unique_ratio"],
            happy["after_spam"], happy["final"]) == (3, 2, 1, 0, 0)
    assert happy["sim_kept_min"] is None


def test_no_pair_above_threshold_is_a_clear_error():
    fer, go, clip = _synthetic_pool(4, 4, sims_of=lambda c, i: 0.1)
    with pytest.raises(InputError, match=r"no match reached cosine similarity 0.15 \(best 0.1"):
        sp.seed_pairs(fer, go, clip.images, clip.texts, seed=0, targets=sp.pair_targets(2, 3), aug_target=4, **OLD)


def test_split_70_15_15_by_class_and_summary_table():
    fer, go, clip = _synthetic_pool(200, 200)
    out = sp.seed_pairs(fer, go, clip.images, clip.texts, seed=0, targets=sp.pair_targets(100, 100), **OLD,
                        aug_target=200)
    parts = sp.split_pairs(out, seed=0)
    y = out["images"].y.to_numpy()
    assert {p: len(i) for p, i in parts.items()} == {"train": 490, "val": 105, "test": 105}
    for p, share in (("train", 70), ("val", 15), ("test", 15)):
        assert np.bincount(y[parts[p]], minlength=7).tolist() == [share] * 7
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(700))
    table = sp.pairing_summary_table(out["summary"])
    assert table.index.tolist() == [*CLASSES, "total"]
    assert table.loc["total", "final"] == 700 and table.loc["total", "test"] == 105
    assert table.loc["disgust", "sampled"] == 200 and pd.isna(table.loc["total", "sim_kept_mean"])
    assert out["summary"]["split"] == {"train": 490, "val": 105, "test": 105}
    import json
    json.dumps(out["summary"])          # JSON-able as is


# ---- the real data, random-init CLIP ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.data
def test_seed_split_on_real_data_with_random_clip(fer_path, go_path):
    from emotion_fusion.config import Config
    from emotion_fusion.data import load_fer2013, load_goemotions
    fer = load_fer2013(fer_path, progress=False)
    go = load_goemotions(go_path, mapping="seed", multi_label="first")
    cfg = Config.from_profile("smoke", progress=False, protocol="seed", seed_pairs_rare=5,
                              seed_pairs_common=10, seed_min_similarity=-1.0)   # random CLIP: cosines < 0.15
    split = sp.seed_split(cfg, fer, go)
    summ = split["pairing_summary"]
    rows = {r["class"]: r for r in summ["classes"]}
    assert rows["disgust"]["pool_images"] == aug.AUG_TARGET and summ["images"]["train_images"] == 28709
    assert summ["texts"]["train_rows"] == (go.split == "train").sum()
    assert 0 < summ["texts"]["neutral_only_kept"] == round(0.2 * summ["texts"]["neutral_only"])
    assert rows["disgust"]["sampled"] == rows["fear"]["sampled"] == 10 and rows["happy"]["sampled"] == 20
    assert all(r["kept_top_target"] == r["target"] for r in rows.values())
    n = summ["n_pairs"]
    assert n == sum(r["final"] for r in rows.values()) and 0 < n <= 60
    sizes = {p: len(split["images"][p]) for p in ("train", "val", "test")}
    assert sum(sizes.values()) == n and sizes == {p: len(split["texts"][p]) for p in sizes}
    for p in sizes:
        assert (split["images"][p].y.to_numpy() == split["texts"][p].y.to_numpy()).all()
        assert (split["images"][p].split == "train").all()
    assert np.array_equal(split["pairs"]["test"], np.arange(sizes["test"]))
    assert "seed protocol" in split["test_desc"] and split["duplicates_dropped"] == summ["images"]["duplicates_dropped"]


def test_seed_config_knobs():
    from emotion_fusion.config import Config
    cfg = Config.from_profile("smoke", protocol="seed")
    assert sp.pair_targets(cfg.seed_pairs_rare, cfg.seed_pairs_common) == sp.pair_targets()
    assert cfg.seed_min_similarity == sp.MIN_SIMILARITY
    for bad in (1.5, True, "x"):
        with pytest.raises(InputError, match="seed_min_similarity .* must be a cosine in \\[-1, 1\\]"):
            Config.from_profile("smoke", seed_min_similarity=bad)
    assert Config.from_profile("smoke").with_overrides(["seed_min_similarity=-1"]).seed_min_similarity == -1.0
