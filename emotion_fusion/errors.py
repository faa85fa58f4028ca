"""The exception types for bad user input and for a file that could not be written.

Every message is a single line that names the offending file or value and says what to do; the CLI
prints it to stderr and exits non-zero, the notebook shows it as-is.
"""


class InputError(ValueError):
    """Bad input from the user (a file, a folder, a value): one line naming it and the fix."""


class WriteError(OSError):
    """Writing a file failed (a full disk, an unwritable folder); `filename` is the file that was being
    written, and it was left as it was (`data.files.atomic_write`): nothing is half-written."""


def useful_line(e: Exception, limit: int = 240) -> str:
    """`Type: the useful line` of a library error, for a one-line message (torch's load errors start
    with an empty or generic line and put "size mismatch for ..." further down). Cut at a word, with
    "…", past `limit` characters; just the type when the error has no text (EOFError on an empty file)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "size mismatch" in ln or "Missing key" in ln or "Unexpected key" in ln]
    # a size mismatch line as is; otherwise the first sentence (torch goes on "This is an internal miniz
    # error. If you are seeing this error, ..." and breaks lines mid-sentence)
    line = useful[0] if useful else " ".join(lines).split(". ")[0]
    if len(line) > limit:
        line = line[:limit].rsplit(" ", 1)[0] + " …"
    line = line.rstrip(".")           # the caller goes on with "; ..."
    return f"{type(e).__name__}: {line}" if line else type(e).__name__


def json_kind(obj) -> str:
    """JSON's own name for a parsed value's type (null, array, string, ...), for messages."""
    names = {type(None): "null", list: "array", dict: "object", str: "string", bool: "boolean",
             int: "number", float: "number"}
    return names.get(type(obj), type(obj).__name__)
