"""The candidate scorer of the PyTorch heads: its features move the link logits."""
import pytest
import torch

from spacy_refined.model.heads import N_COHERENCE, N_OWN_FEATURES, RefinedHeads


def score(heads: RefinedHeads, popularity) -> torch.Tensor:
    """Link logits of one mention with two candidates that differ only in popularity."""
    tokens = torch.ones(3, 4)
    _, _, link_logits, _ = heads(
        tokens,
        torch.tensor([3]),
        tags=False,
        mention_tokens=torch.tensor([0, 1]),
        mention_owners=torch.tensor([0, 0]),
        n_mentions=1,
        mention_docs=torch.tensor([0]),
        candidate_rows=torch.tensor([[0, 1]]),
        candidate_mask=torch.tensor([[True, True]]),
        priors=torch.tensor([[0.5, 0.5]]),
        coherence=torch.zeros(1, 2, N_COHERENCE),
        entity_types=torch.full((2, 1), -1),
        entity_popularity=torch.tensor(popularity),
        entity_vectors=torch.ones(2, 4),
    )
    return link_logits[0]


def test_popularity_is_a_scorer_feature():
    heads = RefinedHeads(width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0).eval()
    with torch.no_grad():
        # It starts with weight 0: training and calibration decide how much it counts.
        assert heads.scorer.weight[0, N_OWN_FEATURES - 1] == 0
        logits = score(heads, [0.9, 0.1])
        assert logits[0] == logits[1] and logits.shape == (3,)
        heads.scorer.weight[0, N_OWN_FEATURES - 1] = 2.0
        logits = score(heads, [0.9, 0.1])
        assert float(logits[0] - logits[1]) == pytest.approx(1.6, abs=1e-5)


def test_tagger_reads_the_whole_document_through_its_lstm():
    """With the LSTM, a token's tags depend on tokens beyond the encoder's
    window; each document is read on its own, and empty documents are fine."""
    torch.manual_seed(0)
    heads = RefinedHeads(width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0, context_width=5).eval()
    tokens = torch.randn(10, 4)
    with torch.no_grad():
        tags = heads(tokens, torch.tensor([6, 0, 4]))[0]
        changed = tokens.clone()
        changed[5] += 1.0  # the last token of the first document
        tags_changed = heads(changed, torch.tensor([6, 0, 4]))[0]
        alone = heads(tokens[6:], torch.tensor([4]))[0]
    assert tags.shape == (10, 3)
    assert not torch.allclose(tags[0], tags_changed[0])  # read backwards from the end
    assert torch.allclose(tags[6:], tags_changed[6:])  # the next document is not
    assert torch.allclose(tags[6:], alone, atol=1e-6)
    without = RefinedHeads(width=4, n_tags=3, n_types=2, entity_width=4, hidden_width=8, dropout=0.0).eval()
    with torch.no_grad():
        assert torch.allclose(without(tokens, torch.tensor([6, 0, 4]))[0][:5], without(changed, torch.tensor([6, 0, 4]))[0][:5])
