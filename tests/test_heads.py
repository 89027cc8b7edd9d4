"""The model's heads: the PyTorch modules, and the thinc layer around them."""

from dataclasses import fields

import numpy as np
import pytest
import spacy
import srsly
import torch
from spacy.ml.models import build_hash_embed_cnn_tok2vec

from spacy_refined.model import (
    Candidates,
    HeadsInput,
    Logits,
    Mentions,
    RefinedInput,
    build_hash_description_encoder,
    build_refined_model,
    set_output_sizes,
)
from spacy_refined.model._torch import deserialize_module, serialize_module, wrapped_module
from spacy_refined.model.heads import (
    N_OWN_FEATURES,
    CandidateTensors,
    HeadsOutput,
    MentionEncoder,
    MentionTensors,
    RefinedHeads,
)


def one_mention(n_coherence: int = 2) -> dict:
    """One mention (tokens 0-1 of a 3-token doc) with two candidates."""
    return {
        "mentions": MentionTensors(
            tokens=torch.tensor([0, 1]),
            owners=torch.tensor([0, 0]),
            docs=torch.tensor([0]),
            from_aliases=torch.zeros(1),
        ),
        "candidates": CandidateTensors(
            rows=torch.tensor([[0, 1]]),
            mask=torch.tensor([[True, True]]),
            priors=torch.tensor([[0.5, 0.5]]),
            coherence=torch.zeros(1, 2, n_coherence),
            types=torch.full((2, 1), -1),
            popularity=torch.tensor([0.9, 0.1]),
            vectors=torch.ones(2, 4),
        ),
    }


def test_popularity_is_a_scorer_feature():
    heads = RefinedHeads(width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0).eval()
    with torch.no_grad():
        # It starts as a tie-breaker of equal priors: training and calibration decide how much it counts.
        assert heads.scorer.weight[0, N_OWN_FEATURES - 1] == 0.5
        logits = heads(torch.ones(3, 4), torch.tensor([3]), tags=False, **one_mention()).link_logits[0]
        assert float(logits[0] - logits[1]) == pytest.approx(0.4, abs=1e-5) and logits.shape == (3,)
        heads.scorer.weight[0, N_OWN_FEATURES - 1] = 2.0
        logits = heads(torch.ones(3, 4), torch.tensor([3]), tags=False, **one_mention()).link_logits[0]
        assert float(logits[0] - logits[1]) == pytest.approx(1.6, abs=1e-5)


def test_alias_feature_tells_alias_only_mentions_apart():
    heads = RefinedHeads(
        width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0, alias_feature=True
    ).eval()
    inputs = one_mention()
    with torch.no_grad():
        heads.scorer.weight[0, -1] = -3.0  # as training learns: alias-only spans are often no mention
        tagged = heads(torch.ones(3, 4), torch.tensor([3]), tags=False, **inputs).link_logits[0]
        inputs["mentions"] = inputs["mentions"]._replace(from_aliases=torch.ones(1))
        aliased = heads(torch.ones(3, 4), torch.tensor([3]), tags=False, **inputs).link_logits[0]
    assert torch.allclose(aliased[:2], tagged[:2] - 3.0) and aliased[2] == tagged[2]  # NIL's logit is fixed


def test_feature_dropout_hides_learned_features_in_training_only():
    heads = RefinedHeads(width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0, feature_dropout=1.0)
    inputs = one_mention()
    description = torch.tensor([[2.0, -1.0]])
    type_probs = torch.full((1, 2), 0.9)
    heads.train()
    hidden = heads.scorer.features(inputs["candidates"], type_probs, description, torch.zeros(1))
    heads.eval()
    shown = heads.scorer.features(inputs["candidates"], type_probs, description, torch.zeros(1))
    assert hidden[..., 2:5].abs().sum() == 0 and torch.equal(shown[..., 4], description)
    assert torch.equal(hidden[..., :2], shown[..., :2])  # the prior is always seen


def test_relative_description_never_counts_against_a_sole_candidate():
    heads = RefinedHeads(
        width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0, relative_description=True
    ).eval()
    candidates = one_mention()["candidates"]
    type_probs = torch.full((1, 2), 0.5)
    features = heads.scorer.features(candidates, type_probs, torch.tensor([[-60.0, -63.0]]), None)
    assert features[0, :, 4].tolist() == [0.0, -3.0]
    sole = candidates._replace(mask=torch.tensor([[True, False]]))
    assert heads.scorer.features(sole, type_probs, torch.tensor([[-63.0, 5.0]]), None)[0, :, 4].tolist() == [0.0, 0.0]


