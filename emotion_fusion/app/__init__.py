"""Using a finished run: single and batch prediction (`inference`, `batch`), the interactive page
(`demo`, with face detection in `faces` and the page's notes in `notes`). Names load on use, so that
nothing here pays for gradio or torch until it is called."""
from emotion_fusion._lazy import lazy_exports

_WHERE = {
    "Predictor": "inference", "load_predictor": "inference", "predict": "inference", "evaluate_run": "inference",
    "predict_batch": "batch", "create_app": "demo", "serve": "demo", "extract_face": "faces",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
