"""Which part of a run each setting changes: the groups behind the run dir's per-branch cache keys."""
from __future__ import annotations

from typing import Any

from emotion_fusion.errors import InputError

# Which part of a run each setting changes (the run dir's cache, pipeline.py). Every setting is in
# exactly one group; tests/test_branch_cache.py fails on a setting in none, so a new one must be placed here.
#   shared   - the data, the split and the protocol: both branches' items, so both branches' caches
#   image    - the image branch's cache only (its model, per-face probabilities and embeddings)
#   text     - the text branch's cache only (its head, per-text probabilities and embeddings)
#   assembly - how the two cached parts are joined into outputs/ (temperatures, titles): no branch refits
#   scoring  - only how cached outputs are fused and scored: nothing in the run dir's cache changes
# protocol=seed is the exception: its pool and split depend on CLIP similarity (text settings) and its
# loss weights on the text pool, so under it each branch's key covers every shared, image and text setting.
SETTING_GROUPS: dict[str, tuple[str, ...]] = {
    "shared": ("profile", "seed", "protocol", "val_fraction", "drop_train_duplicates", "val_per_class",
               "test_per_class", "seed_pairs_rare", "seed_pairs_common", "seed_min_similarity", "neutral_rule",
               "dominant_label", "clip_resize", "seed_random_state", "fast", "device", "allow_empty_classes"),
    "image": ("image_weights", "image_mode", "image_size", "epochs", "batch_size", "lr", "weight_decay",
              "patience", "restore_best", "class_weights", "val_loss", "lr_patience", "lr_schedule", "augment",
              "augment_style", "tta", "cpu_replicas", "train_per_class", "image_precision"),
    "text": ("text_model", "text_weights", "text_head", "raw_head_words", "label_map", "multi_label",
             "text_train_per_class"),
    "assembly": ("calibrate", "weights_declared_random"),
    "scoring": ("fusion_weight", "fusion_rule", "n_boot", "pairing_draws", "progress", "skip_bad"),
}


def setting_group(name: str) -> str:
    """The group of SETTING_GROUPS that holds setting `name` (InputError for an unknown name)."""
    for group, names in SETTING_GROUPS.items():
        if name in names:
            return group
    raise InputError(f"setting {name!r} is in no group of groups.SETTING_GROUPS; add it to the group it changes")


def branch_settings(cfg, branch: str) -> dict[str, Any]:
    """The settings that make up `branch`'s cache key ("image" or "text"): the shared ones and its own
    (under protocol=seed, both branches' too: see SETTING_GROUPS)."""
    if branch not in ("image", "text"):
        raise InputError(f"unknown branch {branch!r}; choose image or text")
    groups = ("shared", "image", "text") if cfg.protocol == "seed" else ("shared", branch)
    d = cfg.to_dict()
    return {k: d[k] for g in groups for k in SETTING_GROUPS[g]}
