"""The ReFinED model as a thinc `Model`: token vectors from any spaCy tok2vec
or transformer listener, PyTorch heads (see `heads.py`) and a description
encoder (see `description.py`), trained jointly.

The model's input is a `RefinedInput` (see `types.py`); its output is a
`RefinedOutput` of logits, and `backprop` takes the gradients of the loss as
`Logits`.
"""

from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from spacy.attrs import IS_SPACE
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.layers.pytorchwrapper import forward as pytorch_forward
from thinc.types import Floats2d

# Imported for their registrations (the description encoder architectures).
from . import description  # noqa: F401
from ._torch import shim_device, torch_shim
from .bio import IMPOSSIBLE, best_tags, decode_tags
from .heads import CandidateTensors, HeadsOutput, MentionTensors, RefinedHeads
from .relations import RelationTensors
from .types import HeadsInput, Logits, Mentions, Origin, RefinedInput, RefinedOutput


@registry.architectures("spacy_refined.RefinedModel.v1")
def build_refined_model(
    tok2vec: Model[List[Doc], List[Floats2d]],
    description_encoder: Model[List[str], Floats2d],
    hidden_width: int = 128,
    dropout: float = 0.1,
    context_width: int = 0,
    feature_dropout: float = 0.0,
) -> Model[RefinedInput, RefinedOutput]:
    """ReFinED: mention detection, entity typing and disambiguation in one pass.

    The input carries a `lookup` callback, which the model calls between
    detecting the mentions and scoring their candidates: the model runs only
    with a lookup (the component passes its KB lookup), which takes the
    docs, the mentions and `is_train` and returns their `Candidates`.
    `initialize` takes a sample input (`RefinedInput`; its lookup is not
    called), and the heads are sized from `set_output_sizes`, which must be
    called first (the component does it from the KB).

    tok2vec (Model[List[Doc], List[Floats2d]]): token vectors, e.g.
        `spacy.Tok2Vec.v2`/`spacy.HashEmbedCNN.v2`, `spacy.Tok2VecListener.v1`
        or `spacy-transformers.TransformerListener.v1` (long docs are split
        in windows by the transformer's span getter).
    description_encoder (Model[List[str], Floats2d]): entity descriptions ->
        vectors, e.g. `spacy_refined.HashDescriptionEncoder.v1` or
        `spacy_refined.TransformerDescriptionEncoder.v1`.
    hidden_width (int): hidden layer of the BIO tagger.
    dropout (float): dropout of the heads.
    context_width (int): units of the BIO tagger's bidirectional LSTM over
        each document (each way; 0: no LSTM, the tagger sees each token's
        vector alone). The LSTM pays for a weak encoder such as a CNN tok2vec.
    feature_dropout (float): the share of training mentions whose typing and
        description scores the candidate scorer does not see, so that it
        does not learn to trust them over the KB's prior where they do not
        apply (new entities, other text).
    RETURNS (Model[RefinedInput, RefinedOutput]): the model.
    """
    # PyTorchWrapper_v3's forward (convert inputs, call the shim, convert
    # outputs) in a Model of our own: PyTorchWrapper_v3 builds a Model named
    # "pytorch" whose only dims are nI and nO, and loading a saved pipeline
    # sets each saved dim (n_tags, n_types) by name.
    heads = Model(
        "refined_heads",
        pytorch_forward,
        dims={"nI": None, "n_tags": None, "n_types": None, "n_coherence": None, "n_relations": None},
        attrs={
            "convert_inputs": _heads_inputs,
            "convert_outputs": _heads_outputs,
            "hidden_width": hidden_width,
            "dropout": dropout,
            "context_width": context_width,
            "feature_dropout": feature_dropout,
        },
        shims=[torch_shim()],
    )
    return Model(
        "refined",
        _forward,
        init=_init,
        layers=[tok2vec, description_encoder, heads],
        refs={"tok2vec": tok2vec, "description_encoder": description_encoder, "heads": heads},
    )


