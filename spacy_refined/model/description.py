"""Description encoders: entity text ("label: description") -> one vector.

Both are `Model[List[str], Floats2d]` with an `nO` dimension and are trained
jointly with the linker:

* `spacy_refined.HashDescriptionEncoder.v1`: hashed word, prefix and suffix
  embeddings, mean pooling and a projection (cheap, for CPU pipelines);
* `spacy_refined.TransformerDescriptionEncoder.v1`: the first layers of a
  Hugging Face encoder, first-token pooling and a projection (ReFinED's
  description encoder: 2 layers, 32 tokens, 300 dimensions).
"""

import re
from functools import lru_cache
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from spacy.strings import get_string_id
from spacy.util import registry
from thinc.api import ArgsKwargs, HashEmbed, Linear, Model, Ragged, chain, reduce_mean, torch2xp, with_array, xp2torch
from thinc.types import Floats2d
from torch import nn

from ._torch import serializable, shim_device, torch_shim, wrapped_module

_WORD = re.compile(r"\w+", re.UNICODE)
_TEXT_FEATURE = get_string_id("<description>")


@registry.architectures("spacy_refined.HashDescriptionEncoder.v1")
def build_hash_description_encoder(
    width: int = 300, embed_width: int = 128, n_rows: int = 20000, max_words: int = 32, seed: int = 13
) -> Model[List[str], Floats2d]:
    """Hashed embeddings of each word's lowercase form, prefix and suffix
    (first `max_words` words), averaged, then projected to `width`."""
    return chain(
        description_features(max_words),
        with_array(HashEmbed(embed_width, n_rows, seed=seed)),
        reduce_mean(),
        Linear(width, embed_width),
    )


def description_features(max_words: int) -> Model[List[str], Ragged]:
    """Texts -> hash keys of their word features (a constant one included, so no bag is empty)."""
    return Model("description_features", _features_forward, attrs={"max_words": max_words})


def _features_forward(model: Model, texts: List[str], is_train: bool) -> Tuple[Ragged, Callable]:
    max_words = model.attrs["max_words"]
    keys: List[int] = []
    lengths = np.zeros(len(texts), dtype="int32")
    for i, text in enumerate(texts):
        start = len(keys)
        keys.append(_TEXT_FEATURE)
        for word in _WORD.findall(text.lower())[:max_words]:
            keys.extend(_word_features(word))
        lengths[i] = len(keys) - start
    data = model.ops.asarray(np.array(keys, dtype="uint64"), dtype="uint64")
    return Ragged(data, model.ops.asarray1i(lengths)), lambda d_features: []


@lru_cache(maxsize=1 << 17)
def _word_features(word: str) -> Tuple[int, int, int]:
    return get_string_id(word), get_string_id("P:" + word[:3]), get_string_id("S:" + word[-3:])


@registry.architectures("spacy_refined.TransformerDescriptionEncoder.v1")
def build_transformer_description_encoder(
    name: str, width: int = 300, n_layers: int = 2, max_length: int = 32
) -> Model[List[str], Floats2d]:
    """The first `n_layers` layers of the Hugging Face encoder `name` (a hub
    name or a local path, loaded at initialization; a fast tokenizer is
    required) over the first `max_length` tokens, first-token pooling and a
    projection to `width`. A trained pipeline stores the weights, the
    tokenizer and the model config itself: loading it needs no download."""
    return Model(
        "transformer_description_encoder",
        _transformer_forward,
        init=_transformer_init,
        dims={"nO": width},
        attrs={"name": name, "n_layers": n_layers, "max_length": max_length},
        shims=[torch_shim()],
    )


def _transformer_init(model: Model, X: Optional[List[str]] = None, Y=None) -> None:
    module = DescriptionTransformer.from_pretrained(
        model.attrs["name"],
        n_layers=model.attrs["n_layers"],
        width=model.get_dim("nO"),
        max_length=model.attrs["max_length"],
    )
    model.shims[0] = torch_shim(module)


def _transformer_forward(model: Model, texts: List[str], is_train: bool) -> Tuple[Floats2d, Callable]:
    if not texts:
        return model.ops.alloc2f(0, model.get_dim("nO")), lambda dY: []
    module: DescriptionTransformer = wrapped_module(model)
    device = shim_device(model)
    input_ids, attention_mask = (torch.as_tensor(a, device=device) for a in module.tokenize(texts))
    output, backprop_shim = model.shims[0](ArgsKwargs(args=(input_ids, attention_mask), kwargs={}), is_train)

    def backprop(dY: Floats2d) -> List[str]:
        backprop_shim(ArgsKwargs(args=((output,),), kwargs={"grad_tensors": [xp2torch(dY, device=device)]}))
        return []

    return torch2xp(output, ops=model.ops), backprop


@serializable
class DescriptionTransformer(nn.Module):
    """First layers of a Hugging Face encoder + first-token pooling + projection."""

    def __init__(
        self, hf_config: Dict[str, Any], tokenizer_json: str, width: int, max_length: int, pad_id: int, pad_token: str
    ) -> None:
        from tokenizers import Tokenizer
        from transformers import AutoConfig, AutoModel

        super().__init__()
        self.config = {
            "hf_config": hf_config,
            "tokenizer_json": tokenizer_json,
            "width": width,
            "max_length": max_length,
            "pad_id": pad_id,
            "pad_token": pad_token,
        }
        config = AutoConfig.for_model(**hf_config)
        self.transformer = AutoModel.from_config(config)
        self.projection = nn.Linear(config.hidden_size, width)
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)

    @classmethod
    def from_pretrained(cls, name: str, n_layers: int, width: int, max_length: int) -> "DescriptionTransformer":
        """Load the first `n_layers` layers of a pretrained model and its tokenizer."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        tokenizer = AutoTokenizer.from_pretrained(name)
        if not tokenizer.is_fast:
            raise ValueError(f"the description encoder needs a fast tokenizer, and {name!r} has none")
        config = AutoConfig.from_pretrained(name)
        config.num_hidden_layers = n_layers
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the unused upper layers are expected
        try:
            pretrained = AutoModel.from_pretrained(name, config=config)
        finally:
            hf_logging.set_verbosity(verbosity)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        module = cls(
            config.to_dict(),
            tokenizer.backend_tokenizer.to_str(),
            width,
            max_length,
            pad_id,
            tokenizer.pad_token or tokenizer.convert_ids_to_tokens(pad_id),
        )
        module.transformer.load_state_dict(pretrained.state_dict())
        return module

    def tokenize(self, texts: List[str]) -> Tuple[np.ndarray, np.ndarray]:
        """Token IDs and attention mask, (n_texts, length) int64 arrays."""
        encodings = self.tokenizer.encode_batch(texts)
        input_ids = np.array([e.ids for e in encodings], dtype="int64")
        attention_mask = np.array([e.attention_mask for e in encodings], dtype="int64")
        return input_ids, attention_mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.projection(hidden[:, 0])
