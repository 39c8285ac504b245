"""Checks every service applies to the documents it is handed, with messages that name
the offending document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fenlei.errors import InvalidInput, LimitExceeded, quote
from fenlei.runtime import live
from fenlei.runtime.settings import ServiceSettings


class HasIdAndText(Protocol):
    id: str
    text: str


def check_batch_size(count: int, settings: ServiceSettings) -> None:
    limit = live.batch_limit(settings)
    if count > limit:
        raise LimitExceeded(f"batch of {count} documents is over the limit of {limit}; split it into smaller batches or use the stream RPC")


def check_documents(documents: Sequence[HasIdAndText], settings: ServiceSettings) -> list[str]:
    """Returns the texts, or raises naming the first bad document (by id, else by position)."""
    check_batch_size(len(documents), settings)
    texts = []
    for position, document in enumerate(documents):
        text = document.text
        if len(text) > settings.max_document_chars:
            raise LimitExceeded(
                f"document {_name(document, position)} has {len(text):,} characters; the limit is "
                f"{settings.max_document_chars:,} (FENLEI_MAX_DOCUMENT_CHARS)"
            )
        if not text.strip():
            raise InvalidInput(f"document {_name(document, position)} has no text: send at least one non-space character")
        texts.append(text)
    return texts


def _name(document: HasIdAndText, position: int) -> str:
    return quote(document.id) if document.id else f"at position {position}"