def set_output_sizes(model: Model, n_tags: int, n_types: int, n_coherence: int, n_relations: int = 0) -> None:
    """Size the heads (before `initialize`).

    model (Model): a model built by `build_refined_model`.
    n_tags (int): the number of BIO tags.
    n_types (int): the size of the KB's type inventory.
    n_coherence (int): the coherence features per candidate (the last axis
        of `Candidates.coherence`).
    n_relations (int): the KB relations of the relation head (0: none).
    """
    heads = model.get_ref("heads")
    heads.set_dim("n_tags", n_tags, force=True)
    heads.set_dim("n_types", n_types, force=True)
    heads.set_dim("n_coherence", n_coherence, force=True)
    heads.set_dim("n_relations", n_relations, force=True)


def _init(model: Model, X: Optional[RefinedInput] = None, Y=None) -> None:
    tok2vec = model.get_ref("tok2vec")
    encoder = model.get_ref("description_encoder")
    heads = model.get_ref("heads")
    docs = [doc for doc in (X.docs if X is not None else []) if len(doc)]
    tok2vec.initialize(X=docs or None)
    encoder.initialize(X=["Example: an entity description"])
    heads.set_dim("nI", _token_width(tok2vec, docs), force=True)
    module = RefinedHeads(
        width=heads.get_dim("nI"),
        n_tags=heads.get_dim("n_tags"),
        n_types=heads.get_dim("n_types"),
        entity_width=encoder.get_dim("nO"),
        hidden_width=heads.attrs["hidden_width"],
        dropout=heads.attrs["dropout"],
        context_width=heads.attrs["context_width"],
        n_coherence=heads.get_dim("n_coherence"),
        alias_feature=True,
        feature_dropout=heads.attrs["feature_dropout"],
        relative_description=True,
        n_relations=heads.get_dim("n_relations") if heads.has_dim("n_relations") is True else 0,
    )
    heads.shims[0] = torch_shim(module)


def _token_width(tok2vec: Model, docs: List[Doc]) -> int:
    """Width of the token vectors: the `nO` dim, else measured on a sample."""
    if tok2vec.has_dim("nO") is True:
        return tok2vec.get_dim("nO")
    if not docs:
        raise ValueError(
            "cannot infer the token vector width of the tok2vec layer: initialize the model with sample docs"
        )
    return tok2vec.predict(docs[:1])[0].shape[1]


def _forward(model: Model, inputs: RefinedInput, is_train: bool) -> Tuple[RefinedOutput, Callable[[Logits], List[Doc]]]:
    tok2vec = model.get_ref("tok2vec")
    encoder = model.get_ref("description_encoder")
    heads = model.get_ref("heads")
    docs = inputs.docs
    lengths = np.array([len(doc) for doc in docs], dtype="int64")
    tokvecs, backprop_tok2vec = tok2vec(docs, is_train)
    tokens = model.ops.flatten(tokvecs) if lengths.sum() else model.ops.alloc2f(0, heads.get_dim("nI"))
    mentions, extra = inputs.mentions, Mentions.empty()
    tag_logits = None
    if mentions is None:
        tagged = None
        if inputs.tag:
            tag_logits = heads.predict(HeadsInput(tokens, lengths, tags=True)).tag_logits
            log_probs = torch.log_softmax(xp2torch(tag_logits).float(), dim=1).cpu().numpy()
            log_probs[_space_tokens(docs), 1:] = IMPOSSIBLE  # whitespace is never part of a mention
            found = decode_tags(best_tags(log_probs, lengths), lengths)
            tagged, extra = found.subset(found.label == 0), found.subset(found.label > 0)
        if inputs.propose is not None:
            mentions = inputs.propose(docs, tagged)
        elif tagged is not None:
            mentions = tagged
        else:
            raise ValueError("the model has no mentions to link: give mentions, tag the docs or a `propose` function")
    candidates = inputs.lookup(docs, mentions, is_train)
    if candidates.vectors is not None:
        vectors, backprop_vectors = model.ops.asarray2f(candidates.vectors), None
    elif candidates.texts:
        vectors, backprop_vectors = encoder(candidates.texts, is_train)
    else:
        vectors, backprop_vectors = model.ops.alloc2f(0, encoder.get_dim("nO")), None
    doc_offsets = np.cumsum(lengths) - lengths
    mention_tokens, owners = mentions.token_index(doc_offsets)
    logits, backprop_heads = heads(
        HeadsInput(
            tokens,
            lengths,
            is_train,
            mentions=mentions,
            mention_tokens=mention_tokens,
            owners=owners,
            candidates=candidates,
            vectors=vectors,
        ),
        is_train,
    )
    output = RefinedOutput(
        mentions=mentions,
        candidates=candidates,
        tag_logits=logits.tag_logits if logits.tag_logits is not None else tag_logits,
        type_logits=logits.type_logits,
        link_logits=logits.link_logits,
        description_logits=logits.description_logits,
        extra=extra,
        relation_logits=logits.relation_logits,
    )

    def backprop(d_output: Logits) -> List[Doc]:
        d_tokens, d_vectors = backprop_heads(d_output)
        if backprop_vectors is not None and d_vectors is not None:
            backprop_vectors(d_vectors)
        return backprop_tok2vec(model.ops.unflatten(d_tokens, model.ops.asarray1i(lengths)))

    return output, backprop


