"""The demo's uploads: users' face photos, kept in the session's memory and deleted from disk.

Gradio hands a handler the path of the uploaded file in its cache, and the page keeps sending that
same path on every later Submit. So the bytes are read into the session's state (`keep_upload`) as soon
as the image arrives, and the file itself can go (`forget_upload`) without breaking a second Submit.
"""
from __future__ import annotations

import os
from pathlib import Path

from emotion_fusion.data.files import read_image_file
from emotion_fusion.errors import InputError


def keep_upload(image: str | None, upload: dict | None, required: bool = False) -> dict | None:
    """The session's upload: {"path": the page's path for it, "bytes": its content}, read (bounded by
    MAX_IMAGE_BYTES) when `image` is a path not read yet; None when the image was cleared. The page calls
    this as soon as an image arrives, so an upload that gradio's cache has since deleted (scored once, or
    older than CACHE_AGE) is still scored. `required`: a path whose file is gone and not kept here is a
    one-line InputError saying to upload it again (else the upload is left as it was)."""
    if not image:
        return None
    if upload and upload.get("path") == str(image):
        return upload
    name = Path(image).name
    if not os.path.lexists(image):
        if required:
            raise InputError(f"image {name} is no longer on the server; upload it again")
        return upload
    return {"path": str(image), "bytes": read_image_file(image, f"image {name}")}


def forget_upload(path: str | None) -> None:
    """Delete a scored upload when it lies in gradio's upload cache (never a file of the user's own,
    as when a handler is called directly with a path)."""
    if not path:
        return
    from gradio.utils import get_upload_folder
    p, cache = Path(path).resolve(), Path(get_upload_folder()).resolve()
    if cache in p.parents and p.is_file():
        p.unlink(missing_ok=True)
