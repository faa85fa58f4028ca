"""The image model: a torchvision ResNet-50 with the original notebook's head, on 48x48 FER2013 faces.

    model, preprocess = load_image_model("imagenet")          # or "imagenet_v2", "my.pth", None
    p = predict_proba(model, preprocess, x_te)                 # (N, 7) float32, canonical order

`fast=True` uses channels_last, plus bf16 autocast on a CPU with native bf16 (AVX512-BF16/AMX) and
fp16 AMP on CUDA. On CPUs without native bf16 it stays fp32: emulated bf16 was 3-15x slower there
(see precision.cpu_native_bf16); the history's `precision` says which path ran. `precision="fp32"`
(the `seed` profile's `image_precision`) turns autocast off on every device, TF32 too. Training: train.py; the branch protocol: image.py.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from emotion_fusion.data.files import atomic_write
from emotion_fusion.data.labels import NUM_CLASSES
from emotion_fusion.errors import InputError, useful_line
from emotion_fusion.progress import bar_iter

from .precision import autocast, choose_device, honours_fp32
from .weights import is_online, missing_weights_error, torch_hub_checkpoints

# --- defaults -------------------------------------------------------------------------------------
HUB_WEIGHTS = {"imagenet": ResNet50_Weights.IMAGENET1K_V1, "imagenet_v2": ResNet50_Weights.IMAGENET1K_V2}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CKPT_FORMAT = "emotion_fusion.image/1"
WEIGHTS_OPTION = "weights=<path.pth> (CLI: --set image_weights=PATH)"
MODEL_FILE = "image.pth"                  # the trained branch inside RUN_DIR/models/


class ImagePreprocess:
    """uint8 grayscale (H,W) or (N,H,W) -> float32 (N,3,S,S): resize, 3 channels, ImageNet norm."""

    def __init__(self, image_size: int):
        self.image_size = int(image_size)
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)

    def to_unit(self, x) -> torch.Tensor:
        """Validate and scale to a (N,1,H,W) float tensor in [0,1] (augmentation works on this)."""
        x = np.asarray(x)
        if x.dtype != np.uint8 or x.ndim not in (2, 3):
            raise InputError(f"images must be uint8 arrays of shape (H,W) or (N,H,W); got {x.dtype} "
                             f"{x.shape}: load faces with emotion_fusion.load_fer2013")
        if x.ndim == 2:
            x = x[None]
        return torch.from_numpy(np.array(x, copy=True)).unsqueeze(1).float().div_(255.0)  # a writable copy

    def finish(self, t: torch.Tensor) -> torch.Tensor:
        """(N,1,H,W) in [0,1] -> (N,3,S,S) normalised."""
        if t.shape[-1] != self.image_size or t.shape[-2] != self.image_size:
            t = F.interpolate(t, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False)
        return ((t - self._mean) / self._std).float()

    def __call__(self, x) -> torch.Tensor:
        return self.finish(self.to_unit(x))

    def __repr__(self) -> str:
        return f"ImagePreprocess(image_size={self.image_size})"


def _head(num_classes: int) -> nn.Sequential:
    # The original notebook's classifier head, kept as-is so its numbers can be reproduced.
    return nn.Sequential(nn.Dropout(0.5), nn.Linear(2048, 512), nn.ReLU(inplace=True),
                         nn.Dropout(0.3), nn.Linear(512, num_classes))


def locate_weights(weights) -> Path | None:
    """Where `weights` will be read from (None: random init, or a download that is possible now).

    Raises the missing-weights InputError at once when a hub file is neither cached nor downloadable,
    so a run can check before it spends minutes on data.
    """
    if isinstance(weights, str) and weights in HUB_WEIGHTS:
        enum = HUB_WEIGHTS[weights]
        folder = torch_hub_checkpoints()
        path = folder / os.path.basename(urlparse(enum.url).path)
        if path.is_file():
            return path
        if not is_online(enum.url):
            raise missing_weights_error(f"ResNet-50 (torchvision ResNet50_Weights.{enum.name})", path.name,
                                        [folder], f"download {enum.url} into {folder} (TORCH_HOME moves it)",
                                        WEIGHTS_OPTION)
        return None
    if weights is not None and not Path(weights).is_file():
        _read_file(Path(weights))           # raises the one-line "does not exist" error
    return None if weights is None else Path(weights)


def _hub_state_dict(enum) -> dict:
    """torchvision weights from torch hub's cache; downloaded only when the host answers."""
    name = next(k for k, v in HUB_WEIGHTS.items() if v is enum)
    path = locate_weights(name)
    return _read_file(path) if path is not None else enum.get_state_dict(progress=True, check_hash=True)


