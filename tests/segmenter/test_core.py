import functools
import json
import random

import jieba
import jieba.posseg
import pytest

from fenlei.errors import InvalidInput, LimitExceeded
from fenlei.runtime.artifacts import ArtifactError
from fenlei.segmenter.core import MAX_USER_WORDS, USER_WORD_TAG, Mode, SegmentConfig, Segmenter

SENTENCES = [
    "我来到北京清华大学",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
    # jieba-rs keeps these ASCII runs whole where jieba's HMM splits them
    "涿州翔天万和城70-119平米2-3居均价7000元",
    "HIT-5录制阿雅节目 现场换装演绎不同舞种(图)",
    "酒店check-in很快，网速1.6G，CPU-Z测试T_T",
    "访问www.smallstonesoft.com交流，版本1.2.3和V8.0版",
    # jieba-rs's search mode adds "ab" for "ab.1"
    "型号ab.1和a1.5的区别",
    "iPhone 6s售价5288元，涨幅3.5%，C++和C#",
    "一九九八年１２月ＡＢＣ",
    "他说：“我们中出了一个叛徒”\r\n第二行\t结束",
    # code points jieba-rs counts as Chinese and jieba does not
    "㐀字、鿖字和豈字𠀀",
    "好开心😀😀！！",
    "装装装win XP 还是有点难",
]
REFERENCE = {
    Mode.ACCURATE: lambda tokenizer, text, hmm: tokenizer.lcut(text, HMM=hmm),
    Mode.FULL: lambda tokenizer, text, hmm: tokenizer.lcut(text, cut_all=True, HMM=hmm),
    Mode.SEARCH: lambda tokenizer, text, hmm: tokenizer.lcut_for_search(text, HMM=hmm),
}


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter()


@functools.cache
def jieba_with(words: tuple[str, ...]) -> jieba.Tokenizer:
    tokenizer = jieba.Tokenizer()
    for word in sorted(set(words)):
        tokenizer.add_word(word)
    return tokenizer


def random_texts(count: int, seed: int) -> list[str]:
    alphabet = (
        "我们中国人民大学北京清华的了在是有和不这个来到他说出年月日手机网球拍卖会装" * 3
        + "abcXYZ0123456789.-_%+#&@:/ " * 2
        + "，。！（）《》“” \t\n１２ＡＢ😀㐀鿖"
    )
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(count)]


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("hmm", [True, False])
def test_tokens_equal_jieba(segmenter, mode, hmm):
    texts = SENTENCES + [t for t in random_texts(400, seed=list(Mode).index(mode) * 2 + hmm) if t.strip()]
    got = [s.tokens for s in segmenter.segment(texts, SegmentConfig(mode=mode, hmm=hmm))]
    assert got == [REFERENCE[mode](jieba.dt, text, hmm) for text in texts]


def test_ascii_runs_are_split_like_jieba(segmenter):
    (result,) = segmenter.segment(["涿州翔天万和城70-119平米"], SegmentConfig())
    assert result.tokens == ["涿州", "翔天", "万和城", "70", "-", "119", "平米"]
    assert result.tags == []


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("hmm", [True, False])
def test_user_words_equal_jieba_add_word(segmenter, mode, hmm):
    # 的 is already in the dictionary: jieba adds its frequency to the total a second time
    words = ("杭研大厦", "中出了", "的", "check-in", "C++")
    texts = SENTENCES + ["他来到了网易杭研大厦", "我们中出了一个叛徒"]
    got = [s.tokens for s in segmenter.segment(texts, SegmentConfig(mode=mode, hmm=hmm, user_words=words))]
    tokenizer = jieba_with(words)
    assert got == [REFERENCE[mode](tokenizer, text, hmm) for text in texts]


def test_user_words_change_segmentation(segmenter):
    text = "他来到了网易杭研大厦"
    (plain,) = segmenter.segment([text], SegmentConfig())
    (custom,) = segmenter.segment([text], SegmentConfig(user_words=("杭研大厦",)))
    assert "杭研大厦" not in plain.tokens
    assert custom.tokens == ["他", "来到", "了", "网易", "杭研大厦"]
    # the default dictionary is left alone
    assert segmenter.segment([text], SegmentConfig())[0].tokens == plain.tokens


