"""The canonical classes and the two GoEmotions 28 -> 7 maps."""
from __future__ import annotations

import json

import pytest

from emotion_fusion.data.labels import CLASSES, GOEMOTIONS_LABELS, class_ids, goemotions_map, map_labels
from emotion_fusion.errors import InputError

# The dataset authors' ekman grouping with our class names, plus neutral.
EKMAN = {
    "angry": {"anger", "annoyance", "disapproval"},
    "disgust": {"disgust"},
    "fear": {"fear", "nervousness"},
    "happy": {"joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism", "relief",
              "pride", "admiration", "desire", "caring"},
    "neutral": {"neutral"},
    "sad": {"sadness", "disappointment", "embarrassment", "grief", "remorse"},
    "surprise": {"surprise", "realization", "confusion", "curiosity"},
}
# The original notebook's map: embarrassment -> disgust, caring/desire -> neutral differ from ekman.
SEED = {
    "angry": {"anger", "annoyance", "disapproval"},
    "disgust": {"disgust", "embarrassment"},
    "fear": {"fear", "nervousness"},
    "happy": {"admiration", "amusement", "approval", "excitement", "gratitude", "joy", "love",
              "optimism", "pride", "relief"},
    "neutral": {"neutral", "caring", "desire"},
    "sad": {"disappointment", "grief", "remorse", "sadness"},
    "surprise": {"confusion", "curiosity", "realization", "surprise"},
}


def _groups(mapping: dict[str, str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for go, canon in mapping.items():
        out.setdefault(canon, set()).add(go)
    return out


def test_classes_and_goemotions_labels():
    assert CLASSES == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert len(GOEMOTIONS_LABELS) == 28 and len(set(GOEMOTIONS_LABELS)) == 28
    assert GOEMOTIONS_LABELS[0] == "admiration" and GOEMOTIONS_LABELS[27] == "neutral"


@pytest.mark.parametrize("name, expected", [("ekman", EKMAN), ("seed", SEED)])
def test_maps_exact_membership_all_28_mapped(name, expected):
    mapping = goemotions_map(name)
    assert set(mapping) == set(GOEMOTIONS_LABELS)
    assert set(mapping.values()) == set(CLASSES)
    assert _groups(mapping) == expected


def test_ekman_json_replaces_builtin_groups_and_adds_neutral():
    authors = {"anger": sorted(EKMAN["angry"]), "disgust": ["disgust"], "fear": sorted(EKMAN["fear"]),
               "joy": sorted(EKMAN["happy"]), "sadness": sorted(EKMAN["sad"]),
               "surprise": sorted(EKMAN["surprise"])}
    assert goemotions_map("ekman", authors) == goemotions_map("ekman")
    moved = json.loads(json.dumps(authors))
    moved["joy"].remove("caring")
    moved["sadness"].append("caring")
    assert goemotions_map("ekman", moved)["caring"] == "sad"
    assert goemotions_map("seed", moved)["caring"] == "neutral"  # the seed map ignores the json


def test_bad_maps_raise():
    with pytest.raises(InputError, match=r"unknown label map 'plutchik'"):
        goemotions_map("plutchik")
    with pytest.raises(InputError, match=r"group 'trust' is not one of the 7 emotions"):
        goemotions_map("ekman", {"trust": ["admiration"]})
    with pytest.raises(InputError, match=r"names unknown GoEmotions labels \['joyy'\]"):
        goemotions_map("ekman", {"joy": ["joyy"]})
    with pytest.raises(InputError, match=r"leaves GoEmotions labels unmapped: \['admiration'"):
        goemotions_map("ekman", {"anger": ["anger"]})


def test_agree_and_first_rules():
    m = goemotions_map("ekman")
    assert map_labels(("joy", "amusement"), m, "agree") == "happy"
    assert map_labels(("joy", "sadness"), m, "agree") is None
    assert map_labels(("sadness", "joy"), m, "first") == "sad"
    assert map_labels(("joy", "sadness"), m) is None  # agree is the default
    assert map_labels((), m, "first") is None
    with pytest.raises(InputError, match=r"unknown multi-label rule 'vote'"):
        map_labels(("joy",), m, "vote")


def test_class_ids_unknown_name():
    assert class_ids(["angry", "surprise"]) == [0, 6]
    with pytest.raises(InputError, match=r"unknown emotion 'happyy'; valid: angry"):
        class_ids(["happy", "happyy"])


@pytest.mark.data
def test_real_ekman_json_equals_builtin_map(go_path):
    authors = json.loads((go_path / "ekman_mapping.json").read_text())
    assert goemotions_map("ekman", authors) == goemotions_map("ekman")
