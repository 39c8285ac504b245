"""Domain errors. Cores raise these; the runtime maps each to one gRPC status.

They live outside fenlei.runtime so that core modules can raise them without
importing anything of gRPC. Messages quote the input through quote(), so a long or odd
piece of it never makes a message long or cuts a character apart.
"""

import unicodedata
from collections.abc import Callable, Sequence


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


class Cancelled(FenleiError):
    """The caller went away, so the work stopped before it finished (→ CANCELLED)."""

    @classmethod
    def check(cls, should_stop: Callable[[], bool]) -> None:
        """Raises when should_stop says that the work is no longer wanted."""
        if should_stop():
            raise cls("the work was cancelled: its caller went away")


# Characters that belong to the one before them: a cut before one would change how it reads.
_JOINED = frozenset("\u200d") | frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))  # ZWJ, skin tones
ELLIPSIS = "…"


def _whole(text: str, cut: int) -> int:
    """The largest cut <= `cut` that keeps marks, joiners and joined characters with theirs."""
    while 0 < cut < len(text) and (unicodedata.category(text[cut]).startswith("M") or text[cut] in _JOINED or text[cut - 1] == "\u200d"):
        cut -= 1
    return cut


def shorten(text: str, limit: int) -> str:
    """text cut to at most `limit` characters between whole characters, marked with … when cut."""
    if len(text) <= limit:
        return text
    return text[: _whole(text, max(limit - len(ELLIPSIS), 0))] + ELLIPSIS


def shorten_utf8(text: str, limit: int) -> str:
    """text cut to at most `limit` bytes of UTF-8, never inside a character's bytes, marked
    with … when cut. What UTF-8 cannot hold (a lone surrogate) is written as an escape."""
    data = text.encode("utf-8", "backslashreplace")
    text = data.decode("utf-8")
    if len(data) <= limit:
        return text
    if limit < len(ELLIPSIS.encode("utf-8")):
        return ""
    # Only the character the byte limit falls in is partial: "ignore" drops it and nothing else.
    whole = data[: max(limit - len(ELLIPSIS.encode("utf-8")), 0)].decode("utf-8", "ignore")
    return text[: _whole(text, len(whole))] + ELLIPSIS


def quote(text: str, limit: int = 40) -> str:
    """A piece of the input as a message shows it: the repr of at most `limit` characters."""
    return repr(shorten(text, limit))


def quote_list(items: Sequence[str], count: int = 5) -> str:
    """The first `count` items quoted, and how many more there are."""
    shown = ", ".join(quote(item) for item in items[:count])
    return f"{shown} and {len(items) - count:,} more" if len(items) > count else shown
