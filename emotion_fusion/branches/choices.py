"""What the branches offer, by name, without importing torch: `config` validates its settings here."""
from __future__ import annotations

IMAGE_MODES = ("finetune", "frozen")      # fine-tune the whole ResNet-50, or train its head only
LR_SCHEDULES = ("plateau", "onecycle")    # ReduceLROnPlateau on val loss, or OneCycleLR
VAL_LOSS_RULES = ("item_mean", "batch_mean")  # weighted mean over val items, or the original's mean of batch means
PRECISIONS = ("auto", "fp32")             # the image branch: what `fast` picks, or fp32 throughout (the original's)
