"""One exception type for mistakes a user can fix (bad file, line, key); the CLIs print it on one line."""


class SqueezeDetError(Exception):
    """A user-facing error: the message names the file, line or key at fault and is printed as is."""


class ConfigError(SqueezeDetError):
    """A configuration file is missing, unparsable or has a bad key/value."""


class DataError(SqueezeDetError):
    """A dataset file (image, label, split, result) is missing or malformed."""


class ModelFileError(SqueezeDetError):
    """A weights / .tflite / metadata file is missing, corrupt or does not match its metadata."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): what a one-line
    error quotes from a library's multi-line failure."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
