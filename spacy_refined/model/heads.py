"""The PyTorch heads of the ReFinED model: mention tags, entity types and
candidate scores, all computed for a whole batch at once."""
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ._torch import serializable

N_COHERENCE = 2  # document coherence features per candidate (see pipeline/coherence.py)
# prior, log prior, type agreement, has types, description score, popularity,
# and each coherence feature as given and relative to the mention's best candidate
N_OWN_FEATURES = 6
N_FEATURES = N_OWN_FEATURES + 2 * N_COHERENCE
MASKED = -1e4  # logit of padding candidates (safe in float16)
NIL_LOGIT = 0.0  # the fixed logit of the NIL option


@serializable
class RefinedHeads(nn.Module):
    """Mention detection, entity typing and candidate scoring over token vectors.

    * tags: a BIO tagger (MLP) over every token, its vector next to a
      bidirectional LSTM's reading of the whole document (`context_width`
      units each way; 0: none), which sees where a name starts and ends
      beyond the encoder's window ("Real Madrid Barcelona 9-2");
    * mentions: the mean of their tokens' vectors, next to the mean of their
      document's (the topic: "Japan" in a football report is the team);
    * types: a multi-label (sigmoid) layer over the KB's type inventory;
    * descriptions: the mention, projected to the description space, dotted
      with each candidate's description embedding;
    * candidates: a linear layer over (prior, log prior, typing agreement,
      has-types flag, description score, popularity (the KB's percentile
      rank, which P(e|m) does not give for a sole candidate; starts at weight
      0), document coherence from the KB's facts, as given and relative to
      the mention's most coherent candidate); NIL is an extra option with a
      fixed logit, so a softmax over candidates + NIL gives the confidence.
      `fit_scorer` refits that layer on held-out data.
    """

    def __init__(
        self, width: int, n_tags: int, n_types: int, entity_width: int, hidden_width: int, dropout: float, context_width: int = 0
    ) -> None:
        super().__init__()
        self.config = {
            "width": width, "n_tags": n_tags, "n_types": n_types, "entity_width": entity_width,
            "hidden_width": hidden_width, "dropout": dropout, "context_width": context_width,
        }
        self.dropout = nn.Dropout(dropout)
        self.context = nn.LSTM(width, context_width, batch_first=True, bidirectional=True) if context_width else None
        tagger_width = width + 2 * context_width
        self.tagger = nn.Sequential(nn.Linear(tagger_width, hidden_width), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_width, n_tags))
        self.typer = nn.Linear(2 * width, n_types)
        self.describer = nn.Linear(2 * width, entity_width)
        self.scorer = nn.Linear(N_FEATURES, 1)
        self.entity_scale = entity_width ** -0.5
        with torch.no_grad():
            # Types are rare: start from a small probability for each.
            self.typer.bias.fill_(-4.0)
            # Start from the prior: logit = log P(e|m) + 2, so NIL (logit 0)
            # wins only where no candidate has a prior above e^-2; and from
            # trusting coherence (zero without facts): a logistic fit of prior
            # + coherence on AIDA gives weights of 1.5-3, further than the
            # optimizer's small steps would take them from zero.
            self.scorer.weight.zero_()
            self.scorer.weight[0, 1] = 1.0
            self.scorer.weight[0, N_OWN_FEATURES:] = 2.0
            self.scorer.bias.fill_(2.0)

    def forward(
        self,
        tokens: torch.Tensor,
        doc_lengths: torch.Tensor,
        *,
        tags: bool = True,
        mention_tokens: Optional[torch.Tensor] = None,
        mention_owners: Optional[torch.Tensor] = None,
        n_mentions: int = 0,
        mention_docs: Optional[torch.Tensor] = None,
        candidate_rows: Optional[torch.Tensor] = None,
        candidate_mask: Optional[torch.Tensor] = None,
        priors: Optional[torch.Tensor] = None,
        coherence: Optional[torch.Tensor] = None,
        entity_types: Optional[torch.Tensor] = None,
        entity_popularity: Optional[torch.Tensor] = None,
        entity_vectors: Optional[torch.Tensor] = None,
    ) -> Tuple[Optional[torch.Tensor], ...]:
        """Score a batch. `tokens` (n_tokens, width) are all the batch's token
        vectors, in documents of `doc_lengths` (n_docs,) tokens; mention `m`
        is the mean of `tokens[mention_tokens[j]]` over the `j` with
        `mention_owners[j] == m`, next to the mean of its document's tokens
        (`mention_docs`: the document of each mention). Candidates are padded to
        (n_mentions, k): `candidate_rows` index the batch's entity table
        (`entity_types` (n_entities, T) type indices padded with -1,
        `entity_popularity` (n_entities,) in [0, 1],
        `entity_vectors` (n_entities, entity_width)); `priors` (n_mentions, k)
        and `coherence` (n_mentions, k, N_COHERENCE) are the candidates' own
        features.

        Returns (tag logits or None, type logits, link logits (n_mentions,
        k + 1; the last column is NIL), description logits (n_mentions, k)),
        the last three None when no mentions are given.
        """
        tag_logits = self.tagger(self.dropout(self.in_context(tokens, doc_lengths))) if tags else None
        if mention_tokens is None:
            return tag_logits, None, None, None
        token_docs = torch.repeat_interleave(torch.arange(len(doc_lengths), device=tokens.device), doc_lengths)
        documents = self.mean(tokens, token_docs, len(doc_lengths))
        mentions = self.mean(tokens[mention_tokens], mention_owners, n_mentions)
        mentions = self.dropout(torch.cat([mentions, documents[mention_docs]], dim=1))
        type_logits = self.typer(mentions)
        entities = entity_vectors[candidate_rows]  # (n_mentions, k, entity_width)
        description = torch.einsum("md,mkd->mk", self.describer(mentions), entities) * self.entity_scale
        agreement, has_types = self.type_agreement(torch.sigmoid(type_logits), entity_types[candidate_rows])
        best_coherence = coherence.masked_fill(~candidate_mask.unsqueeze(-1), 0.0).amax(dim=1, keepdim=True)
        features = torch.cat(
            [
                torch.stack(
                    [priors, torch.log(priors.clamp(min=1e-4)), agreement, has_types, description, entity_popularity[candidate_rows]], dim=-1
                ),
                coherence,
                coherence - best_coherence,
            ],
            dim=-1,
        )
        link_logits = self.with_nil(self.scorer(features).squeeze(-1), candidate_mask)
        return tag_logits, type_logits, link_logits, description.masked_fill(~candidate_mask, MASKED)

    def in_context(self, tokens: torch.Tensor, doc_lengths: torch.Tensor) -> torch.Tensor:
        """(n_tokens, width + 2 * context_width): each token's vector next to
        the LSTM's states at it, read over its document in both directions."""
        if self.context is None:
            return tokens
        lengths = doc_lengths[doc_lengths > 0].cpu()
        if not len(lengths):
            return tokens.new_zeros((0, self.tagger[0].in_features))
        packed = nn.utils.rnn.pack_sequence(list(torch.split(tokens, lengths.tolist())), enforce_sorted=False)
        states, _ = self.context(packed)
        padded, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True)
        return torch.cat([tokens, torch.cat(nn.utils.rnn.unpad_sequence(padded, lengths, batch_first=True))], dim=1)

    @staticmethod
    def with_nil(scores: torch.Tensor, candidate_mask: torch.Tensor) -> torch.Tensor:
        """Link logits (n_mentions, k + 1): candidate scores, padding masked, then NIL's."""
        scores = scores.masked_fill(~candidate_mask, MASKED)
        return torch.cat([scores, scores.new_full((scores.shape[0], 1), NIL_LOGIT)], dim=1)

    @contextmanager
    def recording(self) -> Iterator[List[torch.Tensor]]:
        """Within the block, each forward pass that scores candidates appends
        their features (n_mentions, k, N_FEATURES) to the list yielded."""
        records: List[torch.Tensor] = []
        hook = self.scorer.register_forward_hook(lambda _, inputs, __: records.append(inputs[0].detach().float()))
        try:
            yield records
        finally:
            hook.remove()

    def fit_scorer(self, batches: Sequence[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]], l2: float = 1e-4, max_iter: int = 100) -> Dict[str, float]:
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
            raise ValueError("no mention to calibrate on: none has its gold entity among its candidates or a NIL gold answer")

        def measure() -> Tuple[torch.Tensor, int]:
            loss, correct = weight.new_zeros(()), 0
            for features, mask, target in kept:
                keep = target >= 0
                batch_logits = self.with_nil(F.linear(features[keep], weight, bias).squeeze(-1), mask[keep])
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
            "mentions": n, "loss_before": float(loss_before), "loss_after": float(loss_after),
            "accuracy_before": correct_before / n, "accuracy_after": correct_after / n,
        }

    @staticmethod
    def mean(vectors: torch.Tensor, owners: torch.Tensor, n: int) -> torch.Tensor:
        """(n, width): the mean of the `vectors` that each owner 0..n-1 owns."""
        sums = vectors.new_zeros((n, vectors.shape[1])).index_add_(0, owners, vectors)
        lengths = torch.bincount(owners, minlength=n).clamp(min=1).unsqueeze(1)
        return sums / lengths.to(sums.dtype)

    @staticmethod
    def type_agreement(type_probs: torch.Tensor, candidate_types: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean predicted probability of each candidate's KB types, and whether it has any.

        type_probs: (n_mentions, n_types); candidate_types: (n_mentions, k, T)
        type indices padded with -1.
        """
        n_mentions, k, width = candidate_types.shape
        present = candidate_types >= 0
        index = candidate_types.clamp(min=0).reshape(n_mentions, k * width)
        probs = type_probs.gather(1, index).reshape(n_mentions, k, width) * present
        counts = present.sum(-1)
        agreement = probs.sum(-1) / counts.clamp(min=1).to(probs.dtype)
        return agreement, (counts > 0).to(probs.dtype)
