"""What the original notebook printed (`Multimodal Emotion Recognition.ipynb`, 0-based cell numbers), in
canonical class names: the yardstick the `seed` profile's pairing summary is set against."""
from __future__ import annotations

import pandas as pd

from emotion_fusion.data.labels import CLASSES

# cell 23: FER2013 train images per class after its dedup (md5 of file bytes) and disgust augmentation
POOL_IMAGES = {"angry": 3845, "disgust": 1500, "fear": 3885, "happy": 7087, "neutral": 4873, "sad": 4723,
               "surprise": 2679}
# cell 21/23: GoEmotions train texts per class after cleaning, length, neutral thinning, set-order label
POOL_TEXTS = {"angry": 4268, "disgust": 978, "fear": 679, "happy": 15671, "neutral": 3414, "sad": 2614,
              "surprise": 3961}
# cell 19: texts carrying each mapped class (a text with two classes counts twice), after thinning
LABEL_COUNTS = {"angry": 5485, "disgust": 1066, "fear": 711, "happy": 15691, "neutral": 4597, "sad": 2957,
                "surprise": 5307}
# cell 20: the loss weights computed from LABEL_COUNTS, which cell 28 put on the image loss
TEXT_COUNT_WEIGHTS = {"angry": 0.933, "disgust": 4.800, "fear": 7.196, "happy": 0.326, "neutral": 1.113,
                      "sad": 1.730, "surprise": 0.964}
NEUTRAL_ONLY, NEUTRAL_KEPT = 13525, 2743     # cell 19: texts whose mapped labels are exactly {neutral}
POOL_SKIPPED, POOL_FINAL = 11825, 31585      # cell 19: of the 43,410 train texts, skipped (length, neutral) and kept
# cell 25: pairs per class after the post-pairing text filters (8,800 before them)
FINAL_PAIRS = {"angry": 1453, "disgust": 626, "fear": 621, "happy": 1421, "neutral": 1433, "sad": 1454,
               "surprise": 1464}
# cell 26: pairs per class in each part of its 70/15/15 split (random_state=42)
SPLIT_PAIRS = {"train": {"angry": 1017, "disgust": 438, "fear": 435, "happy": 994, "neutral": 1003, "sad": 1018,
                         "surprise": 1025},
               "val": {"angry": 218, "disgust": 94, "fear": 93, "happy": 213, "neutral": 215, "sad": 218, "surprise": 220},
               "test": {"angry": 218, "disgust": 94, "fear": 93, "happy": 214, "neutral": 215, "sad": 218,
                        "surprise": 219}}
# cell 28: its training log, (val loss, val acc) per epoch; early stopping after epoch 8
EPOCH_LOG = [(1.3325, 0.2887), (1.1907, 0.3446), (1.1411, 0.4217), (1.2135, 0.4115), (1.3192, 0.5201),
             (1.2863, 0.5067), (1.1991, 0.5334), (1.1705, 0.5972)]


def pool_comparison(summary: dict) -> pd.DataFrame:
    """Per class, this run's pools and final pairs next to the original's (a `seed_pairs` summary)."""
    rows = {r["class"]: r for r in summary["classes"]}
    df = pd.DataFrame({"faces": [rows[c]["pool_images"] for c in CLASSES],
                       "faces (original)": [POOL_IMAGES[c] for c in CLASSES],
                       "texts": [rows[c]["pool_texts"] for c in CLASSES],
                       "texts (original)": [POOL_TEXTS[c] for c in CLASSES],
                       "pairs": [rows[c]["final"] for c in CLASSES],
                       "pairs (original)": [FINAL_PAIRS[c] for c in CLASSES]}, index=list(CLASSES))
    return pd.concat([df, df.sum().to_frame("total").T]).astype(int)
