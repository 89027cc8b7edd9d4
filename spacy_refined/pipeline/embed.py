"""Description embeddings of KB entities: precomputed into the KB, or cached."""
from pathlib import Path
from typing import Tuple, Union

import numpy as np
from spacy.language import Language
from tqdm import tqdm

from ..util import sorted_positions
from ..kb.store import RefinedKB


class EmbeddingCache:
    """Description embeddings computed on the fly, keyed by KB index.

    Stored as float16, like precomputed KB embeddings, so both give the same
    scores. Bounded: when full, it starts again empty.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.clear()

    def clear(self) -> None:
        self.keys = np.zeros(0, dtype="int64")
        self.vectors = np.zeros((0, 0), dtype="float16")

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, indices: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(vectors of the cached indices (float32), mask of the cached indices)."""
        if not len(self.keys) or not len(indices):
            return np.zeros((0, 0), dtype="float32"), np.zeros(len(indices), dtype=bool)
        position = sorted_positions(self.keys, indices)
        found = position >= 0
        return self.vectors[position[found]].astype("float32"), found

    def add(self, indices: np.ndarray, vectors: np.ndarray) -> None:
        if len(self.keys) + len(indices) > self.max_size:
            self.clear()
        if not len(self.keys):
            self.vectors = np.zeros((0, vectors.shape[1]), dtype="float16")
        keys = np.concatenate([self.keys, indices])
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.vectors = np.concatenate([self.vectors, vectors.astype("float16")])[order]


def embed_kb(nlp: Language, kb_path: Union[str, Path], batch_size: int = 1024, *, force: bool = False, progress: bool = True) -> int:
    """Compute the description embeddings of a KB's entities with the pipeline's
    `refined_linker`, and store them in the KB (float16), so that linking
    looks them up instead of encoding candidates on the fly.

    Only segments without embeddings are encoded, unless the KB's embeddings
    come from another encoder (other weights) or `force` is set: then all
    are. Returns the number of entities encoded.
    """
    from .linker import find_linker

    linker = find_linker(nlp)
    kb_path = Path(kb_path)
    own = linker.kb is not None and linker.kb.path is not None and linker.kb.path.resolve() == kb_path.resolve()
    kb = linker.kb if own else RefinedKB.load(kb_path, nlp.vocab)
    fingerprint = linker.encoder_fingerprint
    stored = kb.manifest.get("embeddings") or {}
    redo_all = force or stored.get("fingerprint") != fingerprint
    todo = [s for s, segment in enumerate(kb.segments) if redo_all or segment.embeddings is None]
    model_info = {
        "fingerprint": fingerprint,
        "width": linker.entity_width,
        "pipeline": f"{nlp.meta.get('lang')}_{nlp.meta.get('name')}-{nlp.meta.get('version')}",
        "component": linker.name,
    }
    total = sum(kb.segments[s].n_entities for s in todo)
    with tqdm(total=total, desc="embedding entities", unit="entities", disable=not progress) as bar:
        for s in todo:
            segment = kb.segments[s]
            vectors = np.zeros((segment.n_entities, linker.entity_width), dtype="float16")
            for start in range(0, segment.n_entities, batch_size):
                indices = np.arange(segment.start + start, min(segment.start + start + batch_size, segment.end))
                vectors[start : start + len(indices)] = linker.encode_descriptions(linker.entity_texts(indices))
                bar.update(len(indices))
            kb.set_embeddings(s, vectors, model_info)
    if own:
        linker.set_kb(kb)
    return total
