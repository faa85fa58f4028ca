"""Training the image branch: class-weighted cross-entropy, Adam, plateau or one-cycle LR, early stopping.

    history = train_image_model(model, preprocess, x_train, y_train, x_val, y_val, epochs=10)

The best validation-loss epoch's weights are restored at the end (`restore_best=False`: the last
epoch's are kept, which is what the original notebook scored: its `state_dict().copy()` is a shallow
copy whose tensors are the live parameters, so its final `load_state_dict` restored nothing). The same code runs as one process or
as N (torchrun / accelerate launch): sharding, per-rank seeds and metric reduction in distributed.py. On a
CPU one process splits each batch over `cpu_replicas` model replicas on threads (replicas.py).
Progress: a live bar per epoch (in Jupyter too) that leaves one line behind, the epoch's losses and
accuracies; and, every HEARTBEAT_S seconds, one plain line (images done, loss, throughput, time left) for
a live reader only (progress.note): a terminal running the notebook through papermill (`make demo`) sees
training move, the saved notebook and its HTML report keep one line per epoch.
"""
from __future__ import annotations

import contextlib
import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from emotion_fusion.errors import InputError
from emotion_fusion.progress import Bar, note

from . import distributed as _dist
from .choices import IMAGE_MODES, LR_SCHEDULES, PRECISIONS, VAL_LOSS_RULES
from .precision import autocast, autocast_dtype, choose_device, honours_fp32, precision_label
from .replicas import Replicas, choose_replicas, usable_cores
from .resnet import ImagePreprocess, batch_logits

# --- defaults -------------------------------------------------------------------------------------
LR_FACTOR, LR_PATIENCE = 0.5, 1          # ReduceLROnPlateau on validation loss
ONECYCLE_WARMUP = 0.1                     # share of the steps spent warming up to the peak rate
# Augmentation styles: ours (at the 48 px input: small rotation and shift, additive brightness) and the
# original notebook's (cell 27, at the model's resolution: flip, RandomRotation(15) with torchvision's
# defaults, nearest and black fill, then ColorJitter(brightness=0.2, contrast=0.2), whose two factors
# apply in a random order per image).
AUGMENT = {"ours": dict(rotate=10.0, shift=0.08, brightness=0.15, contrast=0.2, multiplicative=False,
                        interpolation="bilinear", padding="border"),
           "seed": dict(rotate=15.0, shift=0.0, brightness=0.2, contrast=0.2, multiplicative=True,
                        interpolation="nearest", padding="zeros")}
CLASS_WEIGHT_RULES = ("balanced", "given")   # sklearn's on the train labels, or the caller's (the original's)
HEARTBEAT_S = 30.0                        # seconds between plain progress lines while training