def test_user_words_keep_jiebas_total(segmenter):
    # an exact tie between 装装|装 and 装|装装 that only equal totals break the same way
    text = "装装装win XP"
    (result,) = segmenter.segment([text], SegmentConfig(hmm=False, user_words=("中出了",)))
    assert result.tokens == jieba_with(("中出了",)).lcut(text, HMM=False) == ["装装", "装", "win", " ", "XP"]


def test_user_words_are_a_set():
    config = SegmentConfig(user_words=("乙词", "甲词", "乙词"))
    assert config.user_words == tuple(sorted({"乙词", "甲词"}))
    assert config == SegmentConfig(user_words=("甲词", "乙词"))


def test_pos_tags_equal_posseg(segmenter):
    texts = SENTENCES + ["他来到了网易杭研大厦"]
    for hmm in (True, False):
        results = segmenter.segment(texts, SegmentConfig(pos_tags=True, hmm=hmm))
        for text, result in zip(texts, results):
            pairs = jieba.posseg.lcut(text, HMM=hmm)
            assert result.tokens == [p.word for p in pairs]
            assert result.tags == [p.flag for p in pairs]
            assert len(result.tags) == len(result.tokens)
    (tagged,) = segmenter.segment(["我来到北京清华大学"], SegmentConfig(pos_tags=True))
    assert list(zip(tagged.tokens, tagged.tags)) == [("我", "r"), ("来到", "v"), ("北京", "ns"), ("清华大学", "nt")]


USER_WORDS = ("杭研大厦", "蓝鲸智云", "北京")  # 北京 is in jieba's dictionary already, as "ns"
USER_WORD_TEXTS = ["他来到了网易杭研大厦", "蓝鲸智云在北京", "蓝鲸智云的零件70-119"]  # the last one is cut by jieba, not jieba-rs


def test_pos_tags_with_user_words(segmenter):
    results = segmenter.segment(USER_WORD_TEXTS, SegmentConfig(pos_tags=True, user_words=USER_WORDS))
    for text, result in zip(USER_WORD_TEXTS, results):
        pairs = jieba.posseg.POSTokenizer(jieba_with(USER_WORDS)).lcut(text)
        assert result.tokens == [p.word for p in pairs]
        # jieba's own tags, but a user word new to the dictionary is a proper noun, not "x" like punctuation
        assert result.tags == [USER_WORD_TAG if p.word in ("杭研大厦", "蓝鲸智云") else p.flag for p in pairs], text
    assert list(zip(results[1].tokens, results[1].tags)) == [("蓝鲸智云", "nz"), ("在", "p"), ("北京", "ns")]
    # the dictionary shared by every word set is untouched: without user words, jieba's tags
    (plain,) = segmenter.segment(USER_WORD_TEXTS[:1], SegmentConfig(pos_tags=True))
    assert plain.tags == [p.flag for p in jieba.posseg.lcut(USER_WORD_TEXTS[0])]


def test_feature_tags_of_user_words_are_real_word_classes(segmenter):
    pos = segmenter.segment(USER_WORD_TEXTS, SegmentConfig(pos_tags=True, user_words=USER_WORDS))
    features = segmenter.segment(USER_WORD_TEXTS, SegmentConfig(feature_tags=True, user_words=USER_WORDS))
    for text, tagged, result in zip(USER_WORD_TEXTS, pos, features):
        assert all(result.tags) and len(result.tags) == len(result.tokens), (text, result)
        words, jiebas = dict(zip(result.tokens, result.tags)), dict(zip(tagged.tokens, tagged.tags))
        assert [words[word] for word in USER_WORDS if word in text] == [jiebas[word] for word in USER_WORDS if word in text]
    assert dict(zip(features[1].tokens, features[1].tags)) == {"蓝鲸智云": "nz", "在": "p", "北京": "ns"}


