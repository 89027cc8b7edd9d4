"""Mention detection's tag decoding: the best valid BIO sequence of each document."""

import itertools

import numpy as np

from spacy_refined.model import best_tags, decode_tags

O, B, I = 0, 1, 2  # noqa: E741 (tag IDs) one label: B = 1, I = 2; a second label: B = 3, I = 4


def log_probs(*rows):
    return np.log(np.array(rows, dtype="float32"))


def is_valid(tags):
    previous = O
    for tag in tags:
        if tag > 0 and tag % 2 == 0 and previous not in (tag - 1, tag):
            return False
        previous = tag
    return True


def test_a_name_the_tagger_doubts_in_the_middle_stays_whole():
    # token by token: B O I, i.e. two mentions; the best valid sequence is B I I
    scores = log_probs([0.05, 0.9, 0.05], [0.5, 0.05, 0.45], [0.05, 0.05, 0.9])
    tags = best_tags(scores, np.array([3]))
    assert tags.tolist() == [B, I, I]
    mentions = decode_tags(tags, np.array([3]))
    assert (mentions.start.tolist(), mentions.end.tolist()) == ([0], [3])


def test_no_mention_starts_with_an_i_tag():
    scores = log_probs([0.3, 0.2, 0.5], [0.3, 0.2, 0.5], [0.9, 0.05, 0.05])
    tags = best_tags(scores, np.array([3]))
    assert tags.tolist() == [B, I, O]


def test_an_i_tag_does_not_continue_another_label_or_document():
    # label 2's I after label 1's B, and a document starting with I after one ending with B
    scores = log_probs(
        [0.1, 0.8, 0.02, 0.04, 0.04],
        [0.1, 0.02, 0.04, 0.04, 0.8],
        [0.1, 0.8, 0.02, 0.04, 0.04],
        [0.1, 0.02, 0.8, 0.04, 0.04],
    )
    tags = best_tags(scores, np.array([2, 1, 1]))
    assert is_valid(tags[:2]) and is_valid(tags[2:3]) and is_valid(tags[3:])
    assert tags[3] != I


def test_equals_an_exhaustive_search_over_valid_sequences():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n_tags = int(rng.choice([3, 5]))
        lengths = rng.integers(0, 5, size=int(rng.integers(1, 4)))
        scores = np.log(rng.dirichlet(np.ones(n_tags), size=int(lengths.sum()))).astype("float32")
        tags = best_tags(scores, lengths)
        start = 0
        for n in lengths.tolist():
            rows = scores[start : start + n]
            valid = (seq for seq in itertools.product(range(n_tags), repeat=n) if is_valid(seq))
            best = max(valid, key=lambda seq: sum(rows[i, tag] for i, tag in enumerate(seq)))
            assert tuple(tags[start : start + n]) == best
            start += n


def test_empty_batch_and_empty_documents():
    assert best_tags(np.zeros((0, 3), dtype="float32"), np.array([0, 0])).tolist() == []
    scores = log_probs([0.1, 0.8, 0.1])
    assert best_tags(scores, np.array([0, 1, 0])).tolist() == [B]
