"""The original notebook's image rules for `protocol="seed"`: the disgust augmentation and CLIP's own
image preprocessing. Nothing is written to disk: augmented faces are new rows in memory.

Disgust is the rarest FER2013 class (436 train images), so the original grew it to 1,500 train images
by cycling six transforms over the originals: new image k is original k mod N under transform k mod 6,
with the transform's strength drawn from a seeded generator.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from emotion_fusion.data import pixel_hash as _pixel_hash
from emotion_fusion.data.labels import CLASS_INDEX
from emotion_fusion.errors import InputError
from emotion_fusion.progress import bar_iter

AUG_CLASS = "disgust"
AUG_TARGET = 1500              # disgust train images after augmentation
TRANSFORMS = ("hflip", "rotate_neg", "rotate_pos", "brightness", "contrast", "blur")
ROTATE_DEG = (10.0, 20.0)      # rotate_neg draws -20..-10, rotate_pos +10..+20 (degrees)
ENHANCE = (0.7, 1.3)           # brightness / contrast factor
BLUR_RADIUS = (0.5, 1.5)       # Gaussian blur radius, pixels


def augment_face(pixels: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One transformed copy of a 48x48 uint8 face (the input is not modified)."""
    if kind not in TRANSFORMS:
        raise InputError(f"unknown transform {kind!r}; choose one of {', '.join(TRANSFORMS)}")
    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    if arr.ndim != 2:
        raise InputError(f"a face must be a 2-D grayscale array, got shape {arr.shape}")
    img = Image.fromarray(arr)   # 2-D uint8 -> mode L
    if kind == "hflip":
        out = ImageOps.mirror(img)
    elif kind in ("rotate_neg", "rotate_pos"):
        angle = rng.uniform(*ROTATE_DEG) * (-1.0 if kind == "rotate_neg" else 1.0)
        out = img.rotate(angle)        # PIL's defaults: nearest neighbour, corners filled black
    elif kind == "brightness":
        out = ImageEnhance.Brightness(img).enhance(rng.uniform(*ENHANCE))
    elif kind == "contrast":
        out = ImageEnhance.Contrast(img).enhance(rng.uniform(*ENHANCE))
    else:
        out = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(*BLUR_RADIUS)))
    return np.asarray(out, dtype=np.uint8)


def augment_class(images: pd.DataFrame, seed: int, label: str = AUG_CLASS,
                  target: int = AUG_TARGET) -> tuple[pd.DataFrame, int]:
    """`images` plus new rows of class `label` up to `target` images of it, and how many were added.

    The input frame and its pixel arrays are left unchanged; new rows get `source`
    "<original source>#aug<k>:<transform>", their own pixel `hash` and `augmented=True`
    (every other row `augmented=False`). A class already at `target` or above gets nothing.
    """
    if label not in CLASS_INDEX:
        raise InputError(f"unknown class {label!r} to augment; choose one of {', '.join(CLASS_INDEX)}")
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target < 0:
        raise InputError(f"augmentation target {target!r} must be a non-negative integer")
    out = images.assign(augmented=False)
    originals = images[images.y == CLASS_INDEX[label]]
    need = int(target) - len(originals)
    if need <= 0:
        return out.reset_index(drop=True), 0
    if originals.empty:
        raise InputError(f"no {label} images to augment; the FER2013 train folder needs {label}/ images")
    rng = np.random.default_rng([int(seed), 1])
    rows = []
    for k in range(need):
        src = originals.iloc[k % len(originals)]
        kind = TRANSFORMS[k % len(TRANSFORMS)]
        px = augment_face(src.pixels, kind, rng)
        rows.append({**src.to_dict(), "pixels": px, "augmented": True, "source": f"{src.source}#aug{k}:{kind}",
                     "hash": _pixel_hash(px)})      # the loader's hash, so dedup rules apply alike
    new = pd.DataFrame(rows, columns=out.columns)
    return pd.concat([out, new], ignore_index=True), need


def clip_transform(net):
    """open_clip's evaluation preprocessing for `net` (ViT-B-32: shortest side to 224 bicubic, center
    crop, tensor, OpenAI mean/std), built from the network's own preprocess config."""
    import open_clip
    cfg = net.visual.preprocess_cfg
    return open_clip.image_transform(cfg["size"], is_train=False, mean=cfg["mean"], std=cfg["std"],
                                     resize_mode=cfg["resize_mode"], interpolation=cfg["interpolation"])


def original_clip_transform(net):
    """The original's pairing transform (cell 24): a bilinear `Resize((224, 224))`, no centre crop, then
    CLIP's mean/std. (On a square 48 px face open_clip's crop cuts nothing: what differs is bilinear
    against bicubic.)"""
    from torchvision import transforms
    cfg = net.visual.preprocess_cfg
    size = cfg["size"] if isinstance(cfg["size"], (tuple, list)) else (cfg["size"],) * 2
    return transforms.Compose([transforms.Resize(tuple(size), interpolation=transforms.InterpolationMode.BILINEAR),
                               transforms.ToTensor(), transforms.Normalize(cfg["mean"], cfg["std"])])


CLIP_RESIZES = {"open_clip": clip_transform, "original": original_clip_transform}


def clip_image_embeddings(model, pixels: np.ndarray, batch_size: int = 128, progress: bool = True,
                          resize: str = "open_clip") -> np.ndarray:
    """L2-normalised CLIP image embeddings of 48x48 grayscale faces, each converted to RGB and passed
    through `resize`: "open_clip" (open_clip's evaluation preprocess) or "original" (the original's
    bilinear resize; it ran the `clip` package's fp16 model on GPU, here the model runs in its own dtype)."""
    import torch
    import torch.nn.functional as F
    if resize not in CLIP_RESIZES:
        raise InputError(f"unknown clip_resize {resize!r}; choose one of {', '.join(CLIP_RESIZES)}")
    net = model.net
    transform = CLIP_RESIZES[resize](net)
    out = []
    net.eval()
    for start in bar_iter(range(0, len(pixels), batch_size), "CLIP images", enabled=progress):
        x = torch.stack([transform(Image.fromarray(np.ascontiguousarray(p)).convert("RGB"))
                         for p in pixels[start:start + batch_size]]).to(model.device)
        with torch.inference_mode():
            out.append(F.normalize(net.encode_image(x).float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.visual.output_dim), dtype=np.float32)
