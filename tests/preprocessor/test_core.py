import json

import jieba
import pytest

from fenlei.errors import InvalidInput, LimitExceeded
from fenlei.preprocessor import core
from fenlei.preprocessor.core import CHAR_MARK, MAX_EXTRA_STOPWORDS, PreprocessConfig, Preprocessor
from fenlei.runtime.artifacts import ArtifactError

# Only the token-level work: one term per kept token, nothing else in the way.
WORDS = dict(word_ngrams=(1, 1), char_ngrams=(0, 0))


@pytest.fixture(scope="module")
def pre() -> Preprocessor:
    return Preprocessor()


def words(pre: Preprocessor, tokens: list[str], **options) -> list[str]:
    (terms,) = pre.process([tokens], PreprocessConfig(**{**WORDS, **options}))
    return terms


def test_width_normalisation(pre):
    assert words(pre, ["ＡＢＣ１２３！"], remove_punctuation=False) == ["abc123!"]
    assert words(pre, ["ＡＢＣ１２３！"], remove_punctuation=False, normalize_width=False, lowercase=False) == ["ＡＢＣ１２３！"]
    # the ideographic space U+3000 becomes a space, and tokens are split at spaces
    assert words(pre, ["北京\u3000大学"]) == ["北京", "大学"]


def test_full_width_tokens_are_joined_as_jieba_joins_half_width(pre):
    tokens = jieba.lcut("ＡＢＣ１２３！书")
    assert tokens[:3] == ["Ａ", "Ｂ", "Ｃ"]  # jieba cuts full-width letters one by one
    assert words(pre, tokens) == words(pre, jieba.lcut("ABC123!书")) == ["abc123", "书"]
    assert words(pre, tokens, normalize_width=False) == ["ａ", "ｂ", "ｃ", "１", "２", "３", "书"]


def test_lowercase(pre):
    assert words(pre, ["iPhone", "ÉCOLE"]) == ["iphone", "école"]
    assert words(pre, ["iPhone", "ÉCOLE"], lowercase=False) == ["iPhone", "ÉCOLE"]


def test_punctuation(pre):
    tokens = ["好", "！", "，", "😀", "...", "——", "\u200b", "C++", "a-b"]
    assert words(pre, tokens) == ["好", "c++", "a-b"]
    assert words(pre, tokens, remove_punctuation=False) == ["好", "!", ",", "😀", "...", "——", "\u200b", "c++", "a-b"]


def test_blank_tokens_are_always_dropped(pre):
    tokens = ["", " ", "\t", "\r\n", "\u3000", "好"]
    assert words(pre, tokens, remove_punctuation=False) == ["好"]


def test_digits(pre):
    tokens = ["2023", "年", "3.5", "１２", "10%", "1,000", "一", "十万", "①", "第一", "5G", ".", "%"]
    assert words(pre, tokens, remove_digits=True, remove_stopwords=False) == ["年", "第一", "5g"]
    assert words(pre, tokens, remove_stopwords=False) == ["2023", "年", "3.5", "12", "10%", "1,000", "一", "十万", "①", "第一", "5g"]


@pytest.mark.parametrize(
    "text",
    [
        "请访问http://www.example.com/a?b=1&c=2，谢谢",
        "请访问https://example.com.cn:8080/path/x.html。谢谢",
        "请访问www.example.com谢谢",
        "请访问qq.com/abc谢谢",
        "请访问ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ谢谢",
    ],
)
def test_urls_are_removed(pre, text):
    tokens = jieba.lcut(text)
    assert words(pre, tokens) == ["请", "访问", "谢谢"]
    assert "com" in words(pre, tokens, remove_urls=False)


def test_emails_are_removed(pre):
    tokens = jieba.lcut("联系a.b-c@mail.example.cn获取")
    assert len(tokens) > 5
    assert words(pre, tokens) == ["联系", "获取"]
    # an address is not mistaken for a domain when only URLs go
    assert words(pre, tokens, remove_emails=False) == words(pre, tokens, remove_emails=False, remove_urls=False)
    assert "mail" in words(pre, tokens, remove_emails=False)