def _read_file(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"image weights file {path} does not exist; give an existing .pth file, "
                         f"one of {', '.join(map(repr, HUB_WEIGHTS))}, or None for random init")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, pickle with code, ...: one line naming the file
        raise InputError(f"cannot read image weights {path} ({useful_line(e)}); if it is corrupt or truncated "
                         f"(an interrupted download?) delete it and download it again, or give a ResNet-50 "
                         f"state_dict .pth or a checkpoint from save_image_model with {WEIGHTS_OPTION}") from None
    if not isinstance(obj, dict):
        raise InputError(f"image weights {path} hold a {type(obj).__name__}, not a state_dict; "
                         f"save with torch.save(model.state_dict(), path) or save_image_model")
    return obj


def load_image_model(weights: str | os.PathLike | None = "imagenet", num_classes: int = NUM_CLASSES,
                     image_size: int = 224, device=None, seed: int = 0):
    """Build ResNet-50 + head; return (model, preprocess). See the module docstring for `weights`.

    A checkpoint from `save_image_model` restores its own head, num_classes and image_size (those
    arguments are then ignored). `seed` makes the randomly initialised parts reproducible without
    touching the global RNG. `model.weights_label` says where the weights came from.
    """
    if not (isinstance(image_size, int) and 16 <= image_size <= 1024):
        raise InputError(f"image_size={image_size!r} must be an int between 16 and 1024 pixels")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # Zero-initialised last BN of each residual block (Goyal et al. 2017): each block starts as the
        # identity, which makes training from scratch start faster; pretrained weights overwrite it.
        model = resnet50(weights=None, zero_init_residual=weights is None)
        ckpt = None
        if weights is None:
            label = "random init"
        elif isinstance(weights, str) and weights in HUB_WEIGHTS:
            enum = HUB_WEIGHTS[weights]
            path = locate_weights(weights)
            _load_backbone(model, _hub_state_dict(enum), path or Path(enum.url).name, strict_fc=True)
            label = f"ImageNet {enum.name}"
        elif isinstance(weights, (str, os.PathLike)) and (
                Path(weights).suffix in (".pth", ".pt") or Path(weights).exists()):
            path = Path(weights)
            obj = _read_file(path)
            if obj.get("format") == CKPT_FORMAT:
                ckpt = obj
                num_classes, image_size = int(obj["num_classes"]), int(obj["image_size"])
            else:
                _load_backbone(model, obj, path)
            label = f"file {path.name}"
        else:
            raise InputError(f"unknown image weights {weights!r}; valid: {', '.join(map(repr, HUB_WEIGHTS))}, "
                             f"a path to a .pth file, or None (random init)")
        model.fc = _head(num_classes)
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            raise InputError(f"checkpoint {weights} does not fit ResNet-50 + head: {useful_line(e)}") from None
        model.checkpoint_meta = dict(ckpt.get("meta", {}))
        if ckpt.get("weights_label"):
            label += f" (from {ckpt['weights_label']})"
    model.checkpoint_meta = getattr(model, "checkpoint_meta", {})
    model.weights_label = label
    model.image_size = image_size
    model.num_classes = num_classes
    model.to(choose_device(device)).eval()
    return model, ImagePreprocess(image_size)


