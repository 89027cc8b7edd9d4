"""The PyTorch heads of the ReFinED model: mention tags, entity types and
candidate scores, all computed for a whole batch at once.

`RefinedHeads` composes one small module per task. `DocumentContext` and
`BIOTagger` tag the tokens; `MentionEncoder` turns mentions into vectors,
which `EntityTyper`, `DescriptionMatcher` and `CandidateScorer` read. A new
head, e.g. over mention pairs (relations) or over a question's spans, reuses
`MentionEncoder`. The heads with weights subclass the torch layer they
extend, so their parameters keep the names that saved models have
(`scorer.weight`, `tagger.0.bias`, ...).
"""

from contextlib import contextmanager
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..util import time_major_order
from ._torch import serializable
from .relations import RelationHead, RelationTensors, kb_scores

# prior, log prior, type agreement, has types, description score, popularity
N_OWN_FEATURES = 6
MASKED = -1e4  # logit of padding candidates (safe in float16)
NIL_LOGIT = 0.0  # the fixed logit of the NIL option


class MentionTensors(NamedTuple):
    """A batch's mentions: `tokens`, the flat batch indices of their tokens;
    `owners`, the mention owning each of those; `docs`, the document of
    each mention; `from_aliases`, 1.0 where only the KB's aliases proposed
    the mention (float, one per mention; None: none)."""

    tokens: torch.Tensor
    owners: torch.Tensor
    docs: torch.Tensor
    from_aliases: Optional[torch.Tensor] = None


class CandidateTensors(NamedTuple):
    """The candidates of a batch's mentions, padded to (n_mentions, k).

    `rows` index the batch's entity table: `types` (n_entities, T) type
    indices padded with -1, `popularity` (n_entities,) in [0, 1] and
    description `vectors` (n_entities, entity_width); `mask` marks the real
    candidates; `priors` (n_mentions, k) and `coherence` (n_mentions, k,
    n_coherence) are the candidates' own features.
    """

    rows: torch.Tensor
    mask: torch.Tensor
    priors: torch.Tensor
    coherence: torch.Tensor
    types: torch.Tensor
    popularity: torch.Tensor
    vectors: torch.Tensor


class HeadsOutput(NamedTuple):
    """The logits of `RefinedHeads`, named as the fields of `types.Logits`:
    `tag_logits` (n_tokens, n_tags), `type_logits` (n_mentions, n_types),
    `link_logits` (n_mentions, k + 1; the last column is NIL),
    `description_logits` (n_mentions, k) and `relation_logits` (P, 2R) of the
    mention pairs (see `relations.py`). None: not computed."""

    tag_logits: Optional[torch.Tensor] = None
    type_logits: Optional[torch.Tensor] = None
    link_logits: Optional[torch.Tensor] = None
    description_logits: Optional[torch.Tensor] = None
    relation_logits: Optional[torch.Tensor] = None


class DocumentContext(nn.LSTM):
    """A bidirectional LSTM over each document of a batch, read on its own:
    it sees where a name starts and ends beyond the token encoder's window
    ("Real Madrid Barcelona 9-2").

    The documents are packed end to end, never padded to the longest (see
    `util.time_major_order`), so a batch's memory is linear in its number
    of tokens: one long document among short ones costs its own tokens, not
    its length times the batch size.
    """

    def __init__(self, width: int, context_width: int) -> None:
        super().__init__(width, context_width, batch_first=True, bidirectional=True)

    def forward(self, tokens: torch.Tensor, doc_lengths: torch.Tensor) -> torch.Tensor:
        """Each token's vector next to the LSTM's states at it.

        tokens (torch.Tensor): the batch's token vectors, (n_tokens, width).
        doc_lengths (torch.Tensor): the documents' lengths, (n_docs,).
        RETURNS (torch.Tensor): (n_tokens, width + 2 * context_width).
        """
        order, batch_sizes = time_major_order(doc_lengths.cpu().numpy())
        if not len(order):
            return tokens.new_zeros((0, tokens.shape[1] + 2 * self.hidden_size))
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        packed = nn.utils.rnn.PackedSequence(
            tokens[torch.as_tensor(order, device=tokens.device)], torch.as_tensor(batch_sizes)
        )
        states, _ = super().forward(packed)
        return torch.cat([tokens, states.data[torch.as_tensor(inverse, device=tokens.device)]], dim=1)


class BIOTagger(nn.Sequential):
    """An MLP from each token's vector to its BIO tag logits."""

    def __init__(self, width: int, hidden_width: int, n_tags: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(width, hidden_width), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_width, n_tags)
        )


