"""Image branch: a torchvision ResNet-50 with the original notebook's head, on 48x48 FER2013 faces.

    model, preprocess = load_image_model("imagenet")          # or "imagenet_v2", "my.pth", None
    history = train_image_model(model, preprocess, x_tr, y_tr, x_va, y_va, epochs=10)
    p = predict_proba(model, preprocess, x_te)                 # (N, 7) float32, canonical order

`fast=True` uses channels_last, plus bf16 autocast on a CPU with native bf16 (AVX512-BF16/AMX) and
fp16 AMP on CUDA. On CPUs without native bf16 it stays fp32: emulated bf16 was 3-15x slower there
(see weights.cpu_native_bf16); the history's `precision` says which path ran.
"""
from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50
from tqdm import tqdm  # text bars: work in a terminal, Jupyter and papermill alike

from .errors import InputError
from .labels import NUM_CLASSES
from .weights import (autocast, is_online, missing_weights_error, precision_label,
                      torch_hub_checkpoints)

# --- defaults -------------------------------------------------------------------------------------
HUB_WEIGHTS = {"imagenet": ResNet50_Weights.IMAGENET1K_V1, "imagenet_v2": ResNet50_Weights.IMAGENET1K_V2}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ("finetune", "frozen")
LR_FACTOR, LR_PATIENCE = 0.5, 1          # ReduceLROnPlateau on validation loss
LR_SCHEDULES = ("plateau", "onecycle")
ONECYCLE_WARMUP = 0.1                     # share of the steps spent warming up to the peak rate
AUG_ROTATE_DEG, AUG_SHIFT, AUG_BRIGHTNESS, AUG_CONTRAST = 10.0, 0.08, 0.15, 0.2
CKPT_FORMAT = "emotion_fusion.image/1"
WEIGHTS_OPTION = "weights=<path.pth> (CLI: --set image_weights=PATH)"


def _device(device, model: nn.Module | None = None) -> torch.device:
    """An explicit device wins; else the model's own; else cuda when available, cpu otherwise."""
    if device is not None:
        return torch.device(device)
    if model is not None:
        return next(model.parameters()).device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(dev: torch.device, fast: bool):
    return autocast(dev.type, fast)


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
        raise InputError(f"cannot read image weights {path}: {type(e).__name__}; give a ResNet-50 "
                         f"state_dict .pth or a checkpoint from save_image_model") from None
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
            model.load_state_dict(_hub_state_dict(enum))
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
            raise InputError(f"checkpoint {weights} does not fit ResNet-50 + head: "
                             f"{str(e).splitlines()[0]}") from None
        model.checkpoint_meta = dict(ckpt.get("meta", {}))
        if ckpt.get("weights_label"):
            label += f" (from {ckpt['weights_label']})"
    model.checkpoint_meta = getattr(model, "checkpoint_meta", {})
    model.weights_label = label
    model.image_size = image_size
    model.num_classes = num_classes
    model.to(_device(device)).eval()
    return model, ImagePreprocess(image_size)


def _load_backbone(model: nn.Module, state: dict, path: Path) -> None:
    """A plain torchvision ResNet-50 state_dict: everything but `fc` must match."""
    state = {k.removeprefix("module."): v for k, v in state.items()}   # saved from DataParallel
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise InputError(f"image weights {path} do not fit ResNet-50: {str(e).splitlines()[0]}") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise InputError(f"image weights {path} are not a ResNet-50 state_dict (missing {missing[:3]}, "
                         f"unexpected {list(unexpected)[:3]}); give torchvision resnet50 weights")


