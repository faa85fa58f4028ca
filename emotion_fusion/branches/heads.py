"""Text heads on L2-normalised sentence embeddings, numpy only (a saved head scores without torch).

    head = zero_shot_head(encode, logit_scale)         # prompt ensemble; CLIP's own logit scale
    head = fit_probe(emb_tr, y_tr, emb_va, y_va)        # logistic regression, C chosen on validation
    head, scores = choose_text_head([h1, h2], emb_va, y_va)
    p = head.predict_proba(emb)                         # (N, 7), canonical order
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.special import softmax

from emotion_fusion.data.files import atomic_write
from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError
from emotion_fusion.scoring.metrics import macro_f1

# --- defaults -------------------------------------------------------------------------------------
DEFAULT_TEMPLATES = ("I feel {}.", "I am so {}.", "This text sounds {}.", "The writer is {}.",
                     "Someone who is {} wrote this.")
CLASS_WORDS = {   # several words per class: the ensemble is less sensitive to any one word
    "angry": ("angry", "furious", "annoyed", "irritated"),
    "disgust": ("disgusted", "grossed out", "repulsed", "revolted"),
    "fear": ("afraid", "scared", "frightened", "nervous"),
    "happy": ("happy", "joyful", "glad", "delighted"),
    "neutral": ("neutral", "calm", "indifferent", "matter-of-fact"),
    "sad": ("sad", "unhappy", "heartbroken", "disappointed"),
    "surprise": ("surprised", "amazed", "astonished", "shocked"),
}
# The original's prompt words (cell 31: "a person feeling {anger, ..., happiness, ..., sadness, ...}"), nouns
# where three of our class names are adjectives; canonical class order.
ORIGINAL_PROMPT_WORDS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
PROBE_CS = (0.01, 0.1, 1, 10)
SCALE_LOG_T_BOUNDS = (-7.0, 3.0)   # a fitted logit scale lies in [0.05, ~1100]


def zero_shot_head(encode: Callable[[list[str]], np.ndarray], logit_scale: float | None, label: str = "",
                   templates=DEFAULT_TEMPLATES, class_words=CLASS_WORDS, *, emb_val=None,
                   y_val=None) -> "TextHead":
    """A prompt-ensemble zero-shot head: per class, the mean of the templates x words embeddings.

    logits = logit_scale x cosine: CLIP's own `logit_scale.exp()` (calibrated, unlike the original's
    softmax over raw cosines). An encoder without one (MiniLM) fits the scale on (emb_val, y_val) by NLL.
    """
    prompts = _class_prompts(templates, class_words)
    flat = [p for c in CLASSES for p in prompts[c]]
    emb = np.asarray(encode(flat), dtype=np.float32)
    W = np.zeros((emb.shape[1], len(CLASSES)), dtype=np.float32)
    start = 0
    for j, c in enumerate(CLASSES):
        mean = emb[start:start + len(prompts[c])].mean(axis=0)
        W[:, j] = mean / np.linalg.norm(mean)
        start += len(prompts[c])
    info = {"model": label, "n_prompts": len(flat), "templates": list(templates)}
    if logit_scale is not None:
        scale = logit_scale
        info["scale_source"] = "the encoder's logit scale"
    elif emb_val is not None and y_val is not None:
        from emotion_fusion.scoring.fusion import fit_temperature
        cos = np.asarray(emb_val, dtype=np.float32) @ W
        # softmax(log softmax(cos) / T) = softmax(cos / T): the scale is 1 / T of the one NLL fit
        scale = 1.0 / fit_temperature(softmax(cos, axis=1), np.asarray(y_val), log_bounds=SCALE_LOG_T_BOUNDS)
        info["scale_source"] = "fitted on validation (NLL)"
    else:
        raise InputError(f"{label or 'this encoder'} has no logit scale: pass emb_val= and y_val= to fit one")
    return TextHead("zeroshot", W, np.zeros(len(CLASSES), dtype=np.float32), float(scale), info)


@dataclass
class TextHead:
    """A linear head on L2-normalised embeddings: probs = softmax(scale * emb @ W + b), (N, 7)."""

    kind: str                # "zeroshot" or "probe"
    W: np.ndarray            # (D, 7), columns in canonical class order
    b: np.ndarray            # (7,)
    scale: float = 1.0
    info: dict = field(default_factory=dict)

    def predict_proba(self, emb) -> np.ndarray:
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.W.shape[0]:
            raise InputError(f"{self.kind} head expects (N, {self.W.shape[0]}) embeddings, got {emb.shape}; "
                             f"encode with the model the head was built for ({self.info.get('model', '?')})")
        return softmax(self.scale * (emb @ self.W) + self.b, axis=1)

    def save(self, path: str | os.PathLike) -> Path:
        """One .npz (arrays + JSON-encoded kind/scale/info)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"kind": self.kind, "scale": self.scale, "info": self.info, "classes": list(CLASSES)})
        with atomic_write(path) as f:   # a file object: numpy must not append ".npz" to the name
            np.savez(f, W=self.W, b=self.b, meta=np.array(meta))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TextHead":
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                W, b = z["W"], z["b"]
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"cannot read text head {path}: {type(e).__name__}; give a file written by "
                             f"TextHead.save") from None
        if meta.get("classes") != list(CLASSES):
            raise InputError(f"text head {path} has classes {meta.get('classes')}, expected {list(CLASSES)}")
        return cls(meta["kind"], W, b, float(meta["scale"]), meta["info"])


