"""Reading what a user gives `predict`, `predict --images/--texts` and the demo, before any model loads.

Texts. A `.txt` holds one text per line, lines split at "\\n" (or "\\r\\n") only: Unicode's other line
breaks (U+2028, form feed, NEL) stay inside a text, so line N is always text N. A `.csv` is read as
RFC 4180 CSV (a field may be quoted; a text that spans lines there is reported, as it is almost always an
unclosed quote); a `.tsv` is tab-separated with no quoting at all (a `"` is just a character, as in
GoEmotions' own files). Ids must be unique. Faces: bounded reads (`data.files`), a zip's member names
must be unique, and a member that cannot be read (encrypted, damaged) is a bad row like an undecodable one.
"""
from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from emotion_fusion.data.fer2013 import READ_ERRORS, decode_face
from emotion_fusion.data.files import check_image_stat, check_zip_info, read_image_file, read_zip_member
from emotion_fusion.errors import InputError

MAX_TEXT_CHARS = 2000   # one limit for the CLI and the demo: the encoders read ~77 (CLIP) or 256 (MiniLM)
                        # tokens, so a longer "text" is a pasted file, not a sentence
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")   # a cell starting so is run as a formula by spreadsheets


def check_text(text) -> str:
    """The text as given, or a one-line InputError for an empty or overlong one (worded for every
    caller: --text, a line of a --texts file, the demo's box)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError("the text is empty; write a sentence")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"the text has {len(text):,} characters; keep it under {MAX_TEXT_CHARS:,} "
                         "(the text model reads only the first few hundred words anyway)")
    return text


def safe_cell(value: str) -> str:
    """An id for a CSV cell: one that a spreadsheet would run as a formula gets a leading `'`."""
    return "'" + value if value.startswith(_FORMULA) else value


def read_face(image) -> np.ndarray:
    """A face file (JPEG/PNG path) as 48x48 uint8 grayscale, decoded exactly as the training faces."""
    path = Path(image)
    raw = read_image_file(path)
    try:
        return decode_face(raw)
    except InputError as e:   # decode_face's one-line reason, with the file named here
        raise InputError(f"image {path}: {e}; pass a JPEG or PNG face image") from None


class FaceFiles:
    """Faces of a folder or zip, decoded on access: (index, 48x48 uint8 or None, error or "").

    A map-style dataset for torch's DataLoader (it needs only __len__ and __getitem__)."""

    def __init__(self, source):
        self.source = Path(source)
        if self.source.is_dir():
            self.names = sorted(p.relative_to(self.source).as_posix() for p in self.source.rglob("*")
                                if not p.is_dir() and p.suffix.lower() in IMAGE_SUFFIXES)   # a FIFO too: reported
        elif self.source.is_file() and zipfile.is_zipfile(self.source):
            with zipfile.ZipFile(self.source) as z:   # closed again: each worker opens its own handle
                self.names = sorted(n for n in z.namelist() if n.lower().endswith(IMAGE_SUFFIXES))
            twice = next((a for a, b in zip(self.names, self.names[1:]) if a == b), None)
            if twice is not None:
                raise InputError(f"--images {self.source} holds the member {twice} more than once (ids must be "
                                 "unique); rebuild the zip without the duplicate")
        else:
            raise InputError(f"--images {self.source} is neither a folder nor a zip file; give a folder or .zip "
                             "of JPEG/PNG faces")
        if not self.names:
            raise InputError(f"--images {self.source} holds no .jpg/.jpeg/.png file")
        self._zip = None

    def __len__(self) -> int:
        return len(self.names)

    def precheck(self) -> dict[int, str]:
        """{position: why} of the faces that are bad without reading them (one stat per file, or the
        zip's directory): encrypted or oversized members, special or oversized files. Decoding errors
        are found later, in `__getitem__`."""
        bad = {}
        if self.source.is_dir():
            for i, name in enumerate(self.names):
                try:
                    check_image_stat(os.stat(self.source / name), "the file")
                except InputError as e:
                    bad[i] = str(e)
                except OSError as e:   # vanished or unreadable since listing; a broken symlink
                    bad[i] = f"cannot read it ({e.strerror})"
        else:
            with zipfile.ZipFile(self.source) as z:
                infos = {info.filename: info for info in z.infolist()}
            for i, name in enumerate(self.names):
                try:
                    check_zip_info(infos[name])
                except InputError as e:
                    bad[i] = str(e)
        return bad

    def __getitem__(self, i: int):
        name = self.names[i]
        try:
            if self.source.is_dir():
                raw = read_image_file(self.source / name, "the file")   # score_faces names the file first
            else:
                self._zip = self._zip or zipfile.ZipFile(self.source)
                raw = read_zip_member(self._zip, name)
            return i, decode_face(raw), ""
        except InputError as e:
            return i, None, str(e)
        except (*READ_ERRORS, zipfile.BadZipFile) as e:   # encrypted (RuntimeError), damaged, unreadable
            return i, None, f"cannot read it ({type(e).__name__}: {e})".replace("\n", " ")