def save_image_model(model: nn.Module, path: str | os.PathLike, **meta) -> Path:
    """Save a checkpoint that `load_image_model(weights=path)` restores exactly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save({"format": CKPT_FORMAT, "state_dict": state, "image_size": int(model.image_size),
                "num_classes": int(model.num_classes),
                "weights_label": getattr(model, "weights_label", ""), "meta": meta}, path)
    return path


def _check_xy(x, y, what: str, num_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if len(x) != len(y) or len(y) == 0:
        raise InputError(f"{what}: {len(x)} images but {len(y)} labels; give one int label per image")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise InputError(f"{what}: labels must be ints in 0..{num_classes - 1} (canonical class ids)")
    return y.astype(np.int64)


def augment_batch(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flip, small rotation/shift, brightness/contrast jitter on a (N,1,H,W) [0,1] batch."""
    n = t.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    t = torch.where(flip.view(n, 1, 1, 1), t.flip(-1), t)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * np.deg2rad(AUG_ROTATE_DEG)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * AUG_SHIFT * 2   # grid units span 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(t.shape), align_corners=False)
    t = F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * AUG_CONTRAST
    bright = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * AUG_BRIGHTNESS
    mean = t.mean(dim=(2, 3), keepdim=True)
    return ((t - mean) * contrast + mean + bright).clamp_(0, 1)


def _batches(model, preprocess, x, batch_size, dev, fast, progress, desc):
    """Yield (slice, logits in float32) over x in eval mode, no grad."""
    fmt = torch.channels_last if fast else torch.contiguous_format
    for start in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False):
        sl = slice(start, start + batch_size)
        xb = preprocess(x[sl]).to(dev, memory_format=fmt)
        with torch.inference_mode(), _autocast(dev, fast):
            yield sl, model(xb).float()


def predict_proba(model: nn.Module, preprocess: ImagePreprocess, x, *, batch_size: int = 256,
                  fast: bool = True, device=None, progress: bool = True, tta: bool = False) -> np.ndarray:
    """Class probabilities (N, num_classes) float32, canonical order; eval mode, no grad.

    `tta=True` averages the probabilities of each face and its mirror image (faces are left-right
    symmetric, so the mirror is a second honest look at the same input).
    """
    x = np.asarray(x)
    x = x[None] if x.ndim == 2 else x
    dev = _device(device, model)
    model.to(dev, memory_format=torch.channels_last if fast else torch.contiguous_format).eval()
    out = np.zeros((len(x), model.num_classes), dtype=np.float32)
    views = (x, x[:, :, ::-1]) if tta else (x,)
    for view in views:
        for sl, logits in _batches(model, preprocess, view, batch_size, dev, fast, progress, "predict"):
            out[sl] += torch.softmax(logits, dim=1).cpu().numpy() / len(views)
    return out


def _set_mode(model: nn.Module, mode: str) -> None:
    if mode == "frozen":
        model.eval()        # BatchNorm keeps its (pretrained) running statistics
        model.fc.train()    # the head's dropout stays active
    else:
        model.train()