class MentionEncoder(nn.Module):
    """Mentions -> vectors: the mean of each mention's token vectors, next
    to the mean of its document's (the topic: "Japan" in a football report
    is the team). It has no weights of its own; the heads that read it
    learn what they need from it."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    @property
    def out_width(self) -> int:
        return 2 * self.width

    def forward(self, tokens: torch.Tensor, doc_lengths: torch.Tensor, mentions: MentionTensors) -> torch.Tensor:
        """Encode a batch's mentions.

        tokens (torch.Tensor): the batch's token vectors, (n_tokens, width).
        doc_lengths (torch.Tensor): the documents' lengths, (n_docs,).
        mentions (MentionTensors): the mentions, their tokens and documents.
        RETURNS (torch.Tensor): (n_mentions, out_width).
        """
        token_docs = torch.repeat_interleave(torch.arange(len(doc_lengths), device=tokens.device), doc_lengths)
        documents = mean(tokens, token_docs, len(doc_lengths))
        vectors = mean(tokens[mentions.tokens], mentions.owners, len(mentions.docs))
        return torch.cat([vectors, documents[mentions.docs]], dim=1)


class EntityTyper(nn.Linear):
    """Mention vectors -> logits of a multi-label (sigmoid) classification
    over the KB's type inventory."""

    def __init__(self, width: int, n_types: int) -> None:
        super().__init__(width, n_types)
        with torch.no_grad():
            self.bias.fill_(-4.0)  # types are rare: start from a small probability for each


class DescriptionMatcher(nn.Linear):
    """Mention vectors, projected to the description space and dotted with
    each candidate's description embedding."""

    def __init__(self, width: int, entity_width: int) -> None:
        super().__init__(width, entity_width)
        self.scale = entity_width**-0.5

    def forward(self, mentions: torch.Tensor, entities: torch.Tensor) -> torch.Tensor:
        """Score each mention's candidates by their descriptions.

        mentions (torch.Tensor): mention vectors, (n_mentions, width).
        entities (torch.Tensor): their candidates' description embeddings,
            (n_mentions, k, entity_width).
        RETURNS (torch.Tensor): (n_mentions, k).
        """
        return torch.einsum("md,mkd->mk", super().forward(mentions), entities) * self.scale


