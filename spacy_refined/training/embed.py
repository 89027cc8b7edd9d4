"""`kb embed`: store a trained pipeline's description embeddings in a KB."""

from pathlib import Path
from typing import Union

import numpy as np
from spacy.language import Language
from tqdm import tqdm

from ..kb.builder import store_embeddings
from ..kb.store import RefinedKB
from ..pipeline.linker import entity_texts, find_linker


def embed_kb(
    nlp: Language, kb_path: Union[str, Path], batch_size: int = 1024, *, force: bool = False, progress: bool = True
) -> int:
    """Compute the description embeddings of a KB's entities with the pipeline's
    `refined_linker`, and store them in the KB (float16), so that linking
    looks them up instead of encoding candidates on the fly.

    The texts come from the KB being embedded, which need not be the
    pipeline's own (it must share its type inventory to be linked with).
    Only segments without embeddings are encoded, unless the KB's embeddings
    come from another encoder (other weights) or `force` is set: then all
    are. Each segment's embeddings are stored under the KB's write lock
    (`kb.builder.store_embeddings`), so entities added meanwhile are kept.
    Returns the number of entities encoded.
    """
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
                vectors[start : start + len(indices)] = linker.encode_descriptions(entity_texts(kb, indices))
                bar.update(len(indices))
            store_embeddings(kb_path, segment.path.name, vectors, model_info)
    kb.reload()
    return total
