"""The two branches: the ResNet-50 image branch (build, weights, training) and the text branch (the
encoder registry, its heads); where and in what precision they run; distributed training.

Each branch follows one protocol: `from_config(cfg)`, `fit(train, val)`, `predict_proba(items) -> (N, 7)`,
`save(dir)`, `load(dir, cfg)`. Names are imported on first use, so that `config` can read the registry
of text encoders without importing torch."""
from emotion_fusion._lazy import lazy_exports

_WHERE = {
    "ImageBranch": "image", "ImagePreprocess": "image", "load_image_model": "image", "save_image_model": "image",
    "predict_proba": "image", "train_image_model": "train",
    "TextBranch": "text", "load_text_model": "text", "encode_texts": "text", "available_models": "text",
    "EncoderSpec": "encoders", "register_encoder": "encoders", "get_encoder": "encoders",
    "TextHead": "heads", "choose_text_head": "heads", "fit_probe": "heads", "zero_shot_head": "heads",
    "choose_device": "precision", "precision_label": "precision",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
