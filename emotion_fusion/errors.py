"""The one exception type for bad user input.

Every message is a single line that names the offending file or value and says what to do; the CLI
prints it to stderr and exits non-zero, the notebook shows it as-is.
"""


class InputError(ValueError):
    """Bad input from the user (a file, a folder, a value): one line naming it and the fix."""
