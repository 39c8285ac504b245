import json

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.feature_selection import chi2, f_classif, mutual_info_classif

from fenlei.errors import Cancelled, InvalidInput
from fenlei.features import core as features_core
from fenlei.features.core import FeatureConfig, FeatureFitter, FeatureSpace, Selection
from fenlei.runtime import artifacts

CLASSES = ("体育", "财经", "科技")


def corpus(documents=120, seed=0):
    """Term lists whose words depend on the class, with shared words, repeats and char terms."""
    rng = np.random.default_rng(seed)
    shared = [f"词{i}" for i in range(40)]
    topical = {label: [f"{label}{i}" for i in range(25)] for label in CLASSES}
    term_lists, labels = [], []
    for i in range(documents):
        label = CLASSES[i % len(CLASSES)]
        words = list(rng.choice(shared, rng.integers(2, 8))) + list(rng.choice(topical[label], rng.integers(1, 6)))
        words += list(rng.choice(topical[CLASSES[(i + 1) % 3]], rng.integers(0, 2)))
        term_lists.append(words + ["\x01" + w[0] for w in words])
        labels.append(label)
    return term_lists, labels


def fit(config=None, batch=32, data=None):
    term_lists, labels = data or corpus()
    fitter = FeatureFitter(config or FeatureConfig())
    for start in range(0, len(term_lists), batch):
        fitter.add(term_lists[start : start + batch], labels[start : start + batch])
    return fitter.finish()


def sklearn_matrix(space, vectorizer, term_lists):
    """sklearn's matrix with its columns in the space's order."""
    order = [vectorizer.vocabulary_[term] for term in space.terms]
    return vectorizer.transform(term_lists)[:, order]


@pytest.mark.parametrize("sublinear_tf", [True, False])
@pytest.mark.parametrize("min_df", [1, 3])
def test_vectors_match_sklearn_tfidf(sublinear_tf, min_df):
    term_lists, labels = corpus()
    space = fit(FeatureConfig(sublinear_tf=sublinear_tf, min_df=min_df))
    vectorizer = TfidfVectorizer(analyzer=lambda d: d, sublinear_tf=sublinear_tf, min_df=min_df).fit(term_lists)
    assert set(space.terms) == set(vectorizer.vocabulary_)
    assert space.vocabulary_size == space.dimension == len(vectorizer.vocabulary_)
    test, _ = corpus(30, seed=1)
    ours = space.transform(test)
    assert ours.dtype == np.float32 and isinstance(ours, sp.csr_matrix)
    np.testing.assert_allclose(ours.toarray(), sklearn_matrix(space, vectorizer, test).toarray(), atol=1e-6)
    np.testing.assert_allclose(space.idf, vectorizer.idf_[[vectorizer.vocabulary_[t] for t in space.terms]], rtol=1e-6)


def test_streamed_fit_equals_one_batch():
    one = fit(batch=10_000)
    streamed = fit(batch=7)
    assert one.terms == streamed.terms
    np.testing.assert_array_equal(one.idf, streamed.idf)


@pytest.mark.parametrize("selection", [Selection.CHI2, Selection.ANOVA_F, Selection.MUTUAL_INFO])
def test_streamed_selection_equals_one_batch(selection, monkeypatch):
    config = FeatureConfig(selection=selection, top_k=30)
    one = fit(config, batch=10_000)
    monkeypatch.setattr(features_core, "MERGE_AT", 1)  # merge the per-class sums after every batch
    streamed = fit(config, batch=5)
    assert one.terms == streamed.terms
    # Classes and terms that first appear late in the stream.
    by_label = sorted(zip(*corpus()), key=lambda item: item[1])
    data = ([terms for terms, _ in by_label], [label for _, label in by_label])
    assert fit(config, batch=10_000, data=data).terms == fit(config, batch=5, data=data).terms


def test_unknown_terms_are_ignored_and_empty_documents_give_empty_rows():
    with pytest.raises(InvalidInput, match="list of terms, not a string"):
        fit().transform(["体育 新闻"])
    space = fit()
    known = space.terms[0]
    matrix = space.transform([[], ["从未见过"], [known, "从未见过", known]])
    assert matrix.shape == (3, space.dimension)
    assert matrix.getrow(0).nnz == 0 and matrix.getrow(1).nnz == 0
    row = matrix.getrow(2)
    assert row.indices.tolist() == [0] and row.data[0] == pytest.approx(1.0)


def test_rows_are_unit_length():
    space = fit()
    matrix = space.transform(corpus(20, seed=2)[0])
    np.testing.assert_allclose(sp.linalg.norm(matrix, axis=1), 1.0, rtol=1e-6)


def selected_by_sklearn(scores, k):
    return set(np.argsort(-scores, kind="stable")[:k].tolist())