class CandidateScorer(nn.Linear):
    """A linear layer over each candidate's features: prior, log prior,
    typing agreement, has-types flag, description score, popularity (the
    KB's percentile rank, which P(e|m) does not give for a sole candidate
    and which breaks ties of the prior), the document coherence features
    from the KB's facts, as given and relative to the mention's most
    coherent candidate, and (`alias_feature`) whether only the KB's aliases
    proposed the mention, so that NIL can turn down the alias matches that
    are no mentions. NIL is an extra option with a fixed logit, so a softmax
    over candidates + NIL gives the confidence.

    Its initial weights link by the KB alone (prior, popularity,
    coherence): an untrained model is the zero-training linker. In
    training, `feature_dropout` hides the learned features (typing and
    description scores) of a share of the mentions, so that the scorer also
    learns to link by the KB where they do not apply (entities and text
    unlike the training data) instead of trusting them over a strong prior.
    With `relative_description`, the description feature is each
    candidate's score minus the best of the mention's candidates: it ranks
    candidates and can never count against a sole one, whereas the raw score
    of a mention unlike the training data can be far from anything seen."""

    def __init__(
        self,
        n_coherence: int,
        alias_feature: bool = False,
        feature_dropout: float = 0.0,
        relative_description: bool = False,
    ) -> None:
        super().__init__(N_OWN_FEATURES + 2 * n_coherence + int(alias_feature), 1)
        self.n_coherence = n_coherence
        self.alias_feature = alias_feature
        self.feature_dropout = feature_dropout
        self.relative_description = relative_description
        with torch.no_grad():
            # Start from the prior: logit = log P(e|m) + 2, so NIL (logit 0)
            # wins only where no candidate has a prior above e^-2; from
            # popularity as a tie-breaker; and from trusting coherence (zero
            # without facts), whose fitted weights lie further from zero than
            # the optimizer's small steps go.
            self.weight.zero_()
            self.weight[0, 1] = 1.0
            self.weight[0, 5] = 0.5
            self.weight[0, N_OWN_FEATURES : N_OWN_FEATURES + 2 * n_coherence] = 2.0
            self.bias.fill_(2.0)

    def features(
        self,
        candidates: CandidateTensors,
        type_probs: torch.Tensor,
        description: torch.Tensor,
        from_aliases: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """The candidates' features.

        candidates (CandidateTensors): the candidates.
        type_probs (torch.Tensor): the mentions' predicted type
            probabilities, (n_mentions, n_types).
        description (torch.Tensor): the description scores, (n_mentions, k).
        from_aliases (Optional[torch.Tensor]): 1.0 for the mentions only the
            KB's aliases proposed, (n_mentions,); None: none.
        RETURNS (torch.Tensor): (n_mentions, k, n_features).
        """
        rows, mask, coherence = candidates.rows, candidates.mask, candidates.coherence
        agreement, has_types = type_agreement(type_probs, candidates.types[rows])
        if self.relative_description:
            description = description - description.masked_fill(~mask, MASKED).amax(dim=1, keepdim=True)
            description = description.masked_fill(~mask, 0.0)
        if self.training and self.feature_dropout > 0:
            kept = (torch.rand(mask.shape[0], 1, device=mask.device) >= self.feature_dropout).to(description.dtype)
            agreement, has_types, description = agreement * kept, has_types * kept, description * kept
        best_coherence = coherence.masked_fill(~mask.unsqueeze(-1), 0.0).amax(dim=1, keepdim=True)
        own = [
            candidates.priors,
            torch.log(candidates.priors.clamp(min=1e-4)),
            agreement,
            has_types,
            description,
            candidates.popularity[rows],
        ]
        features = [torch.stack(own, dim=-1), coherence, coherence - best_coherence]
        if self.alias_feature:
            if from_aliases is None:
                from_aliases = coherence.new_zeros(mask.shape[0])
            features.append(from_aliases.to(coherence.dtype)[:, None, None].expand(-1, mask.shape[1], 1))
        return torch.cat(features, dim=-1)

    def with_last_coherence(self, features: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`features` with the last coherence feature, as given and relative
        to the mention's best candidate, replaced by `values` (n_mentions, k)."""
        best = values.masked_fill(~mask, 0.0).amax(dim=1, keepdim=True)
        given = N_OWN_FEATURES + self.n_coherence - 1
        relative = given + self.n_coherence
        return torch.cat(
            [
                features[..., :given],
                values.unsqueeze(-1),
                features[..., given + 1 : relative],
                (values - best).unsqueeze(-1),
                features[..., relative + 1 :],
            ],
            dim=-1,
        )

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Link logits.

        features (torch.Tensor): the candidates' features, (n_mentions, k, n_features).
        mask (torch.Tensor): the real candidates, (n_mentions, k).
        RETURNS (torch.Tensor): (n_mentions, k + 1); the last column is NIL.
        """
        return with_nil(super().forward(features).squeeze(-1), mask)


@serializable
class RefinedHeads(nn.Module):
    """Mention detection, entity typing and candidate scoring over token vectors.

    * tags: a `BIOTagger` over every token, its vector next to its
      `DocumentContext` (`context_width` units each way; 0: none);
    * mentions: `MentionEncoder`'s vectors, with dropout;
    * types: an `EntityTyper` over the KB's type inventory;
    * descriptions: a `DescriptionMatcher` of mentions and candidates;
    * candidates: a `CandidateScorer`, whose inputs include the typing
      agreement and the description scores. `fit_scorer` refits it on
      held-out data;
    * relations (with `n_relations`): a `RelationHead` over mention pairs,
      whose KB score (`relations.kb_scores`) is one more coherence feature
      of the scorer, in a second round (the first has it 0).

    width (int): the width of the token vectors.
    n_tags (int): the number of BIO tags.
    n_types (int): the size of the KB's type inventory.
    entity_width (int): the width of the description embeddings.
    hidden_width (int): the hidden layer of the tagger.
    dropout (float): the dropout rate.
    context_width (int): the units of the document LSTM, each way (0: none).
    n_coherence (int): the coherence features per candidate (models saved
        before it was a setting have 2).
    alias_feature (bool): whether the scorer sees which mentions only the
        KB's aliases proposed (models saved before mention sources have not).
    feature_dropout (float): the share of mentions whose typing and
        description scores the candidate scorer does not see in training.
    relative_description (bool): whether the scorer sees the description
        scores relative to the mention's best (models saved before it was a
        setting see them raw).
    n_relations (int): R, the KB relations of the relation head (0: no
        head and no KB score; models saved before it was a setting have 0).
    """

    def __init__(
        self,
        width: int,
        n_tags: int,
        n_types: int,
        entity_width: int,
        hidden_width: int,
        dropout: float,
        context_width: int = 0,
        n_coherence: int = 2,
        alias_feature: bool = False,
        feature_dropout: float = 0.0,
        relative_description: bool = False,
        n_relations: int = 0,
    ) -> None:
        super().__init__()
        self.config = {
            "width": width,
            "n_tags": n_tags,
            "n_types": n_types,
            "entity_width": entity_width,
            "hidden_width": hidden_width,
            "dropout": dropout,
            "context_width": context_width,
            "n_coherence": n_coherence,
            "alias_feature": alias_feature,
            "feature_dropout": feature_dropout,
            "relative_description": relative_description,
            "n_relations": n_relations,
        }
        self.dropout = nn.Dropout(dropout)
        self.context = DocumentContext(width, context_width) if context_width else None
        self.tagger = BIOTagger(width + 2 * context_width, hidden_width, n_tags, dropout)
        self.mention_encoder = MentionEncoder(width)
        self.typer = EntityTyper(self.mention_encoder.out_width, n_types)
        self.describer = DescriptionMatcher(self.mention_encoder.out_width, entity_width)
        self.relations = (
            RelationHead(self.mention_encoder.out_width, width, hidden_width, n_relations, dropout)
            if n_relations
            else None
        )
        self.scorer = CandidateScorer(
            n_coherence + (1 if n_relations else 0), alias_feature, feature_dropout, relative_description
        )

    def forward(
        self,
        tokens: torch.Tensor,
        doc_lengths: torch.Tensor,
        *,
        tags: bool = True,
        mentions: Optional[MentionTensors] = None,
        candidates: Optional[CandidateTensors] = None,
        relations: Optional[RelationTensors] = None,
    ) -> HeadsOutput:
        """Score a batch.

        tokens (torch.Tensor): the batch's token vectors, (n_tokens, width).
        doc_lengths (torch.Tensor): the documents' lengths, (n_docs,).
        tags (bool): whether to compute the tag logits.
        mentions (Optional[MentionTensors]): the mentions to type and link
            (None: none).
        candidates (Optional[CandidateTensors]): the mentions' candidates
            (required with `mentions`).
        relations (Optional[RelationTensors]): the mention pairs and the
            facts among the candidates (None: KB score 0).
        RETURNS (HeadsOutput): the logits; those of the mentions are None
            when no mentions are given.
        """
        tag_logits = None
        if tags:
            in_context = self.context(tokens, doc_lengths) if self.context is not None else tokens
            tag_logits = self.tagger(self.dropout(in_context))
        if mentions is None:
            return HeadsOutput(tag_logits=tag_logits)
        vectors = self.dropout(self.mention_encoder(tokens, doc_lengths, mentions))
        type_logits = self.typer(vectors)
        description = self.describer(vectors, candidates.vectors[candidates.rows])
        type_probs = torch.sigmoid(type_logits)
        relation_logits = None
        if self.relations is None:
            link_logits = self.scorer(
                self.scorer.features(candidates, type_probs, description, mentions.from_aliases), candidates.mask
            )
        else:
            link_logits, relation_logits = self._reason(
                vectors, tokens, candidates, type_probs, description, mentions.from_aliases, relations
            )
        return HeadsOutput(
            tag_logits=tag_logits,
            type_logits=type_logits,
            link_logits=link_logits,
            description_logits=description.masked_fill(~candidates.mask, MASKED),
            relation_logits=relation_logits,
        )

    def _reason(
        self,
        vectors: torch.Tensor,
        tokens: torch.Tensor,
        candidates: CandidateTensors,
        type_probs: torch.Tensor,
        description: torch.Tensor,
        from_aliases: Optional[torch.Tensor],
        relations: Optional[RelationTensors],
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Link logits in two rounds, the second with the KB score from the
        first's candidate probabilities, and the relation logits (None
        without pairs)."""
        mask = candidates.mask
        coherence = torch.cat([candidates.coherence, description.new_zeros(mask.shape).unsqueeze(-1)], dim=-1)
        features = self.scorer.features(candidates._replace(coherence=coherence), type_probs, description, from_aliases)
        first = self.scorer(features, mask)
        if relations is None or not relations.pairs.shape[1]:
            return first, None
        relation_logits = self.relations(vectors, tokens, relations)
        probs = torch.softmax(first.detach().float(), dim=1)[:, :-1].to(first.dtype)
        kb = kb_scores(
            torch.sigmoid(relation_logits), relations, candidates.rows, probs, mask, len(candidates.popularity)
        )
        return self.scorer(
            self.scorer.with_last_coherence(features, kb.to(features.dtype), mask), mask
        ), relation_logits

    @contextmanager
    def recording(self) -> Iterator[List[torch.Tensor]]:
        """Within the block, each forward pass that scores candidates appends
        their features (n_mentions, k, n_features) to the list yielded."""
        records: List[torch.Tensor] = []
        hook = self.scorer.register_forward_hook(lambda _, inputs, __: records.append(inputs[0].detach().float()))
        try:
            yield records
        finally:
            hook.remove()

    def fit_scorer(
        self, batches: Sequence[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]], l2: float = 1e-4, max_iter: int = 100
    ) -> Dict[str, float]:
        """Refit the candidate scorer by maximum likelihood on held-out
        batches of (features (from `recording`), candidate mask (n_mentions,
        k), target (n_mentions,): the gold candidate's position, k for NIL,
        -1 to leave out), everything else fixed; `l2` pulls the weights
        towards their current values. Returns the mean loss and the accuracy
        (NIL included) before and after."""
        weight0, bias0 = self.scorer.weight.detach().clone(), self.scorer.bias.detach().clone()
        weight, bias = weight0.clone().requires_grad_(True), bias0.clone().requires_grad_(True)
        kept = [(f, mask, t) for f, mask, t in batches if bool((t >= 0).any())]
        n = sum(int((t >= 0).sum()) for *_, t in kept)
        if not n:
            raise ValueError(
                "no mention to calibrate on: none has its gold entity among its candidates or a NIL gold answer"
            )

        def measure() -> Tuple[torch.Tensor, int]:
            loss, correct = weight.new_zeros(()), 0
            for features, mask, target in kept:
                keep = target >= 0
                batch_logits = with_nil(F.linear(features[keep], weight, bias).squeeze(-1), mask[keep])
                loss = loss + F.cross_entropy(batch_logits, target[keep], reduction="sum")
                correct += int((batch_logits.argmax(dim=1) == target[keep]).sum())
            return loss / n, correct

        optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = measure()[0] + l2 * (((weight - weight0) ** 2).sum() + ((bias - bias0) ** 2).sum())
            loss.backward()
            return loss

        with torch.no_grad():
            loss_before, correct_before = measure()
        optimizer.step(closure)
        with torch.no_grad():
            loss_after, correct_after = measure()
            self.scorer.weight.copy_(weight)
            self.scorer.bias.copy_(bias)
        return {
            "mentions": n,
            "loss_before": float(loss_before),
            "loss_after": float(loss_after),
            "accuracy_before": correct_before / n,
            "accuracy_after": correct_after / n,
        }


