"""Image branch: the ResNet-50 of resnet.py behind the branch protocol, trained by train.py.

    branch = ImageBranch.from_config(cfg); branch.fit(train_df, val_df); branch.predict_proba(test_df)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from emotion_fusion.errors import InputError

from .resnet import (  # noqa: F401 (re-export)
    MODEL_FILE,
    ImagePreprocess,
    _pixels,
    load_image_model,
    locate_weights,
    predict_proba,
    save_image_model,
)
from .train import train_image_model


class ImageBranch:
    """The image branch behind the branch protocol (DESIGN.md section 2):
    `from_config(cfg)`, `fit(train, val)`, `predict_proba(items) -> (N, 7)`, `save(dir)`, `load(dir)`.

    `items` are DataFrames from `load_fer2013` (or (N,48,48) uint8 arrays); probabilities are the raw
    branch outputs (temperature scaling is fusion's business, on validation).
    """

    name = "visual"

    def __init__(self, cfg, model: nn.Module, preprocess: ImagePreprocess, history: dict | None = None):
        self.cfg, self.model, self.preprocess, self.history = cfg, model, preprocess, history or {}
        self._val = (None, None, None)  # fit's val frame, its probabilities and features: predicting it again is free
        self.states: dict = {}      # after fit: the best-val-loss and the last epoch's weights (CPU copies)
        self.class_weights = None   # the loss weights to use instead of the balanced ones (protocol=seed)

    @classmethod
    def from_config(cls, cfg) -> "ImageBranch":
        model, preprocess = load_image_model(cfg.image_weights, image_size=cfg.image_size, device=cfg.device,
                                             seed=cfg.seed)
        return cls(cfg, model, preprocess)

    def fit(self, train, val) -> dict:
        """Train on `train`, early-stop and choose the epoch on `val`; returns the history."""
        c = self.cfg
        self.history = train_image_model(
            self.model, self.preprocess, _pixels(train), train.y.to_numpy(), _pixels(val), val.y.to_numpy(),
            epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay,
            mode=c.image_mode, patience=c.patience, augment=c.augment, fast=c.fast, seed=c.seed,
            device=c.device, progress=c.progress, lr_schedule=c.lr_schedule, lr_patience=c.lr_patience,
            augment_style=c.augment_style, restore_best=c.restore_best, class_weights=self.class_weights,
            val_loss=c.val_loss, states=self.states, cpu_replicas=c.cpu_replicas, precision=c.image_precision)
        if c.tta:   # the evidence for mirror TTA, on validation: each view scored once, both kept
            from emotion_fusion.scoring.metrics import macro_f1
            x, y = _pixels(val), val.y.to_numpy()
            kw = dict(fast=c.fast, device=c.device, progress=c.progress, features=True,
                      precision=c.image_precision)
            plain, f_plain = predict_proba(self.model, self.preprocess, x, **kw)
            mirror, f_mirror = predict_proba(self.model, self.preprocess, x[:, :, ::-1], **kw)
            both = (plain + mirror) / 2
            self._val = (val, both, (f_plain + f_mirror) / 2)
            self.history["tta_on_validation"] = {
                f"{m}_{v}": float(f(y, p.argmax(1))) for v, p in (("plain", plain), ("tta", both))
                for m, f in (("accuracy", lambda a, b: np.mean(a == b)), ("macro_f1", macro_f1))}
        return self.history

    def predict_proba(self, items) -> np.ndarray:
        return self.predict(items)[0]

    def predict(self, items) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (N, 7), embeddings (N, 2048)) from one pass: the embedding is the pooled
        ResNet-50 feature the head classifies (with `tta`, averaged over the face and its mirror)."""
        if items is self._val[0]:
            return self._val[1], self._val[2]
        x = _pixels(items)
        return predict_proba(self.model, self.preprocess, x, fast=self.cfg.fast, device=self.cfg.device,
                             progress=self.cfg.progress and len(x) > 1, tta=self.cfg.tta, features=True,
                             precision=self.cfg.image_precision)

    def proba_with(self, which: str, items) -> np.ndarray:
        """`predict_proba` with the "best" (val-loss) or "last" epoch's weights of the same fit; the
        model's own weights are put back afterwards."""
        if which not in self.states:
            raise InputError(f"no {which!r} weights: call fit first (kept: {sorted(self.states) or 'none'})")
        own = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.states[which])
        try:
            x = _pixels(items)
            return predict_proba(self.model, self.preprocess, x, fast=self.cfg.fast, device=self.cfg.device,
                                 progress=False, tta=self.cfg.tta, precision=self.cfg.image_precision)
        finally:
            self.model.load_state_dict(own)

    @property
    def label(self) -> str:
        n = len(self.history.get("train_loss", []))
        epochs = f"{n} epoch{'s' * (n != 1)}"
        if n and self.model.weights_label == "random init":     # trained from random initialisation
            how = (f"random init, frozen; head trained {epochs}" if self.cfg.image_mode == "frozen"
                   else f"trained from scratch, {epochs}")    # epochs run (early stopping may cut them)
            return f"ResNet-50 {how}, at {self.preprocess.image_size}px"
        trained = f" → trained {epochs}" if n else ""
        return f"ResNet-50 {self.model.weights_label}{trained} at {self.preprocess.image_size}px"

    def save(self, folder) -> Path:
        return save_image_model(self.model, Path(folder) / MODEL_FILE, weights_label=self.model.weights_label)

    @classmethod
    def load(cls, folder, cfg) -> "ImageBranch":
        path = Path(folder) / MODEL_FILE
        if not path.is_file():
            raise InputError(f"{path} is missing; re-run `python -m emotion_fusion run` for this run dir")
        model, preprocess = load_image_model(str(path), device=cfg.device)
        return cls(cfg, model, preprocess)
