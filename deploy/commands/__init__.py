"""Pure argv builders: each returns a tuple of strings to run on a host."""


def script(body, *args):
    """argv running a fixed POSIX sh script with positional arguments.

    User input only ever travels as "$1", "$2", ...; the script text is a constant.
    The script stops at the first failing command (`set -e`).
    """
    return ("sh", "-c", "set -e" + body, "fabship", *(str(arg) for arg in args))
