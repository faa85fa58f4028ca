"""emotion_fusion: ResNet-50 faces + CLIP/MiniLM texts, combined by weighted late fusion.

The public API is a handful of functions (in the style of `clip.load`), everything the notebook uses:

    cfg = ef.Config.from_profile("offline", fusion_weight=0.6)
    result = ef.run(cfg, out="runs/offline")          # train (or reuse the cache), score, write the run dir
    result.table()                                     # the titled results table
    ef.score_run("runs/offline", weight=0.3)           # re-score from the cache: no model, no torch
    ef.predict("runs/offline", image="face.jpg", text="I can't believe it!")

Names are imported lazily so that `import emotion_fusion` (and the `fuse` CLI) never pays for torch.
"""
from importlib import import_module

from .errors import InputError
from .labels import CLASSES

__version__ = "0.2.0"

_LAZY = {
    # data and pairing
    "load_fer2013": "data", "load_goemotions": "data", "format_summary": "data", "make_pairs": "pairing",
    # branches and encoders
    "load_image_model": "image", "ImageBranch": "image", "load_text_model": "text", "TextBranch": "text",
    "available_models": "text", "register_encoder": "encoders", "EncoderSpec": "encoders",
    # running and using a run
    "Config": "config", "run": "pipeline", "RunResult": "pipeline", "evaluate_run": "inference",
    "predict": "inference", "load_predictor": "inference", "load_examples": "protocol",
    "load_outputs": "runs",
    # fusion, scoring and tables
    "fuse": "fusion", "sweep": "fusion", "evaluate": "metrics", "per_class_table": "metrics",
    "confusion": "metrics", "mcnemar": "metrics", "score_run": "report", "results_table": "report",
    "format_results": "report", "as_table": "report", "original_bug": "seedbug",
    "comparison_table": "report", "text_reuse_table": "report",
    # plots
    "plot_history": "plots", "plot_sweep": "plots", "plot_confusions": "plots", "plot_face_grid": "plots",
    "plot_example_pairs": "plots",
    # the interactive page
    "demo": "demo",
}

__all__ = ["CLASSES", "InputError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'emotion_fusion' has no attribute {name!r}")
