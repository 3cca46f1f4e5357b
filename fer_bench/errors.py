"""The one exception type users see as a single line at the command line."""


class FerBenchError(Exception):
    """Bad input or an unusable setting, worded for the user.

    The message names the file or option and what is wrong; the CLI prints it as one line with no traceback.
    """