def _class_prompts(templates, class_words) -> dict[str, list[str]]:
    if set(class_words) != set(CLASSES):
        raise InputError(f"class_words must have exactly the keys {', '.join(CLASSES)}; got {sorted(class_words)}")
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise InputError(f"templates must each contain one '{{}}' for the class word; bad: {bad or 'none given'}")
    return {c: [t.format(w) for t in templates for w in class_words[c]] for c in CLASSES}


def fit_probe(emb_train, y_train, emb_val, y_val, Cs=PROBE_CS, class_weight="balanced",
              seed: int = 0) -> TextHead:
    """Logistic-regression probe; C chosen by validation macro-F1 (ties: the smaller C)."""
    from sklearn.linear_model import LogisticRegression

    emb_train, emb_val = np.asarray(emb_train, dtype=np.float32), np.asarray(emb_val, dtype=np.float32)
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    if len(emb_train) != len(y_train) or len(emb_val) != len(y_val) or len(y_train) == 0 or len(y_val) == 0:
        raise InputError(f"fit_probe: {len(emb_train)}/{len(y_train)} train and {len(emb_val)}/{len(y_val)} "
                         f"val embeddings/labels; give one label per embedding, both non-empty")
    if len(np.unique(y_train)) < 2:
        raise InputError("fit_probe: the training labels hold a single class; a probe needs at least two")
    scores, best = {}, None
    for C in Cs:
        clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=2000, random_state=seed)
        clf.fit(emb_train, y_train)
        f1 = macro_f1(y_val, clf.predict(emb_val))
        scores[str(C)] = float(f1)
        if best is None or f1 > best[0]:
            best = (f1, C, clf)
    _, C, clf = best
    W = np.zeros((emb_train.shape[1], len(CLASSES)), dtype=np.float32)
    # a class absent from training gets probability 0 (bias -inf) rather than a made-up score
    b = np.full(len(CLASSES), -np.inf, dtype=np.float32)
    if len(clf.classes_) == 2:    # sklearn keeps one row for two classes: logit(second) - logit(first)
        W[:, clf.classes_[1]], b[clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
        b[clf.classes_[0]] = 0.0
    else:
        W[:, clf.classes_] = clf.coef_.T
        b[clf.classes_] = clf.intercept_
    missing = sorted(set(range(len(CLASSES))) - set(clf.classes_.tolist()))
    info = {"C": C, "val_macro_f1_by_C": scores, "class_weight": class_weight,
            "missing_classes": [CLASSES[i] for i in missing]}
    return TextHead("probe", W, b, 1.0, info)


def choose_text_head(heads: list[TextHead], emb_val, y_val) -> tuple[TextHead, dict]:
    """The head with the best validation macro-F1 (ties: the first), and every head's scores."""
    if not heads:
        raise InputError("choose_text_head: no heads given")
    y_val = np.asarray(y_val)
    rows = []
    for i, h in enumerate(heads):
        pred = h.predict_proba(emb_val).argmax(axis=1)
        rows.append({"index": i, "kind": h.kind, "val_macro_f1": macro_f1(y_val, pred),
                     "val_accuracy": float(np.mean(pred == y_val))})
    best = max(rows, key=lambda r: (r["val_macro_f1"], -r["index"]))
    return heads[best["index"]], {"chosen": best["index"], "scores": rows}


def seed_raw_head(prompt_emb, template: str = "a person feeling {}", model_label: str = "?",
                  words=CLASSES) -> TextHead:
    """The original notebook's text head: softmax over the RAW cosine similarities to one prompt per
    class, `template.format(word)` for the class's word in `words` (our class names by default, "a
    person feeling angry", ...; ORIGINAL_PROMPT_WORDS for the original's), with no logit scale.

    `prompt_emb` is (7, D): the encoder's embeddings of those prompts in canonical class order (numpy
    only here). Cosines lie in [-1, 1], so the probabilities stay near 1/7: kept to show the original's
    bug (`text_head=seed_raw`), never a default.
    """
    emb = np.asarray(prompt_emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(CLASSES):
        raise InputError(f"seed_raw_head needs one prompt embedding per class, shape (7, D); got {emb.shape}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if not np.all(np.isfinite(emb)) or np.any(norms == 0):
        raise InputError("seed_raw_head: a prompt embedding is zero or not finite; re-encode the prompts")
    info = {"model": model_label, "prompts": [template.format(w) for w in words],
            "scale_source": "none: softmax over raw cosines (the original notebook)"}
    return TextHead("seed_raw", (emb / norms).T.copy(), np.zeros(len(CLASSES), dtype=np.float32), 1.0, info)