def _load_backbone(model: nn.Module, state: dict, path, strict_fc: bool = False) -> None:
    """A plain torchvision ResNet-50 state_dict: everything but `fc` must match (with `strict_fc`, the
    ImageNet checkpoints, `fc` must be there too: a hub file missing any key is a broken download)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}   # saved from DataParallel
    if strict_fc and not {"fc.weight", "fc.bias"} <= set(state):
        raise InputError(f"image weights {path} are not a complete torchvision ResNet-50 checkpoint (no fc.* "
                         "keys); delete the file and download it again, or pass --set image_weights=PATH")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    fix = (f"delete it and download it again, or pass {WEIGHTS_OPTION}" if strict_fc    # a broken hub file
           else "give torchvision resnet50 weights")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise InputError(f"image weights {path} do not fit ResNet-50 ({useful_line(e)}); {fix}") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise InputError(f"image weights {path} are not a ResNet-50 state_dict (missing {missing[:3]}, "
                         f"unexpected {list(unexpected)[:3]}); {fix}")


def save_image_model(model: nn.Module, path: str | os.PathLike, **meta) -> Path:
    """Save a checkpoint that `load_image_model(weights=path)` restores exactly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(path) as f:
        torch.save({"format": CKPT_FORMAT, "state_dict": state, "image_size": int(model.image_size),
                    "num_classes": int(model.num_classes),
                    "weights_label": getattr(model, "weights_label", ""), "meta": meta}, f)
    return path



def batch_logits(model, preprocess, x, batch_size, dev, fast, progress, desc, precision="auto"):
    """Yield (slice, logits in float32) over x in eval mode, no grad."""
    fmt = torch.channels_last if fast else torch.contiguous_format
    for start in bar_iter(range(0, len(x), batch_size), desc, enabled=progress):
        sl = slice(start, start + batch_size)
        xb = preprocess(x[sl]).to(dev, memory_format=fmt)
        with torch.inference_mode(), autocast(dev.type, fast, precision):
            yield sl, model(xb).float()


@honours_fp32
def predict_proba(model: nn.Module, preprocess: ImagePreprocess, x, *, batch_size: int = 256,
                  fast: bool = True, device=None, progress: bool = True, tta: bool = False,
                  features: bool = False, precision: str = "auto"):
    """Class probabilities (N, num_classes) float32, canonical order; eval mode, no grad; `precision`
    as in train_image_model.

    `tta=True` averages the probabilities of each face and its mirror image (faces are left-right
    symmetric, so the mirror is a second honest look at the same input). `features=True` returns
    (probabilities, pooled features): the (N, 2048) float32 input of the head, from the same pass (with
    `tta`, averaged over both views like the probabilities).
    """
    x = np.asarray(x)
    x = x[None] if x.ndim == 2 else x
    dev = choose_device(device, model)
    model.to(dev, memory_format=torch.channels_last if fast else torch.contiguous_format).eval()
    out = np.zeros((len(x), model.num_classes), dtype=np.float32)
    feats = None
    seen: list[torch.Tensor] = []
    # the head's input, caught on its way in: one forward pass gives both outputs
    hook = model.fc.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) if features else None
    views = (x, x[:, :, ::-1]) if tta else (x,)
    try:
        for view in views:
            for sl, logits in batch_logits(model, preprocess, view, batch_size, dev, fast, progress, "predict",
                                           precision):
                out[sl] += torch.softmax(logits, dim=1).cpu().numpy() / len(views)
                if features:
                    f = seen.pop().flatten(1).float().cpu().numpy()
                    feats = np.zeros((len(x), f.shape[1]), dtype=np.float32) if feats is None else feats
                    feats[sl] += f / len(views)
    finally:
        if hook is not None:
            hook.remove()
    if features and feats is None:      # no face at all
        feats = np.zeros((0, 0), dtype=np.float32)
    return (out, feats) if features else out


def _pixels(items) -> np.ndarray:
    """Faces as (N,48,48) uint8: a DataFrame from `load_fer2013` (its `pixels`) or an array."""
    if hasattr(items, "columns"):
        from emotion_fusion.data import stack_pixels
        return stack_pixels(items)
    x = np.asarray(items)
    return x[None] if x.ndim == 2 else x
