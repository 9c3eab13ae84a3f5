"""Exceptions with one-line messages that name the bad value."""


class MedverifyError(Exception):
    """Base class: a user-facing error whose message is one line naming the bad value."""


class DataError(MedverifyError):
    """A data file is missing, corrupt or malformed."""


class ConfigError(MedverifyError):
    """A configuration value is invalid."""


class ExportError(MedverifyError):
    """ONNX export or parity check failed."""


class ModelError(MedverifyError):
    """An ONNX classifier cannot be read: not ONNX, an unsupported operator, or an input
    that does not match the dataset's images."""
