"""Error types shared by every layer; the CLI maps UserError to exit code 2 with one line."""


class UserError(Exception):
    """Bad input or configuration that the user can fix (printed as one line, exit code 2)."""


class StorageError(Exception):
    """A storage operation failed after retries (endpoint down, bucket missing, access denied)."""