def test_tagger_reads_the_whole_document_through_its_lstm():
    """With the LSTM, a token's tags depend on tokens beyond the encoder's
    window; each document is read on its own, and empty documents are fine."""
    torch.manual_seed(0)
    heads = RefinedHeads(
        width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0, context_width=5
    ).eval()
    tokens = torch.randn(10, 4)
    with torch.no_grad():
        tags = heads(tokens, torch.tensor([6, 0, 4])).tag_logits
        changed = tokens.clone()
        changed[5] += 1.0  # the last token of the first document
        tags_changed = heads(changed, torch.tensor([6, 0, 4])).tag_logits
        alone = heads(tokens[6:], torch.tensor([4])).tag_logits
    assert tags.shape == (10, 3)
    assert not torch.allclose(tags[0], tags_changed[0])  # read backwards from the end
    assert torch.allclose(tags[6:], tags_changed[6:])  # the next document is not
    assert torch.allclose(tags[6:], alone, atol=1e-6)
    without = RefinedHeads(width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0).eval()
    with torch.no_grad():
        assert torch.allclose(
            without(tokens, torch.tensor([6, 0, 4])).tag_logits[:5],
            without(changed, torch.tensor([6, 0, 4])).tag_logits[:5],
        )


def test_without_mentions_only_the_tags_are_computed():
    heads = RefinedHeads(width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0)
    output = heads(torch.ones(3, 4), torch.tensor([3]))
    assert output.tag_logits.shape == (3, 3)
    assert output.type_logits is None and output.link_logits is None and output.description_logits is None


def test_mention_encoder_is_the_mention_mean_next_to_the_document_mean():
    tokens = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0], [9.0, 8.0]])
    mentions = MentionTensors(tokens=torch.tensor([1, 2, 4]), owners=torch.tensor([0, 0, 1]), docs=torch.tensor([0, 1]))
    encoder = MentionEncoder(width=2)
    vectors = encoder(tokens, torch.tensor([3, 2]), mentions)
    assert vectors.shape == (2, encoder.out_width)
    assert vectors.tolist() == [[4.0, 3.0, 3.0, 2.0], [9.0, 8.0, 8.0, 7.0]]


def test_saved_models_keep_their_parameter_names():
    heads = RefinedHeads(width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0, context_width=5)
    names = {name.rsplit(".", 1)[0] for name in heads.state_dict()}
    assert names == {"context", "tagger.0", "tagger.3", "typer", "describer", "scorer"}


def test_the_number_of_coherence_features_is_a_setting():
    heads = RefinedHeads(width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0, n_coherence=3)
    assert heads.scorer.in_features == N_OWN_FEATURES + 2 * 3
    assert heads(torch.ones(3, 4), torch.tensor([3]), **one_mention(n_coherence=3)).link_logits.shape == (1, 3)
    message = srsly.msgpack_loads(serialize_module(heads))
    assert deserialize_module(None, srsly.msgpack_dumps(message), torch.device("cpu")).config["n_coherence"] == 3
    # heads saved before it was a setting have 2
    saved = srsly.msgpack_loads(
        serialize_module(RefinedHeads(width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0))
    )
    del saved["config"]["n_coherence"]
    assert (
        deserialize_module(None, srsly.msgpack_dumps(saved), torch.device("cpu")).scorer.in_features
        == N_OWN_FEATURES + 2 * 2
    )


def test_outputs_are_matched_to_logits_by_name():
    assert [f.name for f in fields(Logits)] == list(HeadsOutput._fields)


def lookup(docs, mentions: Mentions, is_train: bool) -> Candidates:
    """Two candidates for each mention, with one coherence feature each."""
    n = len(mentions)
    return Candidates(
        entities=np.tile(np.array([0, 1], dtype="int64"), (n, 1)),
        priors=np.tile(np.array([0.7, 0.3], dtype="float32"), (n, 1)),
        coherence=np.ones((n, 2, 1), dtype="float32"),
        unique=np.array([0, 1], dtype="int64"),
        rows=np.tile(np.array([0, 1], dtype="int64"), (n, 1)),
        types=np.array([[0, -1], [1, 2]], dtype="int64"),
        popularity=np.array([0.5, 0.1], dtype="float32"),
        texts=["Paris: capital of France", "Paris Hilton: American media personality"],
    )


