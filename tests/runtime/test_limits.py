from dataclasses import dataclass

import pytest

from fenlei.errors import InvalidInput, LimitExceeded
from fenlei.runtime.limits import check_documents
from fenlei.runtime.settings import ServiceSettings


@dataclass
class Doc:
    id: str
    text: str


SETTINGS = ServiceSettings(max_batch_documents=3, max_document_chars=10)


def test_good_documents_pass() -> None:
    assert check_documents([Doc("a", "你好"), Doc("", "世界")], SETTINGS) == ["你好", "世界"]


@pytest.mark.parametrize(
    ("documents", "error", "message"),
    [
        ([Doc("a", "ok"), Doc("b", "")], InvalidInput, "document 'b' has no text"),
        ([Doc("", " \t\u3000\n")], InvalidInput, "document at position 0 has no text"),
        ([Doc("big", "字" * 11)], LimitExceeded, "document 'big' has 11 characters; the limit is 10"),
        ([Doc(str(i), "x") for i in range(4)], LimitExceeded, "batch of 4 documents is over the limit of 3"),
    ],
)
def test_bad_documents_are_named(documents, error, message) -> None:
    with pytest.raises(error, match=message):
        check_documents(documents, SETTINGS)


def test_a_long_document_id_is_quoted_not_copied() -> None:
    with pytest.raises(InvalidInput) as failure:
        check_documents([Doc("编号" * 5_000, "")], SETTINGS)
    assert str(failure.value) == "document '" + "编号" * 19 + "编…' has no text: send at least one non-space character"
