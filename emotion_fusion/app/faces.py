"""A user's photo -> the 48x48 grayscale face the image branch was trained on.

FER2013 faces are tight, roughly centred 48x48 grayscale crops. A photo is not: we find the largest
face with OpenCV's bundled Haar cascade (it ships inside the opencv-python-headless 4.x wheel and needs
no network; OpenCV 5 dropped it), widen its box by a margin, square it, and hand the crop to the
training decoder (`data.decode_face`: PIL grayscale, bilinear resize to 48x48), so the pixels the model sees
are made exactly as the training faces were.
"""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from emotion_fusion import data as _data
from emotion_fusion.data.fer2013 import to_gray
from emotion_fusion.data.files import MAX_IMAGE_PIXELS, read_image_file
from emotion_fusion.errors import InputError

CASCADE = "haarcascade_frontalface_default.xml"
MARGIN = 0.08             # per side: on FER2013 crops themselves the cascade box is ~41 of 48 px,
                          # so box * (1 + 2 * 0.08) reproduces the dataset's framing
DETECT_SIDE = 480         # photos are scaled so the shorter side is this for detection (speed, and so
                          # a 48x48 FER crop is large enough for the cascade's 24x24 windows)
MIN_FACE_FRACTION = 0.1   # ignore "faces" smaller than 10% of the shorter side (texture false positives)
SMALL_SIDE = 96           # an image this small with no face detected is taken as a face crop already
                          # (FER2013's own 48x48 faces fill the frame, leaving the cascade no context)


@dataclass
class Face:
    """The scored face: 48x48 uint8 pixels, the box in the original image (None = whole image)."""

    pixels: np.ndarray
    box: tuple[int, int, int, int] | None
    n_faces: int
    crop: bool = False      # no face detected, but the image is small enough to be a face crop itself


@functools.lru_cache(maxsize=1)
def _cascade():
    import cv2
    path = Path(cv2.data.haarcascades) / CASCADE
    clf = cv2.CascadeClassifier(str(path))
    if clf.empty():
        raise InputError(f"OpenCV face detector {path} is missing or unreadable; install the pinned "
                         "opencv-python-headless 4.x wheel (`pip install -r requirements.txt`)")
    return clf


def open_image(path: str | Path, raw: bytes | None = None) -> Image.Image:
    """Open an uploaded file (or its bytes `raw`, already read) as an upright grayscale PIL image, or
    raise a one-line InputError.

    The same bounds (bytes before reading, pixels before decoding), EXIF rotation and grayscale
    conversion as the training decoder."""
    name = Path(path).name
    raw = read_image_file(path) if raw is None else raw
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:    # from the header, before decoding
                raise InputError(f"image {name} is {im.width}x{im.height} pixels; upload one under "
                                 f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels")
            im.load()
            return to_gray(ImageOps.exif_transpose(im))   # phone photos store their rotation in EXIF
    except InputError:
        raise
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
            Image.DecompressionBombError) as e:
        kind = "not an image" if isinstance(e, Image.UnidentifiedImageError) else f"unreadable ({e})"
        raise InputError(f"{name} is {kind}; upload a JPEG or PNG photo of a face") from None


def detect_faces(gray: Image.Image) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in `gray`'s pixel coordinates, largest first."""
    import cv2
    scale = DETECT_SIDE / min(gray.size)
    small = gray.resize((max(1, round(gray.width * scale)), max(1, round(gray.height * scale))),
                        Image.Resampling.BILINEAR)
    arr = cv2.equalizeHist(np.asarray(small, dtype=np.uint8))   # for detection only, not for scoring
    min_side = int(DETECT_SIDE * MIN_FACE_FRACTION)
    boxes = _cascade().detectMultiScale(arr, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    out = [tuple(int(round(v / scale)) for v in b) for b in np.asarray(boxes).reshape(-1, 4)]
    return sorted(out, key=lambda b: b[2] * b[3], reverse=True)


def _square_box(box, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """The face box widened by `margin` per side and made square, shifted (not shrunk) to fit."""
    x, y, w, h = box
    side = min(int(round(max(w, h) * (1 + 2 * margin))), width, height)
    cx, cy = x + w / 2, y + h / 2
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, side, side


def to_training_pixels(gray: Image.Image) -> np.ndarray:
    """A grayscale crop -> 48x48 uint8 through the training decoder itself (lossless PNG round trip)."""
    buf = io.BytesIO()
    gray.save(buf, format="PNG")
    return _data.decode_face(buf.getvalue())


def extract_face(path: str | Path, whole_image_if_none: bool = False, margin: float = MARGIN,
                 raw: bytes | None = None) -> Face:
    """The largest face in the image at `path` (or in its bytes `raw`), cropped and decoded as in training.

    No face found: an image of at most SMALL_SIDE px a side is taken as a face crop already (a FER2013
    face) and scored whole; a larger one is an InputError, unless `whole_image_if_none`, when the
    whole image is decoded as `predict` does (squeezed to 48x48).
    """
    gray = open_image(path, raw)
    boxes = detect_faces(gray)
    if not boxes:
        if max(gray.size) <= SMALL_SIDE:
            return Face(to_training_pixels(gray), None, 0, crop=True)
        if not whole_image_if_none:
            raise InputError(f"no face found in {Path(path).name}; try a brighter, frontal photo, or tick "
                             "'use the whole image' to score it anyway")
        return Face(to_training_pixels(gray), None, 0)
    left, top, w, h = _square_box(boxes[0], gray.width, gray.height, margin)
    crop = gray.crop((left, top, left + w, top + h))
    return Face(to_training_pixels(crop), (left, top, w, h), len(boxes))
