"""Weight files in the `full` profile's real formats and cache layouts, filled from random init.

    python tools/random_weights.py DIR          # then: export TORCH_HOME=DIR/torch HF_HOME=DIR/hf

With these in place `--profile full` or `--profile seed` runs its real loading path on a machine with no
network (tests, a dry run before a GPU job); every number it prints is meaningless. Its tables name
ImageNet / openai because that is the path that loaded them; pass `--set weights_declared_random=true`
(the command this tool prints does) and their titles say RANDOM-INIT as well. What it writes:
- ResNet-50: a torchvision state dict (1000-class fc included) named as torchvision names
  ResNet50_Weights.IMAGENET1K_V1, in `$TORCH_HOME/hub/checkpoints`;
- CLIP ViT-B/32 in the Hugging Face cache layout (blob, snapshot symlink, refs/main), where
  `open_clip.create_model(..., pretrained="openai")` downloads it: `open_clip_model.safetensors` (what
  open_clip fetches when safetensors is installed), or `open_clip_pytorch_model.bin` (torch.save; its
  other file) with `--hf-format bin`;
- with `--openai-archive`: OpenAI's own release format, a TorchScript archive `ViT-B-32.pt` with OpenAI's
  key names and fp16 weights, in `HOME/.cache/clip` (open_clip's url cache; what `clip.load` users hold).
"""
from __future__ import annotations

import argparse
import logging
import os
import warnings
from pathlib import Path

import torch

RESNET_FILE = "resnet50-0676ba61.pth"        # torchvision's name for ResNet50_Weights.IMAGENET1K_V1
HF_REPO_DIR = "models--timm--vit_base_patch32_clip_224.openai"
HF_FILES = {"safetensors": "open_clip_model.safetensors", "bin": "open_clip_pytorch_model.bin"}
OPENAI_FILE = "ViT-B-32.pt"
# Linear / conv / attention weights and the two projections are fp16 in OpenAI's release (its
# convert_weights); layer norms, embeddings and logit_scale stay fp32.
FP16_PARTS = ("attn.", "mlp.", "conv1.", "text_projection", "visual.proj")
# small targets for a dry run: random CLIP cosines sit below the original's 0.15, hence -1
DRY_RUN_SETTINGS = "seed_pairs_rare=10 seed_pairs_common=20 seed_min_similarity=-1 epochs=2"


def clip_state(arch: str = "ViT-B-32", seed: int = 1) -> dict[str, torch.Tensor]:
    """A random-init open_clip state dict (open_clip's key names are OpenAI's)."""
    import open_clip

    with torch.random.fork_rng(devices=[]):      # leaves the caller's global RNG alone
        torch.manual_seed(seed)
        return open_clip.create_model(arch, pretrained=None, force_quick_gelu=True).state_dict()


def resnet_state(seed: int = 2) -> dict[str, torch.Tensor]:
    """A random-init torchvision ResNet-50 state dict, with its 1000-class fc as torchvision ships it."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torchvision.models.resnet50().state_dict()


class _Tensors(torch.nn.Module):
    """A module that only holds tensors under given dotted names; scripted, it is a TorchScript archive."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_openai_archive(state: dict[str, torch.Tensor], path: Path) -> Path:
    """`state` as a TorchScript archive shaped like OpenAI's ViT-B-32.pt (its tensors, not its code)."""
    root = _Tensors()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if name not in module._modules:
                module.add_module(name, _Tensors())
            module = module._modules[name]
        module.register_buffer(leaf, (value.half() if any(p in key for p in FP16_PARTS) else value).clone())
    # openai/CLIP's build_model deletes these three from the archive's state dict before loading it
    for key, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        root.register_buffer(key, torch.tensor(value))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():     # torch>=2.10 calls TorchScript deprecated; OpenAI's file is one
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(root).save(str(path))
    return path


def save_hf_cached(state: dict, hf_home: Path, fmt: str = "safetensors", commit: str = "0" * 40) -> Path:
    """The HF cache layout under `hf_home`/hub: bytes in blobs/, a snapshot symlink, refs/main."""
    repo = Path(hf_home) / "hub" / HF_REPO_DIR
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    blob = repo / "blobs" / f"blob-{fmt}-{commit[:8]}"
    blob.unlink(missing_ok=True)        # never write through a hard link into someone else's file
    if fmt == "safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(blob))
    else:
        torch.save(state, blob)
    snap = repo / "snapshots" / commit / HF_FILES[fmt]
    snap.parent.mkdir(parents=True, exist_ok=True)
    snap.unlink(missing_ok=True)
    snap.symlink_to(os.path.relpath(blob, snap.parent))
    (repo / "refs" / "main").write_text(commit)
    return snap


def save_hub_resnet(state: dict, torch_home: Path) -> Path:
    """`state` as `$TORCH_HOME/hub/checkpoints/resnet50-0676ba61.pth`."""
    path = Path(torch_home) / "hub" / "checkpoints" / RESNET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    torch.save(state, path)
    return path


def dry_run_instructions(folder: Path) -> str:
    """How to use the files: the environment, and a dry-run command that declares the weights random
    (`weights_declared_random=true`): the loader cannot tell these files from trained ones, so the run
    is told, and its titles say RANDOM-INIT."""
    d = Path(folder).resolve()
    return (f"RANDOM weights in real formats; use them with:\n"
            f"  export TORCH_HOME={d / 'torch'} HF_HOME={d / 'hf'} EMOTION_FUSION_OFFLINE=1\n"
            f"and declare them random in every run, e.g. a small dry run of the original's recipe:\n"
            f"  python -m emotion_fusion run --profile seed --fer2013 FER2013 --goemotions GOEMOTIONS --out RUN_DIR "
            f"--set weights_declared_random=true {DRY_RUN_SETTINGS}")   # one --set: it takes many values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="writes DIR/torch (TORCH_HOME) and DIR/hf (HF_HOME)")
    ap.add_argument("--hf-format", choices=list(HF_FILES), default="safetensors",
                    help="the HF cache file: open_clip_model.safetensors (default) or open_clip_pytorch_model.bin")
    ap.add_argument("--openai-archive", action="store_true",
                    help="also write DIR/home/.cache/clip/ViT-B-32.pt (found when HOME=DIR/home)")
    a = ap.parse_args()
    # open_clip logs "initialized randomly" for the network it builds; that is the point here
    logging.getLogger().setLevel(logging.ERROR)
    clip = clip_state()
    written = [save_hub_resnet(resnet_state(), a.dir / "torch"), save_hf_cached(clip, a.dir / "hf", a.hf_format)]
    if a.openai_archive:
        written.append(save_openai_archive(clip, a.dir / "home" / ".cache" / "clip" / OPENAI_FILE))
    print("\n".join(f"wrote {p}" for p in written))
    print(dry_run_instructions(a.dir), flush=True)


if __name__ == "__main__":
    main()