def test_numbers_and_names_are_not_addresses(pre):
    tokens = jieba.lcut("涨幅3.5%，版本V8.0，node.js和a@b")
    assert words(pre, tokens) == words(pre, tokens, remove_urls=False, remove_emails=False)


def test_stopwords(pre):
    tokens = ["我们", "的", "学生", "在", "北京"]
    assert words(pre, tokens) == ["学生", "北京"]
    assert words(pre, tokens, remove_stopwords=False) == tokens
    assert words(pre, tokens, extra_stopwords=("北京",)) == ["学生"]
    # extra stopwords apply on their own, normalised like the tokens
    assert words(pre, tokens + ["ABC"], remove_stopwords=False, extra_stopwords=("学生", "ａｂｃ")) == ["我们", "的", "在", "北京"]


def test_stopword_list_keeps_signal(pre):
    assert len(pre.stopwords) >= 200
    assert {
        "的",
        "了",
        "和",
        "是",
        "在",
        "也",
        "就",
        "都",
        "而",
        "及",
        "与",
        "着",
        "或",
        "一个",
        "我们",
        "你们",
        "他们",
        "这",
        "那",
        "之",
        "其",
    } <= pre.stopwords
    signal = {
        "不",
        "没",
        "没有",
        "无",
        "非",
        "未",
        "别",
        "不是",
        "但是",
        "可是",
        "不过",
        "却",
        "太",
        "很",
        "最",
        "什么",
        "怎么",
        "为什么",
        "吗",
        "一般",
        "可以",
        "上",
        "下",
        "哈哈",
        "唉",
    }
    assert not signal & pre.stopwords


def test_min_token_length(pre):
    tokens = ["北京大学", "的", "学生", "好", "iPhone"]
    assert words(pre, tokens, remove_stopwords=False, min_token_length=2) == ["北京大学", "学生", "iphone"]
    assert words(pre, tokens, remove_stopwords=False, min_token_length=3) == ["北京大学", "iphone"]


def test_ngrams(pre):
    tokens = ["北京", "大学", "学生"]
    (terms,) = pre.process([tokens], PreprocessConfig(word_ngrams=(1, 2), char_ngrams=(1, 3)))
    m = CHAR_MARK
    assert terms == [
        "北京", "大学", "学生",
        "北京 大学", "大学 学生",
        m + "北", m + "京", m + "大", m + "学", m + "学", m + "生",
        m + "北京", m + "京大", m + "大学", m + "学学", m + "学生",
        m + "北京大", m + "京大学", m + "大学学", m + "学学生",
    ]  # fmt: skip
    (terms,) = pre.process([tokens], PreprocessConfig(word_ngrams=(2, 3), char_ngrams=(2, 2)))
    assert terms == ["北京 大学", "大学 学生", "北京 大学 学生", m + "北京", m + "京大", m + "大学", m + "学学", m + "学生"]
    (terms,) = pre.process([tokens], PreprocessConfig(word_ngrams=(0, 0), char_ngrams=(4, 5)))
    assert terms == [m + "北京大学", m + "京大学学", m + "大学学生", m + "北京大学学", m + "京大学学生"]


def test_char_ngrams_skip_dropped_tokens(pre):
    (terms,) = pre.process([["我", "的", "书", "！"]], PreprocessConfig(word_ngrams=(0, 0), char_ngrams=(1, 2), remove_stopwords=False))
    assert terms == [CHAR_MARK + "我", CHAR_MARK + "的", CHAR_MARK + "书", CHAR_MARK + "我的", CHAR_MARK + "的书"]


def test_char_terms_never_equal_word_terms(pre):
    (terms,) = pre.process([[CHAR_MARK + "北", "北"]], PreprocessConfig(word_ngrams=(1, 1), char_ngrams=(1, 1), remove_punctuation=False))
    assert terms == ["北", "北", CHAR_MARK + "北", CHAR_MARK + "北"]


def test_documents_stay_in_order_and_may_be_empty(pre):
    batch = [["北京"], [], ["的", "，"], ["上海"]]
    assert pre.process(batch, PreprocessConfig(**WORDS)) == [["北京"], [], [], ["上海"]]
    assert pre.process([], PreprocessConfig()) == []


