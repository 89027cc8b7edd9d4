"""Entity IDs and the labels of linked mentions: one convention for the
linker, training data and evaluation.

A gold or predicted mention carries one of three kinds of ID:

* an entity ID of the KB (e.g. "Q90");
* NIL: the mention names an entity that the KB does not have. Data sets
  write it "<NIL>" or "NIL"; the linker writes `NIL`;
* unknown: the mention is linked but its ID is not known (null, "" or
  "<NO_MAPPING>" in the data). Such a mention still teaches mention
  detection, but it is left out of the disambiguation loss and of every
  linking score.
"""

from typing import Optional

NIL = "NIL"
UNKNOWN = ""
# NIL as EL records (JSONL) write it: what the document readers produce.
RECORD_NIL = "<NIL>"
NIL_IDS = frozenset({RECORD_NIL, NIL})
UNKNOWN_IDS = frozenset({UNKNOWN, "<NO_MAPPING>"})
# The label of entity mentions in the mention-detection head's tags.
ENTITY_LABEL = "ENT"


def entity_status(entity_id: Optional[str]) -> str:
    """`NIL`, `UNKNOWN` ("") or the entity ID itself."""
    if entity_id is None or entity_id in UNKNOWN_IDS:
        return UNKNOWN
    if entity_id in NIL_IDS:
        return NIL
    return entity_id
