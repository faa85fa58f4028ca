"""Reading and writing files safely: bounded image reads, atomic writes that never follow a symlink.

Every file the project writes goes through `atomic_write`: the bytes go to a fresh temp file in the
target's folder (created with O_EXCL, so a planted symlink there is never followed) and the temp file is
renamed over the target. A rename replaces a symlink at the target instead of writing through it, and a
crash or a full disk leaves the old file (or none), never a half-written one.

Every image the project reads goes through `read_image_file` / `read_zip_member`: only regular files (a
FIFO, a device or /dev/zero is refused without being read), at most `MAX_IMAGE_BYTES`, checked before
the bytes are read; `fer2013.decode_face` checks `MAX_IMAGE_PIXELS` before decoding.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Iterator

from emotion_fusion.errors import InputError, WriteError

MAX_IMAGE_BYTES = 20 * 1024 * 1024     # 20 MiB: a phone photo is a few MB, a FER2013 face ~2 KB
MAX_IMAGE_PIXELS = 40_000_000          # 40 megapixels (e.g. 8000x5000), checked from the header
_MB = 1024 * 1024


def _read_umask() -> int:
    """The process's umask, read without changing it (os.umask can only read it by setting it, which
    would leave other threads a moment of umask 0): Linux reports it in /proc/self/status."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1], 8) for ln in f if ln.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):   # no /proc (macOS) or an old kernel
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


_UMASK = _read_umask()


def _too_big(where: str, size: int) -> InputError:
    return InputError(f"{where} is {size / _MB:.1f} MiB; images over {MAX_IMAGE_BYTES // _MB} MiB are refused "
                      "(give a smaller JPEG or PNG)")


def read_image_file(path: str | os.PathLike, subject: str | None = None) -> bytes:
    """The bytes of a regular file of at most MAX_IMAGE_BYTES; a one-line InputError otherwise, naming
    the file as `subject` (default "image PATH"; a caller that names the file itself passes "the file").

    Opened non-blocking so a FIFO cannot hang the read, then checked on the open descriptor (no race
    between the check and the read), then read with a bound even if the file grows meanwhile."""
    path = Path(path)
    what = subject or f"image {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{what} not found; pass an existing image file") from None
    except OSError as e:
        raise InputError(f"{what} cannot be read ({e.strerror}); check it and its permissions") from None
    try:
        check_image_stat(os.fstat(fd), what)
        chunks, left = [], MAX_IMAGE_BYTES + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
    finally:
        os.close(fd)
    if len(raw) > MAX_IMAGE_BYTES:
        raise _too_big(what, len(raw))
    return raw


def check_image_stat(st: os.stat_result, what: str) -> None:
    """A one-line InputError unless `st` is a regular file of at most MAX_IMAGE_BYTES (no read needed)."""
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} is a folder; pass one JPEG or PNG file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} is not a regular file (a pipe, socket or device); pass a JPEG or PNG file")
    if st.st_size > MAX_IMAGE_BYTES:
        raise _too_big(what, st.st_size)


def check_zip_info(info: zipfile.ZipInfo, where: str = "the member") -> None:
    """A one-line InputError for an encrypted member or one declaring over MAX_IMAGE_BYTES (no read)."""
    if info.flag_bits & 0x1:
        raise InputError(f"{where} is encrypted; give an unencrypted zip (or a folder) of images")
    if info.file_size > MAX_IMAGE_BYTES:
        raise _too_big(where, info.file_size)


def read_zip_member(zf: zipfile.ZipFile, name: str, where: str = "the member") -> bytes:
    """A zip member's bytes, at most MAX_IMAGE_BYTES: its declared size is checked first and the read
    is bounded too, since a crafted archive can declare less than it inflates to."""
    info = zf.getinfo(name)
    check_zip_info(info, where)
    with zf.open(info) as f:
        raw = f.read(MAX_IMAGE_BYTES + 1)
    if len(raw) > MAX_IMAGE_BYTES:
        raise _too_big(where, len(raw))
    return raw


def check_out_file(out: str | os.PathLike, inputs: dict[str, str | os.PathLike | None]) -> Path:
    """`out` (an output file) as a Path, unless it is, or resolves to, one of `inputs` ({"--flag": path})
    or lies inside one of them (an images folder, a run directory): inputs are never written."""
    path = Path(out)
    res = path.resolve()
    if res.is_dir():
        raise InputError(f"--out {out} is a folder; give the path of the file to write")
    for flag, p in inputs.items():
        if p is None or not Path(p).exists():
            continue
        inp = Path(p).resolve()
        same = res == inp or (res.exists() and os.path.samefile(res, inp))   # a hard link is the input too
        if same or inp in res.parents:
            where = "is" if same else "lies inside"
            raise InputError(f"--out {out} {where} the input {flag} {p}, which is never written; "
                             "choose an output file outside the inputs")
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """`with atomic_write(path) as f: ...` writes a temp file beside `path` and renames it over `path`
    when the block succeeds; on any error the temp file is removed and `path` is left as it was. Failing
    to write (the folder, the temp file, a full disk, the rename) is a `WriteError` naming `path`, never
    the temp file the user never asked for."""
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            os.fchmod(fd, 0o666 & ~_UMASK)  # what a plain open() would have given, not mkstemp's 0600
            yield f
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        # an error about another file (the block reading its source) is the block's own to report
        ours = tmp is None or e.filename in (None, tmp) if isinstance(e, OSError) else False
        if ours and not isinstance(e, WriteError):
            raise WriteError(e.errno, e.strerror or str(e), str(path)) from None
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """`data` written to `path` atomically (see `atomic_write`)."""
    with atomic_write(path) as f:
        f.write(data)
    return Path(path)
