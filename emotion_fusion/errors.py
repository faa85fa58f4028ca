"""The one exception type for bad user input.

Every message is a single line that names the offending file or value and says what to do; the CLI
prints it to stderr and exits non-zero, the notebook shows it as-is.
"""


class InputError(ValueError):
    """Bad input from the user (a file, a folder, a value): one line naming it and the fix."""


def useful_line(e: Exception, limit: int = 240) -> str:
    """The useful line of a library error for a one-line message (torch's load errors start with an
    empty or generic line and put "size mismatch for ..." further down)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "size mismatch" in ln or "Missing key" in ln or "Unexpected key" in ln]
    return ((useful or lines or [type(e).__name__])[0])[:limit].rstrip(".")   # the caller goes on with "; ..."


def json_kind(obj) -> str:
    """JSON's own name for a parsed value's type (null, array, string, ...), for messages."""
    names = {type(None): "null", list: "array", dict: "object", str: "string", bool: "boolean",
             int: "number", float: "number"}
    return names.get(type(obj), type(obj).__name__)
