"""The one exception type the CLI turns into a one-line error and exit code 2."""


class HarnessError(Exception):
    """A problem the user can fix; the message names the file or key and the fix."""
