"""The errors fabship turns into a clear message and an exit code (never a traceback)."""


class FabshipError(Exception):
    """Base: the message is for the user; `exit_code` is what `fab` exits with."""

    exit_code = 1


class ConfigError(FabshipError):
    """Bad input: configuration, templates, arguments. Nothing was changed anywhere."""

    exit_code = 2


class DeployError(FabshipError):
    """A deploy (or rollback) could not complete on some host."""

    exit_code = 1