@pytest.fixture
def model():
    spacy.util.fix_random_seed(0)
    tok2vec = build_hash_embed_cnn_tok2vec(
        width=8, depth=1, embed_size=100, window_size=1, maxout_pieces=2, subword_features=True, pretrained_vectors=None
    )
    model = build_refined_model(
        tok2vec, build_hash_description_encoder(width=6, embed_width=4, n_rows=50), hidden_width=5, dropout=0.0
    )
    set_output_sizes(model, n_tags=3, n_types=4, n_coherence=1)
    return model


@pytest.fixture
def docs():
    nlp = spacy.blank("en")
    return [nlp("Tourists in Paris saw Paris Hilton ."), nlp("Paris !")]


def test_model_runs_standalone_with_a_lookup(model, docs):
    """Initialized with a sample input; sized by `set_output_sizes`; its
    weights survive serialization."""
    mentions = Mentions.from_rows([(0, 2, 3, 0), (0, 4, 6, 0), (1, 0, 1, 0)])
    model.initialize(X=RefinedInput(docs, None, lookup))
    assert wrapped_module(model.get_ref("heads")).scorer.in_features == N_OWN_FEATURES + 2 + 1  # + alias-only flag
    output = model.predict(RefinedInput(docs, mentions, lookup))
    assert output.link_logits.shape == (3, 3) and output.type_logits.shape == (3, 4) and output.tag_logits is None
    detected = model.predict(RefinedInput(docs, None, lookup))
    assert detected.tag_logits.shape == (9, 3)
    copy = build_refined_model(
        build_hash_embed_cnn_tok2vec(
            width=8,
            depth=1,
            embed_size=100,
            window_size=1,
            maxout_pieces=2,
            subword_features=True,
            pretrained_vectors=None,
        ),
        build_hash_description_encoder(width=6, embed_width=4, n_rows=50),
        hidden_width=5,
        dropout=0.0,
    ).from_bytes(model.to_bytes())
    assert np.array_equal(copy.predict(RefinedInput(docs, mentions, lookup)).link_logits, output.link_logits)


def test_gradients_reach_the_inputs_of_their_own_logits(model, docs):
    """The heads layer's backprop routes each gradient to the output of the same name."""
    model.initialize(X=RefinedInput(docs, None, lookup))
    heads = model.get_ref("heads")
    module = wrapped_module(heads)
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(9, 8)).astype("float32")
    lengths = np.array([7, 2])
    mentions = Mentions.from_rows([(0, 2, 3, 0), (0, 4, 6, 0), (1, 0, 1, 0)])
    mention_tokens, owners = mentions.token_index(np.array([0, 7]))
    candidates = lookup(docs, mentions, True)
    vectors = rng.normal(size=(2, 6)).astype("float32")
    for name in HeadsOutput._fields:
        logits, backprop = heads(
            HeadsInput(tokens, lengths, True, mentions, mention_tokens, owners, candidates, vectors), is_train=True
        )
        if getattr(logits, name) is None:  # relation_logits: this model has no relation head
            continue
        d_logits = Logits(**{name: np.ones_like(getattr(logits, name))})
        d_tokens, d_vectors = backprop(d_logits)
        tokens_t = torch.tensor(tokens, requires_grad=True)
        vectors_t = torch.tensor(vectors, requires_grad=True)
        expected = module(
            tokens_t,
            torch.tensor(lengths),
            mentions=MentionTensors(torch.tensor(mention_tokens), torch.tensor(owners), torch.tensor(mentions.doc)),
            candidates=CandidateTensors(
                rows=torch.tensor(candidates.rows),
                mask=torch.tensor(candidates.mask),
                priors=torch.tensor(candidates.priors),
                coherence=torch.tensor(candidates.coherence),
                types=torch.tensor(candidates.types),
                popularity=torch.tensor(candidates.popularity),
                vectors=vectors_t,
            ),
        )
        getattr(expected, name).sum().backward()
        assert np.allclose(d_tokens, tokens_t.grad.numpy(), atol=1e-6), name
        if vectors_t.grad is None:
            assert d_vectors is None, name
        else:
            assert np.allclose(d_vectors, vectors_t.grad.numpy(), atol=1e-6), name


def test_no_gradient_gives_zero_token_gradients(model, docs):
    model.initialize(X=RefinedInput(docs, None, lookup))
    heads = model.get_ref("heads")
    tokens = np.ones((9, 8), dtype="float32")
    _, backprop = heads(HeadsInput(tokens, np.array([7, 2]), True), is_train=True)
    d_tokens, d_vectors = backprop(Logits())
    assert d_tokens.shape == (9, 8) and not d_tokens.any() and d_vectors is None