def _check_xy(x, y, what: str, num_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if len(x) != len(y) or len(y) == 0:
        raise InputError(f"{what}: {len(x)} images but {len(y)} labels; give one int label per image")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= num_classes:
        raise InputError(f"{what}: labels must be ints in 0..{num_classes - 1} (canonical class ids)")
    return y.astype(np.int64)


def augment_batch(t: torch.Tensor, gen: torch.Generator, style: str = "ours") -> torch.Tensor:
    """Random flip, rotation/shift, brightness/contrast jitter on a (N,1,H,W) [0,1] batch (AUGMENT[style])."""
    a = AUGMENT[style]
    n = t.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    t = torch.where(flip.view(n, 1, 1, 1), t.flip(-1), t)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * np.deg2rad(a["rotate"])
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * a["shift"] * 2   # grid units span 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(t.shape), align_corners=False)
    t = F.grid_sample(t, grid, mode=a["interpolation"], padding_mode=a["padding"], align_corners=False)
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * a["contrast"]
    bright = (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * a["brightness"]
    if a["multiplicative"]:      # torchvision ColorJitter: brightness scales, contrast blends with the mean
        contrast_first = (torch.rand(n, generator=gen) < 0.5).view(n, 1, 1, 1)
        return torch.where(contrast_first, _brighten(_contrast(t, contrast), bright),
                           _contrast(_brighten(t, bright), contrast))
    mean = t.mean(dim=(2, 3), keepdim=True)
    return ((t - mean) * contrast + mean + bright).clamp_(0, 1)


def _brighten(t: torch.Tensor, bright: torch.Tensor) -> torch.Tensor:
    return (t * (1 + bright)).clamp(0, 1)


def _contrast(t: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    mean = t.mean(dim=(2, 3), keepdim=True)
    return ((t - mean) * contrast + mean).clamp(0, 1)


def loss_weights(y_train: np.ndarray, num_classes: int, rule: str = "balanced", given=None) -> np.ndarray:
    """Per-class loss weights: sklearn's "balanced" on the train labels (absent classes 0), or `given`
    (the original's, computed from the text pool's label counts: original/texts.py)."""
    if rule not in CLASS_WEIGHT_RULES:
        raise InputError(f"unknown class-weight rule {rule!r}; choose one of {', '.join(CLASS_WEIGHT_RULES)}")
    if rule == "given":
        w = np.asarray(given, dtype=np.float32) if given is not None else np.zeros(0)
        if w.shape != (num_classes,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise InputError(f"class weights must be {num_classes} positive numbers, got {given!r}")
        return w
    present = np.unique(y_train)
    w = np.zeros(num_classes, dtype=np.float32)     # absent classes never occur in the loss
    w[present] = compute_class_weight("balanced", classes=present, y=y_train)
    return w


def _set_mode(model: nn.Module, mode: str) -> None:
    if mode == "frozen":
        model.eval()        # BatchNorm keeps its (pretrained) running statistics
        model.fc.train()    # the head's dropout stays active
    else:
        model.train()


@honours_fp32
def train_image_model(model: nn.Module, preprocess: ImagePreprocess, x_train, y_train, x_val, y_val, *,
                      epochs: int = 10, batch_size: int = 64, lr: float = 1e-4,
                      weight_decay: float = 1e-4, mode: str = "finetune", patience: int = 3,
                      augment: bool = True, fast: bool = True, seed: int = 0, device=None,
                      progress: bool = True, lr_schedule: str = "plateau", lr_patience: int = LR_PATIENCE,
                      augment_style: str = "ours", restore_best: bool = True, class_weights=None,
                      val_loss: str = "item_mean", states: dict | None = None, cpu_replicas: int | None = 1,
                      precision: str = "auto") -> dict:
    """Train in place with class-weighted CE, Adam, LR-on-plateau and early stopping on val loss.

    `lr_schedule="onecycle"` replaces the plateau rule (which needs many epochs to act) by a per-step
    one-cycle schedule peaking at `lr`: the better choice for the few epochs a CPU run can afford.

    Under a launcher (N processes) the model is wrapped in DDP by accelerate, `batch_size` is per
    process and each rank trains on its shard of every epoch (see distributed.py); with one process
    and cpu_replicas=1 the results are bit-identical to the code before distribution was added.

    The best epoch's weights are restored at the end, or with `restore_best=False` the last epoch's
    are kept (the original's outcome). `class_weights` (7 numbers) replaces the balanced weights;
    `val_loss="batch_mean"` averages per-batch weighted means over batches of `batch_size`, as the
    original did. `cpu_replicas=N` > 1 (CPU, one process) splits each batch over N model replicas on N
    threads with usable_cores() // N intra-op threads each (replicas.py); None picks N for the machine
    (replicas.choose_replicas). `precision="fp32"` trains and validates without autocast or GradScaler
    and with TF32 off (precision.strict_fp32) on any device, as the original did on its T4; "auto" takes
    `fast`'s choice (fp16 AMP on CUDA, bf16 autocast on a CPU with native bf16). A dict passed as `states` receives CPU copies of both candidates' weights, "best"
    and "last", so a caller can score each. Returns the history: lists per epoch
    (`train_loss`, `train_acc`, `val_loss`, `val_acc`, `lr`, `seconds`) plus `best_epoch` (1-based),
    `epochs_run`, `stopped_early`, `img_per_s` (training throughput) and `scored_epoch` (the epoch
    whose weights the model holds at the end).
    """
    if mode not in IMAGE_MODES:
        raise InputError(f"unknown training mode {mode!r}; choose one of {', '.join(IMAGE_MODES)}")
    if lr_schedule not in LR_SCHEDULES:
        raise InputError(f"unknown lr_schedule {lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise InputError(f"epochs={epochs}, batch_size={batch_size}, patience={patience} must all be >= 1")
    if val_loss not in VAL_LOSS_RULES:
        raise InputError(f"unknown val_loss rule {val_loss!r}; choose one of {', '.join(VAL_LOSS_RULES)}")
    if precision not in PRECISIONS:
        raise InputError(f"unknown image_precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    k = model.num_classes
    x_train, x_val = np.asarray(x_train), np.asarray(x_val)
    y_train, y_val = _check_xy(x_train, y_train, "train", k), _check_xy(x_val, y_val, "val", k)
    dev = choose_device(device, model)
    acc = _dist.accelerator(dev)
    rank, world = acc.process_index, acc.num_processes
    dev = acc.device if world > 1 else dev         # a launcher gives each rank its own GPU
    progress = progress and acc.is_main_process    # one bar and one log, from rank 0
    fmt = torch.channels_last if fast else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    torch.manual_seed(seed + rank)                 # dropout
    gen = torch.Generator().manual_seed(seed + rank)   # shuffling (rank 0's is used) and augmentation

    w = loss_weights(y_train, k, "balanced" if class_weights is None else "given", class_weights)
    criterion = nn.CrossEntropyLoss(weight=torch.from_numpy(w).to(dev))
    for name, p in model.named_parameters():
        p.requires_grad_(mode == "finetune" or name.startswith("fc."))
    params = [p for p in model.parameters() if p.requires_grad]
    net = acc.prepare_model(model, device_placement=False)   # DDP for N processes, `model` itself for 1
    if cpu_replicas is not None and cpu_replicas < 1:
        raise InputError(f"cpu_replicas={cpu_replicas} must be >= 1 (1: one model, torch's own threads)")
    n_rep = choose_replicas(dev, batch_size, world, cpu_replicas)
    reps = Replicas(model, n_rep, seed, max(1, usable_cores() // n_rep)) if n_rep > 1 else None
    # replicas step with fused Adam (one fused op instead of a Python loop over ResNet-50's 163 tensors:
    # 80 -> 28 ms per step at batch 32, one intra-op thread, by torch.profiler); one model keeps torch's
    # default, so cpu_replicas=1 trains bit for bit as before
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=reps is not None)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=LR_FACTOR, patience=lr_patience)
    steps = epochs * -(-len(_dist.shard(np.arange(len(x_train)), rank, world)) // batch_size)
    step_sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=ONECYCLE_WARMUP)
                  if lr_schedule == "onecycle" else None)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype(dev.type, fast, precision) == torch.float16)

    hist = {key: [] for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")}
    best = (float("inf"), 0, None)                 # (val loss, epoch, state)
    train_time, seen = 0.0, 0
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(len(x_train), generator=gen).numpy()
        order = _dist.shard(_dist.broadcast_order(order, acc), rank, world)
        loss_sum, correct, beat = 0.0, 0, time.perf_counter()
        bar = Bar(len(order), f"epoch {epoch}/{epochs}", unit="img", enabled=progress)
        with reps or contextlib.nullcontext():      # replicas: their thread counts for this epoch only
            for m in reps.models if reps else [model]:
                _set_mode(m, mode)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                t = preprocess.to_unit(x_train[idx])
                if augment and augment_style == "seed":     # the original augments the 224 px input
                    t = F.interpolate(t, size=(preprocess.image_size,) * 2, mode="bilinear", align_corners=False)
                if augment:
                    t = augment_batch(t, gen, augment_style)
                xb = preprocess.finish(t).to(dev, memory_format=fmt)
                yb = torch.from_numpy(y_train[idx]).to(dev)
                opt.zero_grad(set_to_none=True)
                if reps is not None:
                    loss_v, logits = reps.backward(xb, yb, criterion.weight, fast, params, precision)
                    opt.step()
                else:
                    with autocast(dev.type, fast, precision):
                        logits = net(xb)
                    loss = criterion(logits.float(), yb)
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                    loss_v = loss.item()
                if step_sched is not None:
                    step_sched.step()
                loss_sum += loss_v * len(idx)
                correct += (logits.argmax(1) == yb).sum().item()
                bar.update(len(idx), loss=f"{loss_v:.3f}")
                if progress and time.perf_counter() - beat >= HEARTBEAT_S:
                    beat = time.perf_counter()
                    _heartbeat(epoch, epochs, start + len(idx), len(order), loss_sum, beat - t0)
        train_time += time.perf_counter() - t0
        loss_sum, correct, n_seen = _dist.reduce_sums([loss_sum, correct, len(order)], acc)
        seen += n_seen
        _dist.sync_buffers(model, acc)
        v_loss, val_acc = _evaluate(model, preprocess, x_val, y_val, w, dev, fast, acc,
                                    batch_size if val_loss == "batch_mean" else None, precision)
        epoch_lr = opt.param_groups[0]["lr"]      # the rate this epoch trained at (its end, for onecycle)
        if step_sched is None:
            sched.step(v_loss)
        for key, v in (("train_loss", loss_sum / n_seen), ("train_acc", correct / n_seen),
                       ("val_loss", v_loss), ("val_acc", val_acc), ("lr", epoch_lr),
                       ("seconds", time.perf_counter() - t0)):
            hist[key].append(float(v))
        bar.summary = (f"epoch {epoch}/{epochs}: train loss {hist['train_loss'][-1]:.4f} acc "
                       f"{hist['train_acc'][-1]:.3f} | val loss {v_loss:.4f} acc {val_acc:.3f} | "
                       f"{hist['seconds'][-1]:.0f} s")
        bar.close()                                # the bar goes; its one line per epoch stays
        if v_loss < best[0]:
            best = (v_loss, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= patience:
            break
    if best[2] is None:     # every validation loss was NaN/inf: the run diverged
        raise InputError(f"training diverged: validation loss {hist['val_loss'][-1]} after "
                         f"{len(hist['val_loss'])} epoch(s); lower the learning rate (lr={lr})")
    last_epoch = len(hist["val_loss"])
    if states is not None:
        states["best"] = {key: v.detach().cpu().clone() for key, v in best[2].items()}
        states["last"] = {key: v.detach().cpu().clone() for key, v in model.state_dict().items()}
    if restore_best:
        model.load_state_dict(best[2])
    model.eval()
    return {**hist, "best_epoch": best[1], "scored_epoch": best[1] if restore_best else last_epoch,
            "restore_best": bool(restore_best), "epochs_run": last_epoch,
            "stopped_early": len(hist["val_loss"]) < epochs, "img_per_s": seen / train_time,
            "mode": mode, "fast": fast, "precision": precision_label(dev.type, fast, precision), "processes": world,
            # numerics depend on these (batch norm per replica slice; oneDNN splits reductions by thread),
            # and so does speed on a shared CPU
            "replicas": n_rep, "intra_op_threads": reps.threads if reps else torch.get_num_threads(),
            "optimizer": "Adam (fused)" if reps else "Adam"}


def _evaluate(model, preprocess, x, y, w, dev, fast, acc, batch_mean_of: int | None = None,
              precision: str = "auto") -> tuple[float, float]:
    """Class-weighted mean CE (same weighting as training) and accuracy on a held-out set; each rank
    scores every N-th item and the sums are reduced (one process: all items, in order).

    `batch_mean_of=B`: the loss is instead the mean over batches of B of each batch's weighted mean
    (the original's eval_epoch), which weighs the last, short batch like a full one."""
    model.eval()
    x, y = x[acc.process_index::acc.num_processes], y[acc.process_index::acc.num_processes]
    nll_sum, w_sum, correct, batch_means, n_batches = 0.0, 0.0, 0, 0.0, 0
    wt = torch.from_numpy(w).to(dev)
    for sl, logits in batch_logits(model, preprocess, x, batch_mean_of or 256, dev, fast, False, "val", precision):
        yb = torch.from_numpy(y[sl]).to(dev)
        nll = F.cross_entropy(logits.float(), yb, weight=wt, reduction="sum").item()
        bw = wt[yb].sum().item()
        nll_sum, w_sum = nll_sum + nll, w_sum + bw
        batch_means, n_batches = batch_means + nll / max(bw, 1e-12), n_batches + 1
        correct += (logits.argmax(1) == yb).sum().item()
    nll_sum, w_sum, correct, n, batch_means, n_batches = _dist.reduce_sums(
        [nll_sum, w_sum, correct, len(y), batch_means, n_batches], acc)
    loss = batch_means / max(n_batches, 1) if batch_mean_of else nll_sum / max(w_sum, 1e-12)
    return loss, correct / n


def _heartbeat(epoch: int, epochs: int, done: int, total: int, loss_sum: float, elapsed: float) -> None:
    """One plain progress line for a live reader (the terminal under papermill), kept out of the notebook."""
    rate = done / max(elapsed, 1e-9)
    left = (total - done) / max(rate, 1e-9)
    note(f"epoch {epoch}/{epochs}: {done:,}/{total:,} images, loss {loss_sum / done:.3f}, "
         f"{rate:.0f} img/s, ~{left / 60:.1f} min left in this epoch")
