"""Every exception class of the package, and the exit codes of the ``medverify`` command.

A :class:`MedverifyError` is a user-facing error: its message is one line that names the
bad value and the file it came from. Anything else escaping a command is an internal
error (a bug). See docs/exit-codes.md.
"""

#: the command produced its answer (for ``verify``: a record with a verdict, including
#: ``unknown`` and ``timeout``)
EXIT_OK = 0
#: internal error: an unexpected exception in medverify itself (please report it)
EXIT_INTERNAL = 1
#: bad input: command-line usage, a file or a value medverify cannot accept
EXIT_BAD_INPUT = 2
#: the verifier failed on good input: crashed, ran out of memory or raised; the ``error``
#: record is written
EXIT_VERIFIER_FAILED = 3


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


class VnnlibError(MedverifyError):
    """A malformed or unsupported VNNLIB file; the message starts with ``file:line:``."""


class ContradictionError(MedverifyError):
    """One verifier proved robustness where another holds a replayed counterexample."""


class WalkLimit(Exception):  # noqa: N818 - control flow inside the exact backend, not an error
    """The exact backend's walk exceeded its deadline or piece budget."""


def is_input_error(type_name: str) -> bool:
    """Is ``type_name`` (an exception class's ``__name__``, as error records store it) one
    of our user-facing input errors?"""

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    return type_name in {c.__name__ for c in (MedverifyError, *subclasses(MedverifyError))}


def script_main(prog: str, main, argv=None) -> int:
    """Run a script's ``main(argv)`` (the benchmarks): a MedverifyError becomes one line on
    stderr naming the bad value, and EXIT_BAD_INPUT, instead of a traceback."""
    import sys

    try:
        return main(argv)
    except MedverifyError as exc:
        print(
            f"{prog}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