def _regular(path, flag: str, what: str) -> Path:
    """`path` if it is a regular file (or a link to one), else a one-line InputError saying what it is."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{flag} {path} does not exist; give {what}")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file (a pipe, socket or device)"
        raise InputError(f"{flag} {path} is {kind}; give {what}")
    return path


def _table(path: Path, flag: str, sep: str) -> list[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of every record of a CSV/TSV file, header first."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{flag} {path} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting, strict=True)
    rows, first = [], 1
    try:
        for rec in reader:
            if rec:    # a blank line is not a record
                rows.append((first, reader.line_num, rec))
            first = reader.line_num + 1
    except csv.Error as e:
        where = f"line {first}" if reader.line_num <= first else f"lines {first}-{reader.line_num}"
        other = " or use a .tsv/.txt file" if flag == "--texts" else ""   # --pairs is CSV only
        raise InputError(f"{flag} {path} {where}: malformed CSV ({e}); fix the quoting (a `\"` "
                         f"inside a quoted field is written `\"\"`){other}") from None
    if not rows:
        raise InputError(f"{flag} {path} is empty; give a header line and one row per item")
    return rows


def _records(path: Path, flag: str, sep: str, need: tuple[str, ...]):
    """(header, [(first line, "line N", {column: value} or None, why)]), each checked against the header."""
    (_, _, header), *body = _table(path, flag, sep)
    twice = next((c for k, c in enumerate(header) if c in header[:k]), None)
    if twice is not None:   # a dict of the row would silently keep the last of them
        raise InputError(f"{flag} {path} names the column `{twice}` twice (columns: {', '.join(header)}); "
                         "keep one")
    missing = [c for c in need if c not in header]
    if missing:
        raise InputError(f"{flag} {path} has no `{missing[0]}` column (columns: {', '.join(header)}); name the "
                         f"columns {', '.join(need)}")
    out = []
    for first, last, rec in body:
        where = f"line {first}" if first == last else f"lines {first}-{last}"
        if len(rec) != len(header):
            out.append((first, where, None, f"{len(rec)} fields, the header has {len(header)}"))
        elif first != last:
            out.append((first, where, None, "a field spans several lines (an unclosed `\"` quote?)"))
        else:
            out.append((first, where, dict(zip(header, rec)), ""))
    return header, out


def read_texts(path) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]], int]:
    """(good rows (position, id, text), bad rows (position, "FILE line N: why"), number of rows)."""
    path = _regular(path, "--texts", "a .txt, .csv or .tsv file")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        try:
            lines = path.read_text(encoding="utf-8-sig").split("\n")
        except UnicodeDecodeError as e:
            raise InputError(f"--texts {path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
        if lines[-1] == "":
            lines.pop()     # the file's final newline ends the last line; it starts no text
        rows = [(str(n), f"line {n}", t.removesuffix("\r"), "") for n, t in enumerate(lines, 1)]
    elif suffix in (".csv", ".tsv"):
        header, recs = _records(path, "--texts", "\t" if suffix == ".tsv" else ",", ("text",))
        rows, seen = [], {}
        for first, where, rec, why in recs:
            ident = rec["id"] if rec and "id" in header else str(first)   # else the line number
            if rec and "id" in header:
                if ident in seen:
                    raise InputError(f"--texts {path}: id {ident!r} on {seen[ident]} and {where}; ids must be "
                                     "unique (rename one)")
                seen[ident] = where
            rows.append((ident, where, rec["text"] if rec else "", why))
    else:
        raise InputError(f"--texts {path}: unknown file type {suffix!r}; use .txt, .csv or .tsv")
    if not rows:
        raise InputError(f"--texts {path} holds no texts; give one text per line (.txt) or per row")
    good, bad = [], []
    for pos, (ident, where, text, why) in enumerate(rows):
        try:
            if why:
                raise InputError(why)
            good.append((pos, ident, check_text(text)))
        except InputError as e:
            bad.append((pos, f"{path} {where}: {e}"))
    return good, bad, len(rows)


def read_pairs(path) -> list[tuple[str, str, str]]:
    """(image id, text id, "FILE line N") rows of a pairs CSV with columns `image` and `text`."""
    path = _regular(path, "--pairs", "a CSV with columns image,text")
    _, recs = _records(path, "--pairs", ",", ("image", "text"))
    for _, where, rec, why in recs:
        if rec is None:
            raise InputError(f"--pairs {path} {where}: {why}; give one image,text pair per line")
    if not recs:
        raise InputError(f"--pairs {path} holds no pairs; give one image,text pair per line")
    return [(rec["image"], rec["text"], f"{path} {where}") for _, where, rec, _ in recs]
