"""Coarse labels (PERSON, GPE, LOC, ORG, MISC) of linked mentions, from the
fine-grained KB types of their entities or from the typing head's
predictions. The linker writes them to `doc.ents`; training data and
evaluation label gold mentions the same way."""

from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from .kb.store import RefinedKB

DEFAULT_LABEL = "MISC"
# The first listed type an entity has wins. Places come before organizations:
# over Wikidata's subclass-of closure, countries and cities are organizations too.
DEFAULT_TYPE_LABELS = {
    "Q5": "PERSON",  # human
    "Q6256": "GPE",  # country
    "Q515": "GPE",  # city
    "Q56061": "GPE",  # administrative territorial entity
    "Q2221906": "LOC",  # geographic location
    "Q43229": "ORG",  # organization
}


class CoarseLabels:
    """Coarse labels (PERSON, ORG, ...) from fine types: the first type of the
    mapping that an entity has (or that the typing head predicts, p >= 0.5)."""

    def __init__(self, type_ids: Sequence[str], mapping: Dict[str, str], default: str) -> None:
        index = {t: i for i, t in enumerate(type_ids)}
        pairs = [(index[t], label) for t, label in mapping.items() if t in index]
        self.columns = np.array([c for c, _ in pairs], dtype="int64")
        self.labels = np.array([label for _, label in pairs] + [default], dtype=object)

    def from_types(self, type_matrix: np.ndarray) -> List[str]:
        """Labels of entities from their (n, n_types) multi-hot types."""
        return self._choose(type_matrix[:, self.columns] > 0)

    def for_ids(self, kb: "RefinedKB", ids: Sequence[str], unknown: Optional[str] = None) -> List[str]:
        """Labels of entities by ID, from their types in `kb` (the KB whose
        `type_ids` this mapping was built on).

        kb (RefinedKB): The KB that types the entities.
        ids (Sequence[str]): Entity IDs; NIL, unknown and IDs not in the KB are allowed.
        unknown (Optional[str]): The label of IDs not in the KB (None: the default label).
        RETURNS (List[str]): One label per ID.
        """
        if not len(ids):
            return []
        indices = kb.find(list(ids))
        known = indices >= 0
        labels = np.full(len(ids), self.labels[-1] if unknown is None else unknown, dtype=object)
        if known.any():
            labels[known] = self.from_types(kb.type_matrix(indices[known]))
        return labels.tolist()

    def from_probabilities(self, probabilities: np.ndarray) -> List[str]:
        """Labels of NIL mentions from predicted (n, n_types) type probabilities."""
        return self._choose(probabilities[:, self.columns] >= 0.5)

    def _choose(self, hits: np.ndarray) -> List[str]:
        if not len(self.columns):
            return [self.labels[-1]] * len(hits)
        choice = np.where(hits.any(axis=1), hits.argmax(axis=1), len(self.columns))
        return self.labels[choice].tolist()
