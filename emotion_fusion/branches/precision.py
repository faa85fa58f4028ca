"""Where and how fast the networks run: the device, and the autocast precision that really pays.

Chosen when a function is called, never at import (a notebook may set CUDA_VISIBLE_DEVICES or
EMOTION_FUSION_BF16 after `import emotion_fusion`). Imports no torch at module import.
"""
from __future__ import annotations

import contextlib
import functools
import os

from emotion_fusion.errors import InputError

from .choices import PRECISIONS

BF16_ENV = "EMOTION_FUSION_BF16"   # "1" forces bf16 autocast on CPU, "0" forbids it; unset = detect
DEVICE_TYPES = ("cpu", "cuda", "mps")


def choose_device(device=None, model=None):
    """The one device chooser: an explicit `device` wins (checked: it must exist here), else the
    model's own device, else cuda when available, else cpu."""
    import torch

    if device is not None:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"device {device!r} is not a torch device; use cpu, cuda, cuda:N or leave it "
                             "unset (None picks cuda when available, else cpu)") from None
        if dev.type not in DEVICE_TYPES:
            raise InputError(f"device {device!r} is not supported; use one of {', '.join(DEVICE_TYPES)}")
        if dev.type == "cuda" and not (torch.cuda.is_available()
                                       and (dev.index or 0) < torch.cuda.device_count()):
            raise InputError(f"device {device!r} is not available on this machine (no such CUDA GPU); "
                             "use --set device=cpu or leave device unset")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise InputError(f"device {device!r} is not available on this machine; use --set device=cpu")
        return dev
    if model is not None:
        return next(model.parameters()).device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX).

    Without them oneDNN emulates bf16, which measured 3x slower at ResNet-50 inference and ~15x slower
    at training than fp32 on an AVX-512 Xeon without avx512_bf16; so `fast` only turns bf16 on where
    it pays. channels_last (fp32) helps everywhere (~1.5x).
    """
    forced = os.environ.get(BF16_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise InputError(f"unknown image_precision {precision!r}; choose one of {', '.join(PRECISIONS)}")


def autocast_dtype(device_type: str, fast: bool, precision: str = "auto"):
    """The autocast dtype for `fast` on this device (None = plain fp32): fp16 AMP on CUDA, bf16 on a
    CPU with native bf16; `precision="fp32"` is None on every device."""
    import torch

    _check_precision(precision)
    if not fast or precision == "fp32":
        return None
    if device_type == "cuda":
        return torch.float16
    if device_type == "cpu" and cpu_native_bf16():
        return torch.bfloat16
    return None


def autocast(device_type: str, fast: bool, precision: str = "auto"):
    """A context manager: autocast at `autocast_dtype`, or nothing."""
    import torch

    dtype = autocast_dtype(device_type, fast, precision)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


@contextlib.contextmanager
def strict_fp32(enabled: bool = True):
    """With `enabled`, CUDA convolutions and matmuls in full fp32: TF32 off for cuDNN and cuBLAS (PyTorch
    lets cuDNN convolutions use TF32 by default on Ampere and later GPUs; the original's T4 has no TF32).
    The flags are put back afterwards; they change nothing on a CPU."""
    if not enabled:
        yield
        return
    import torch

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def honours_fp32(fn):
    """Decorate a function with a keyword-only `precision`: called with precision="fp32", it runs under
    `strict_fp32`."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with strict_fp32(kwargs.get("precision", "auto") == "fp32"):
            return fn(*args, **kwargs)
    return run


def precision_label(device_type: str, fast: bool, precision: str = "auto") -> str:
    """For tables and histories: e.g. 'fp32', 'fp32 (TF32 off)', 'bf16 autocast', 'fp16 AMP'."""
    dtype = autocast_dtype(device_type, fast, precision)
    if dtype is None:
        return "fp32 (TF32 off)" if precision == "fp32" and device_type == "cuda" else "fp32"
    return "fp16 AMP" if device_type == "cuda" else "bf16 autocast"