def test_token_memo_is_bounded(pre, monkeypatch):
    monkeypatch.setattr(core._TokenTerms, "MAX_ENTRIES", 3)
    config = PreprocessConfig(**WORDS, min_token_length=2)  # a configuration no other test uses
    tokens = [f"词{i}" for i in range(10)]
    assert pre.process([tokens, tokens], config) == [tokens, tokens]
    assert len(pre._token_terms(config)) <= 3


def test_config_json_round_trip():
    config = PreprocessConfig(
        remove_digits=True, extra_stopwords=("乙", "甲", "乙"), min_token_length=2, word_ngrams=(1, 3), char_ngrams=(0, 0)
    )
    data = config.to_json()
    assert data["extra_stopwords"] == ["乙", "甲"] and data["word_ngrams"] == [1, 3] and data["char_ngrams"] == [0, 0]
    assert PreprocessConfig.from_json(json.loads(json.dumps(data))) == config
    # a model saved before tag terms existed keeps working as it did: without them
    assert PreprocessConfig.from_json({}) == PreprocessConfig(tag_terms=False)
    assert set(data) == set(PreprocessConfig().to_json())


def test_max_zero_switches_ngrams_off():
    assert PreprocessConfig(word_ngrams=(3, 0)).word_ngrams == (0, 0)


@pytest.mark.parametrize(
    "data, message",
    [
        ("x", "JSON object"),
        ({"colour": 1}, "unknown preprocessor option"),
        ({"lowercase": "yes"}, "lowercase must be true or false"),
        ({"min_token_length": 0}, "at least 1"),
        ({"min_token_length": True}, "at least 1"),
        ({"extra_stopwords": "的"}, "list of words"),
        ({"extra_stopwords": [1]}, "strings"),
        ({"word_ngrams": [2, 1]}, r"word_ngrams \[2, 1\] is invalid"),
        ({"word_ngrams": [0, 2]}, "1 <= min <= max <= 5"),
        ({"char_ngrams": [1, 6]}, r"char_ngrams \[1, 6\] is invalid"),
        ({"char_ngrams": [1]}, "pair"),
        ({"char_ngrams": [1.0, 2]}, "two integers"),
        ({"word_ngrams": [0, 0], "char_ngrams": [0, 0]}, "both off"),
    ],
)
def test_config_validation(data, message):
    with pytest.raises(InvalidInput, match=message):
        PreprocessConfig.from_json(data)


def test_too_many_extra_stopwords():
    with pytest.raises(LimitExceeded, match="limit of 10,000"):
        PreprocessConfig(extra_stopwords=tuple(str(i) for i in range(MAX_EXTRA_STOPWORDS + 1)))


def test_save_and_load(tmp_path):
    config = PreprocessConfig(lowercase=False, extra_stopwords=("北京",), char_ngrams=(2, 4))
    assert config.save(tmp_path) == tmp_path / "preprocessor.json"
    assert PreprocessConfig.load(tmp_path) == config


def test_load_reports_damage(tmp_path):
    with pytest.raises(ArtifactError, match="missing"):
        PreprocessConfig.load(tmp_path)
    (tmp_path / "preprocessor.json").write_text('{"word_ngrams": [3, 1]}')
    with pytest.raises(ArtifactError, match="bad preprocessor.json"):
        PreprocessConfig.load(tmp_path)


def test_tag_terms_add_one_term_per_tag(pre):
    tokens, tags = ["姚明", "率领", "火箭队", "！"], ["nr", "v", "n", "x"]
    with_tags = pre.process([tokens], PreprocessConfig(), [tags])[0]
    without = pre.process([tokens], PreprocessConfig(tag_terms=False), [tags])[0]
    assert with_tags == without + ["¶nr", "¶v", "¶n", "¶x"]  # punctuation's class too
    assert pre.process([tokens], PreprocessConfig())[0] == without  # no tags given: nothing added
    assert "¶n" not in pre.process([["¶n"]], PreprocessConfig())[0]  # the mark is reserved


def test_a_token_without_a_tag_adds_no_tag_term(pre):
    tokens, tags = ["姚明", "杭研大厦", "率领"], ["nr", "", " "]
    terms = pre.process([tokens], PreprocessConfig(), [tags])[0]
    assert [term for term in terms if term.startswith("¶")] == ["¶nr"]  # never a bare "¶"
