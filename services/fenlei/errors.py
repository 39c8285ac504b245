"""Domain errors. Cores raise these; the runtime maps each to one gRPC status.

They live outside fenlei.runtime so that core modules can raise them without
importing anything of gRPC.
"""


class FenleiError(Exception):
    """Base of every error a caller can act on. The message is shown to the caller."""


class InvalidInput(FenleiError, ValueError):
    """The request is malformed: empty text, bad options, a bad document (→ INVALID_ARGUMENT)."""


class NotFound(FenleiError, LookupError):
    """A model, version or label that does not exist (→ NOT_FOUND)."""


class LimitExceeded(FenleiError):
    """A batch, document or message over a configured limit (→ RESOURCE_EXHAUSTED)."""


class FailedPrecondition(FenleiError):
    """The system is not in a state to do this yet, e.g. an unfitted model (→ FAILED_PRECONDITION)."""


class Unavailable(FenleiError):
    """A transient fault; retrying later may succeed (→ UNAVAILABLE)."""