def _space_tokens(docs: List[Doc]) -> np.ndarray:
    """Boolean mask of the whitespace tokens ("\\n", "  ") of a batch's docs."""
    return np.concatenate([np.zeros(0, dtype=bool)] + [doc.to_array(IS_SPACE).astype(bool) for doc in docs])


def _heads_inputs(model: Model, inputs: HeadsInput, is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    """`HeadsInput` -> the arguments of `RefinedHeads.forward`, and a callback
    from their gradients to those of the token vectors and of the entity
    description vectors (None: none)."""
    device = shim_device(model)
    tokens = xp2torch(inputs.tokens, requires_grad=is_train, device=device)
    kwargs = {"tags": inputs.tags}
    if inputs.mentions is not None:
        candidates = inputs.candidates
        kwargs["mentions"] = MentionTensors(
            tokens=torch.as_tensor(inputs.mention_tokens, device=device),
            owners=torch.as_tensor(inputs.owners, device=device),
            docs=torch.as_tensor(inputs.mentions.doc, device=device),
            from_aliases=torch.as_tensor(inputs.mentions.origin == Origin.ALIASES, dtype=torch.float32, device=device),
        )
        kwargs["candidates"] = CandidateTensors(
            rows=torch.as_tensor(candidates.rows, device=device),
            mask=torch.as_tensor(candidates.mask, device=device),
            priors=torch.as_tensor(candidates.priors, device=device),
            coherence=torch.as_tensor(candidates.coherence, device=device),
            types=torch.as_tensor(candidates.types, device=device),
            popularity=torch.as_tensor(candidates.popularity, dtype=torch.float32, device=device),
            vectors=xp2torch(inputs.vectors, requires_grad=is_train, device=device),
        )
        if candidates.relations is not None:
            kwargs["relations"] = RelationTensors.from_inputs(candidates.relations, device)
    arguments = ArgsKwargs(args=(tokens, torch.as_tensor(inputs.lengths, device=device)), kwargs=kwargs)

    def get_d_inputs(d_arguments: ArgsKwargs) -> Tuple[Floats2d, Optional[Floats2d]]:
        # The shim gives the gradients in the arguments' structure, the
        # named tuples as plain ones.
        d_tokens = d_arguments.args[0]
        d_candidates = d_arguments.kwargs.get("candidates")
        d_vectors = CandidateTensors(*d_candidates).vectors if d_candidates is not None else None
        d_tokens = (
            torch2xp(d_tokens, ops=model.ops) if d_tokens is not None else model.ops.alloc2f(*inputs.tokens.shape)
        )
        return d_tokens, (torch2xp(d_vectors, ops=model.ops) if d_vectors is not None else None)

    return arguments, get_d_inputs


def _heads_outputs(
    model: Model, inputs_outputs: Tuple[HeadsInput, HeadsOutput], is_train: bool
) -> Tuple[Logits, Callable]:
    """`HeadsOutput` -> `Logits`, field by field, and a callback from the
    gradients (`Logits`) to the shim's backward arguments."""
    outputs = inputs_outputs[1]._asdict()
    logits = Logits(**{name: torch2xp(t, ops=model.ops) if t is not None else None for name, t in outputs.items()})

    def get_d_outputs(d_logits: Logits) -> ArgsKwargs:
        pairs = [(t, getattr(d_logits, name)) for name, t in outputs.items()]
        pairs = [(t, xp2torch(d_t, device=t.device)) for t, d_t in pairs if t is not None and d_t is not None]
        return ArgsKwargs(args=(tuple(t for t, _ in pairs),), kwargs={"grad_tensors": [d_t for _, d_t in pairs]})

    return logits, get_d_outputs