def with_nil(scores: torch.Tensor, candidate_mask: torch.Tensor) -> torch.Tensor:
    """Link logits (n_mentions, k + 1): candidate scores, padding masked, then NIL's."""
    scores = scores.masked_fill(~candidate_mask, MASKED)
    return torch.cat([scores, scores.new_full((scores.shape[0], 1), NIL_LOGIT)], dim=1)


def mean(vectors: torch.Tensor, owners: torch.Tensor, n: int) -> torch.Tensor:
    """(n, width): the mean of the `vectors` that each owner 0..n-1 owns."""
    sums = vectors.new_zeros((n, vectors.shape[1])).index_add_(0, owners, vectors)
    lengths = torch.bincount(owners, minlength=n).clamp(min=1).unsqueeze(1)
    return sums / lengths.to(sums.dtype)


def type_agreement(type_probs: torch.Tensor, candidate_types: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean predicted probability of each candidate's KB types, and whether it has any.

    type_probs (torch.Tensor): (n_mentions, n_types).
    candidate_types (torch.Tensor): (n_mentions, k, T) type indices padded with -1.
    RETURNS (Tuple[torch.Tensor, torch.Tensor]): both (n_mentions, k).
    """
    n_mentions, k, width = candidate_types.shape
    present = candidate_types >= 0
    index = candidate_types.clamp(min=0).reshape(n_mentions, k * width)
    probs = type_probs.gather(1, index).reshape(n_mentions, k, width) * present
    counts = present.sum(-1)
    agreement = probs.sum(-1) / counts.clamp(min=1).to(probs.dtype)
    return agreement, (counts > 0).to(probs.dtype)