def gap_k(scores):
    """A k in the middle of the range where the k-th and (k+1)-th scores differ clearly."""
    ordered = np.sort(scores)[::-1]
    for k in range(len(scores) // 3, len(scores)):
        if ordered[k - 1] > ordered[k] * (1 + 1e-6) + 1e-12:
            return k
    raise AssertionError("no gap in the scores")


@pytest.mark.parametrize(
    "selection, score",
    [
        # chi2 and F of SelectKBest on the un-normalised TF-IDF matrix.
        (Selection.CHI2, lambda X, B, y: chi2(X, y)[0]),
        (Selection.ANOVA_F, lambda X, B, y: f_classif(X, y)[0]),
        # mutual information of term presence and label.
        (Selection.MUTUAL_INFO, lambda X, B, y: mutual_info_classif(B, y, discrete_features=True)),
    ],
)
def test_selection_keeps_the_terms_sklearn_ranks_highest(selection, score):
    term_lists, labels = corpus()
    vectorizer = TfidfVectorizer(analyzer=lambda d: d, sublinear_tf=True, norm=None).fit(term_lists)
    names = np.array(sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get))
    X = vectorizer.transform(term_lists)
    presence = (X > 0).astype(np.float64)
    scores = score(X, presence, labels)
    fitter = FeatureFitter(FeatureConfig(selection=selection))
    fitter.add(term_lists, labels)
    terms, ours = fitter.selection_scores()
    np.testing.assert_allclose(ours, scores[[vectorizer.vocabulary_[t] for t in terms]], rtol=1e-9, atol=1e-12)
    k = gap_k(scores)
    space = fit(FeatureConfig(selection=selection, top_k=k))
    assert space.dimension == k
    assert space.vocabulary_size == len(names)
    assert set(space.terms) == set(names[list(selected_by_sklearn(scores, k))])
    # Columns are renumbered 0..k-1 and rows normalised over the kept terms.
    matrix = space.transform(term_lists)
    assert matrix.shape == (len(term_lists), k)
    norms = sp.linalg.norm(matrix, axis=1)
    np.testing.assert_allclose(norms[norms > 0], 1.0, rtol=1e-6)


def test_selection_with_top_k_over_the_vocabulary_keeps_everything():
    plain = fit()
    selected = fit(FeatureConfig(selection=Selection.CHI2, top_k=10**6))
    assert selected.terms == plain.terms


def test_feature_names():
    space = fit()
    assert space.feature_names([2, 0]) == [space.terms[2], space.terms[0]]
    assert space.feature_names(np.array([], dtype=np.int64)) == []
    with pytest.raises(InvalidInput, match=f"outside this model's {space.dimension} features"):
        space.feature_names([space.dimension])
    with pytest.raises(InvalidInput):
        space.feature_names([-1])


def test_save_and_load_round_trip_without_pickle(tmp_path):
    space = fit(FeatureConfig(sublinear_tf=False, min_df=2, selection=Selection.CHI2, top_k=20))
    space.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.json", "idf.npy", "terms.json"]
    assert np.load(tmp_path / "idf.npy", allow_pickle=False).dtype == np.float32
    loaded = FeatureSpace.load(tmp_path)
    assert loaded.config == space.config and loaded.terms == space.terms and loaded.vocabulary_size == space.vocabulary_size
    test = corpus(10, seed=3)[0]
    assert (loaded.transform(test) != space.transform(test)).nnz == 0


def test_load_rejects_a_damaged_part(tmp_path):
    fit().save(tmp_path)
    terms = json.loads((tmp_path / "terms.json").read_text())
    (tmp_path / "terms.json").write_text(json.dumps(terms[:-1]))
    with pytest.raises(artifacts.ArtifactError, match="IDF"):
        FeatureSpace.load(tmp_path)


def test_fit_errors():
    fitter = FeatureFitter(FeatureConfig())
    with pytest.raises(InvalidInput, match="2 documents but 1 labels"):
        fitter.add([["a"], ["b"]], ["x"])
    with pytest.raises(InvalidInput, match="document 1 of the batch has an empty label"):
        fitter.add([["a"], ["b"]], ["x", " "])
    with pytest.raises(InvalidInput, match="no training documents"):
        fitter.finish()
    with pytest.raises(InvalidInput, match="no selection is configured"):
        fitter.selection_scores()
    fitter.add([["a"], ["b"]], ["x", "x"])
    with pytest.raises(InvalidInput, match="at least two"):
        fitter.finish()
    fitter = FeatureFitter(FeatureConfig(min_df=5))
    fitter.add([["a"], ["b"]], ["x", "y"])
    with pytest.raises(InvalidInput, match="lower min_df"):
        fitter.finish()


def test_config_json_and_validation():
    config = FeatureConfig(sublinear_tf=False, min_df=2, selection=Selection.MUTUAL_INFO, top_k=100)
    assert FeatureConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert FeatureConfig.from_json({}) == FeatureConfig()
    for bad, message in [
        ({"selection": "pca"}, "selection must be one of"),
        ({"min_df": 0}, "min_df"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 5}, "needs a selection"),
        ({"sublinear_tf": "yes"}, "sublinear_tf"),
        ({"max_df": 3}, "unknown feature options"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            FeatureConfig.from_json(bad)


def test_finish_stops_when_told_to():
    term_lists, labels = corpus()
    fitter = FeatureFitter(FeatureConfig(selection=Selection.CHI2, top_k=10))
    fitter.add(term_lists, labels)
    with pytest.raises(Cancelled, match="cancelled: its caller went away"):
        fitter.finish(lambda: True)
    assert fitter.finish(lambda: False).dimension == 10  # a fit told nothing finishes
