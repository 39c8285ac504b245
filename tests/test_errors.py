"""How messages quote the input: bounded, and never cut inside a character."""

import pytest

from fenlei.errors import quote, quote_list, shorten, shorten_utf8

FAMILY = "👨\u200d👩\u200d👧"  # one emoji of five code points, joined by ZWJ
TEXTS = ["北京大学清华大学", "naïve café", "e\u0301" * 6, FAMILY * 3 + "好", "😀😀😀"]


@pytest.mark.parametrize("text", TEXTS)
def test_shorten_utf8_cuts_between_whole_characters_at_every_limit(text) -> None:
    for limit in range(len(text.encode("utf-8")) + 2):
        cut = shorten_utf8(text, limit)
        assert len(cut.encode("utf-8")) <= limit
        if cut == text:
            continue
        assert cut == "" or cut.endswith("…")
        kept = cut.removesuffix("…")
        assert text.startswith(kept)
        # what follows the cut is a character of its own: no accent, joiner or joined emoji left behind
        rest = text[len(kept) :]
        assert not rest or (rest[0] not in "\u0301\u200d" and not kept.endswith("\u200d")), (limit, cut)


def test_shorten_keeps_whole_characters_and_marks_the_cut() -> None:
    assert shorten("北京大学", 4) == "北京大学"
    assert shorten("北京大学清华", 4) == "北京大…"
    assert shorten("e\u0301e\u0301e\u0301", 4) == "e\u0301…"  # not "e\u0301e…", which would read "ée" cut
    assert shorten(FAMILY + "好", 4) == "…"  # the family is not cut into a man and a joiner


def test_what_utf8_cannot_hold_is_escaped_not_a_crash() -> None:
    assert shorten_utf8("坏\ud800字", 100) == "坏\\ud800字"


def test_quote_bounds_a_piece_of_the_input() -> None:
    assert quote("北京") == "'北京'"
    assert quote("字" * 1000) == repr("字" * 39 + "…")
    assert quote_list(["甲", "乙"]) == "'甲', '乙'"
    assert quote_list([str(i) for i in range(1, 1001)], 2) == "'1', '2' and 998 more"
