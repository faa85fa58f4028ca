"""The datasets and what a run does with them: FER2013 faces, GoEmotions texts, the 7 canonical
emotions (`labels`), label pairing and the holdout protocol. Inputs are only ever read; bad input raises
`InputError` naming the file and the fix. Names load on use: `labels` alone must not pull in pandas."""
from emotion_fusion._lazy import lazy_exports

_WHERE = {
    "FER_SPLITS": "fer2013", "IMAGE_SIZE": "fer2013", "ImageDecodeError": "fer2013", "decode_face": "fer2013",
    "drop_duplicates_of": "fer2013", "load_fer2013": "fer2013", "pixel_hash": "fer2013", "stack_pixels": "fer2013",
    "GO_SPLITS": "goemotions", "HF_IDS": "goemotions", "load_goemotions": "goemotions",
    "CLASSES": "labels", "NUM_CLASSES": "labels",
    "cap_per_class": "pairing", "make_pairs": "pairing", "stratified_split": "pairing",
    "ENV_VAR": "paths", "REPO_DATA": "paths", "resolve_paths": "paths",
    "find_duplicates": "summary", "format_summary": "summary", "summarize": "summary",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