@pytest.mark.parametrize("mode", [Mode.FULL, Mode.SEARCH])
def test_pos_tags_need_accurate_mode(mode):
    with pytest.raises(InvalidInput, match="accurate"):
        SegmentConfig(mode=mode, pos_tags=True)


@pytest.mark.parametrize("text", ["", " ", "\t\r\n\u3000"])
@pytest.mark.parametrize("config", [SegmentConfig(), SegmentConfig(mode=Mode.FULL), SegmentConfig(pos_tags=True)])
def test_blank_text_has_no_tokens(segmenter, text, config):
    (result,) = segmenter.segment([text], config)
    assert result.tokens == [] and result.tags == []


@pytest.mark.parametrize("config", [SegmentConfig(), SegmentConfig(mode=Mode.FULL), SegmentConfig(pos_tags=True)])
def test_bad_characters_are_refused(segmenter, config):
    with pytest.raises(InvalidInput, match=r"position 1 contains a NUL character at offset 2"):
        segmenter.segment(["好的", "北京\x00"], config)
    with pytest.raises(InvalidInput, match="lone surrogate U\\+D800"):
        segmenter.segment(["北京\ud800"], config)


def test_config_json_round_trip():
    config = SegmentConfig(mode=Mode.SEARCH, hmm=False, user_words=("杭研大厦", "C++"))
    data = config.to_json()
    assert data == {"mode": "search", "hmm": False, "pos_tags": False, "feature_tags": False, "user_words": ["C++", "杭研大厦"]}
    assert SegmentConfig.from_json(json.loads(json.dumps(data))) == config
    assert SegmentConfig.from_json({}) == SegmentConfig()


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "JSON object"),
        ({"mode": "fast"}, "accurate, full, search"),
        ({"hmm": "yes"}, "hmm must be true or false"),
        ({"pos_tags": 1}, "pos_tags must be true or false"),
        ({"colour": 1}, "unknown segmenter option"),
        ({"user_words": "杭研大厦"}, "list of words"),
        ({"user_words": [3]}, "must be strings"),
        ({"user_words": [""]}, "must not be empty"),
        ({"user_words": ["杭研 大厦"]}, "can never be matched"),
        ({"user_words": ["北京！"]}, "can never be matched"),
        ({"user_words": ["长" * 65]}, "limit is 64"),
        ({"mode": "full", "pos_tags": True}, "accurate mode"),
    ],
)
def test_config_validation(data, message):
    with pytest.raises(InvalidInput, match=message):
        SegmentConfig.from_json(data)


def test_too_many_user_words():
    with pytest.raises(LimitExceeded, match="limit of 10,000"):
        SegmentConfig(user_words=tuple(f"词{i}" for i in range(MAX_USER_WORDS + 1)))


def test_save_and_load(tmp_path):
    config = SegmentConfig(mode=Mode.FULL, user_words=("杭研大厦",))
    path = config.save(tmp_path)
    assert path == tmp_path / "segmenter.json"
    assert SegmentConfig.load(tmp_path) == config


def test_load_reports_damage(tmp_path):
    with pytest.raises(ArtifactError, match="missing"):
        SegmentConfig.load(tmp_path)
    (tmp_path / "segmenter.json").write_text('{"mode": "fast"}')
    with pytest.raises(ArtifactError, match="bad segmenter.json"):
        SegmentConfig.load(tmp_path)


def test_feature_tags_come_with_jiebas_tokens(segmenter):
    texts = ["姚明率领火箭队击败湖人", "沪指放量大涨 券商股集体涨停", "iPhone 15发布，售价5999元起", "型号70-119的零件"]
    plain = segmenter.segment(texts, SegmentConfig())
    tagged = segmenter.segment(texts, SegmentConfig(feature_tags=True))
    for untagged, result in zip(plain, tagged):
        assert result.tokens == untagged.tokens  # the tagger never changes the segmentation
        assert len(result.tags) == len(result.tokens) and all(result.tags)
    assert tagged[0].tags[:2] == ["nr", "v"]  # 姚明 a person's name, 率领 a verb
    with pytest.raises(InvalidInput, match="feature_tags"):
        SegmentConfig(mode=Mode.SEARCH, feature_tags=True)