def train_image_model(model: nn.Module, preprocess: ImagePreprocess, x_train, y_train, x_val, y_val, *,
                      epochs: int = 10, batch_size: int = 64, lr: float = 1e-4,
                      weight_decay: float = 1e-4, mode: str = "finetune", patience: int = 3,
                      augment: bool = True, fast: bool = True, seed: int = 0, device=None,
                      progress: bool = True, lr_schedule: str = "plateau") -> dict:
    """Train in place with class-weighted CE, Adam, LR-on-plateau and early stopping on val loss.

    `lr_schedule="onecycle"` replaces the plateau rule (which needs many epochs to act) by a per-step
    one-cycle schedule peaking at `lr`: the better choice for the few epochs a CPU run can afford.

    The best epoch's weights are restored at the end. Returns the history: lists per epoch
    (`train_loss`, `train_acc`, `val_loss`, `val_acc`, `lr`, `seconds`) plus `best_epoch` (1-based),
    `epochs_run`, `stopped_early` and `img_per_s` (training throughput).
    """
    if mode not in MODES:
        raise InputError(f"unknown training mode {mode!r}; choose one of {', '.join(MODES)}")
    if lr_schedule not in LR_SCHEDULES:
        raise InputError(f"unknown lr_schedule {lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise InputError(f"epochs={epochs}, batch_size={batch_size}, patience={patience} must all be >= 1")
    k = model.num_classes
    x_train, x_val = np.asarray(x_train), np.asarray(x_val)
    y_train, y_val = _check_xy(x_train, y_train, "train", k), _check_xy(x_val, y_val, "val", k)
    dev = _device(device, model)
    fmt = torch.channels_last if fast else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    torch.manual_seed(seed)                        # dropout
    gen = torch.Generator().manual_seed(seed)      # shuffling and augmentation

    present = np.unique(y_train)
    w = np.zeros(k, dtype=np.float32)              # absent classes never occur in the loss
    w[present] = compute_class_weight("balanced", classes=present, y=y_train)
    criterion = nn.CrossEntropyLoss(weight=torch.from_numpy(w).to(dev))
    for name, p in model.named_parameters():
        p.requires_grad_(mode == "finetune" or name.startswith("fc."))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=LR_FACTOR, patience=LR_PATIENCE)
    steps = epochs * -(-len(x_train) // batch_size)
    step_sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=ONECYCLE_WARMUP)
                  if lr_schedule == "onecycle" else None)
    scaler = torch.amp.GradScaler("cuda", enabled=fast and dev.type == "cuda")

    hist = {key: [] for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")}
    best = (float("inf"), 0, None)                 # (val loss, epoch, state)
    train_time, seen = 0.0, 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        _set_mode(model, mode)
        order = torch.randperm(len(x_train), generator=gen).numpy()
        loss_sum, correct = 0.0, 0
        bar = tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch}/{epochs}", mininterval=2,
                   disable=not progress, leave=False)
        for start in bar:
            idx = order[start:start + batch_size]
            t = preprocess.to_unit(x_train[idx])
            if augment:
                t = augment_batch(t, gen)
            xb = preprocess.finish(t).to(dev, memory_format=fmt)
            yb = torch.from_numpy(y_train[idx]).to(dev)
            with _autocast(dev, fast):
                logits = model(xb)
            loss = criterion(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            if step_sched is not None:
                step_sched.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        train_time += time.perf_counter() - t0
        seen += len(order)
        val_loss, val_acc = _evaluate(model, preprocess, x_val, y_val, w, dev, fast)
        epoch_lr = opt.param_groups[0]["lr"]      # the rate this epoch trained at (its end, for onecycle)
        if step_sched is None:
            sched.step(val_loss)
        for key, v in (("train_loss", loss_sum / len(order)), ("train_acc", correct / len(order)),
                       ("val_loss", val_loss), ("val_acc", val_acc), ("lr", epoch_lr),
                       ("seconds", time.perf_counter() - t0)):
            hist[key].append(float(v))
        if progress:
            tqdm.write(f"epoch {epoch}: train loss {hist['train_loss'][-1]:.4f} acc {hist['train_acc'][-1]:.3f}"
                       f" | val loss {val_loss:.4f} acc {val_acc:.3f}")
        if val_loss < best[0]:
            best = (val_loss, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= patience:
            break
    if best[2] is None:     # every validation loss was NaN/inf: the run diverged
        raise InputError(f"training diverged: validation loss {hist['val_loss'][-1]} after "
                         f"{len(hist['val_loss'])} epoch(s); lower the learning rate (lr={lr})")
    model.load_state_dict(best[2])
    model.eval()
    return {**hist, "best_epoch": best[1], "epochs_run": len(hist["val_loss"]),
            "stopped_early": len(hist["val_loss"]) < epochs, "img_per_s": seen / train_time,
            "mode": mode, "fast": fast, "precision": precision_label(dev.type, fast)}


def _evaluate(model, preprocess, x, y, w, dev, fast) -> tuple[float, float]:
    """Class-weighted mean CE (same weighting as training) and accuracy on a held-out set."""
    model.eval()
    nll_sum, w_sum, correct = 0.0, 0.0, 0
    wt = torch.from_numpy(w).to(dev)
    for sl, logits in _batches(model, preprocess, x, 256, dev, fast, False, "val"):
        yb = torch.from_numpy(y[sl]).to(dev)
        nll_sum += F.cross_entropy(logits, yb, weight=wt, reduction="sum").item()
        w_sum += wt[yb].sum().item()
        correct += (logits.argmax(1) == yb).sum().item()
    return nll_sum / max(w_sum, 1e-12), correct / len(y)
