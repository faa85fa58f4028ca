"""Everything that reproduces the original notebook (`protocol="seed"`): its pairing protocol
(`protocol`, `pairing`), its text rules (`texts`, `setorder`), its image rules (`augment`), its bugs,
shown (`bugs`), and the numbers it printed (`reference`). Nothing here is a default of the other profiles."""
from emotion_fusion._lazy import lazy_exports

_WHERE = {
    "seed_split": "protocol", "seed_pairs": "protocol", "pairing_summary_table": "protocol",
    "hungarian_pairs": "pairing", "seed_protocol_split": "pairing",
    "text_pool": "texts", "clean_text": "texts", "seed_text_class_weights": "texts", "set_order": "setorder",
    "pool_comparison": "reference",
    "augment_class": "augment", "clip_image_embeddings": "augment",
    "original_bug": "bugs", "bug_table": "bugs", "run_bug_table": "bugs",
    "original_epoch_bug": "bugs", "epoch_table": "bugs", "run_epoch_table": "bugs",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
