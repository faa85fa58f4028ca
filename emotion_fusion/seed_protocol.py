"""The original notebook's evaluation protocol (`protocol="seed"`), kept for reproducing its numbers.

One pool per modality (every FER2013 image, every GoEmotions text that passes the length filter),
capped per class (650 images, 1,500 texts), CLIP-similarity pairing (Hungarian assignment on cosine,
within each class), then a 70/15/15 stratified split of the pairs. Unlike the original, images with
identical pixels are kept only once, so a face cannot sit in both the train and the test pairs.
For an exact reproduction also set `label_map=seed multi_label=first`.
"""
from __future__ import annotations

import numpy as np

from . import pairing as _pairing



def seed_split(cfg, fer, go) -> dict:
    """Train/val/test frames for both modalities and the val/test pairs, the seed protocol's way."""
    from . import text as _text
    # Config already guarantees text_model == 'ViT-B/32' for this protocol.
    images = fer.drop_duplicates("hash").reset_index(drop=True)
    images = images.iloc[_pairing.cap_per_class(images.y.to_numpy(), cfg.seed_image_target, cfg.seed)]
    texts = go[(go.y >= 0) & _pairing.seed_text_filter(go.text.tolist())].reset_index(drop=True)
    texts = texts.iloc[_pairing.cap_per_class(texts.y.to_numpy(), cfg.seed_text_target, cfg.seed)]
    images, texts = images.reset_index(drop=True), texts.reset_index(drop=True)

    model, tokenize = _text.load_text_model("ViT-B/32", weights=cfg.text_weights, device=cfg.device,
                                            seed=cfg.seed)
    from .data import stack_pixels
    img_emb = clip_image_embeddings(model, stack_pixels(images), progress=cfg.progress)
    txt_emb = _text.encode_texts(model, tokenize, texts.text.tolist(), fast=cfg.fast, progress=cfg.progress)
    ii, ti = _pairing.hungarian_pairs(img_emb, txt_emb, images.y.to_numpy(), texts.y.to_numpy())
    images, texts = images.iloc[ii].reset_index(drop=True), texts.iloc[ti].reset_index(drop=True)
    parts = _pairing.seed_protocol_split(images.y.to_numpy(), cfg.seed)
    return {"images": {p: images.iloc[i].reset_index(drop=True) for p, i in parts.items()},
            "texts": {p: texts.iloc[i].reset_index(drop=True) for p, i in parts.items()},
            "pairs": {p: np.arange(len(parts[p])) for p in ("val", "test")},   # aligned row by row
            "duplicates_dropped": int(len(fer) - fer.hash.nunique()),
            "text_test_split": "seed pool",
            "test_desc": "15% of the seed protocol's CLIP-similarity pairs (pooled FER2013 × GoEmotions)"}


def clip_image_embeddings(model, pixels: np.ndarray, batch_size: int = 128, progress: bool = True) -> np.ndarray:
    """L2-normalised CLIP image embeddings of 48x48 grayscale faces (resized to CLIP's input size)."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm  # text bars: work in a terminal, Jupyter and papermill alike
    net = model.net
    size = net.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    out = []
    net.eval()
    for start in tqdm(range(0, len(pixels), batch_size), desc="CLIP images", disable=not progress, leave=False):
        x = torch.from_numpy(pixels[start:start + batch_size]).float().div(255).unsqueeze(1)
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        x = ((x.expand(-1, 3, -1, -1) - mean) / std).to(model.device)
        with torch.inference_mode():
            out.append(F.normalize(net.encode_image(x).float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.visual.output_dim), dtype=np.float32)
