"""A KB from triples: a TSV of head, relation and tail names.

The form in which most question-answering data sets ship their KG (MetaQA,
PathQuestion, WorldCup2014): one fact per line, `head<TAB>relation<TAB>tail`,
where heads and tails are entity names. Every name becomes an entity whose ID
and label are the name; names written with underscores (`Lionel_Messi`) also
get the alias with spaces, so that questions can name them either way. The
relation names are the relation IDs; their labels have spaces for
underscores.

The triples of a file are held in memory while it is read (the entities'
facts must reach the builder with their subject), which suits KGs of up to a
few tens of millions of facts.
"""

from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

from ..util import DumpError, PathLike, open_text
from .builder import EntityRecord, KBBuilder


def read_triples(path: PathLike) -> Tuple[List[Dict[str, Any]], Dict[str, str]]:
    """Read a triples TSV into entities (as `kb add` and `--entities` take
    them) and relation labels.

    path (str / Path): The TSV (plain or compressed): head, relation, tail.
    RETURNS (Tuple[List[Dict[str, Any]], Dict[str, str]]): The entities, in
        order of first appearance, with "id", "label", "aliases" and "facts";
        and relation ID -> label.
    RAISES (DumpError): If the file is missing or a line does not have three
        non-empty tab-separated fields (naming the file and line).
    """
    facts: Dict[str, List[Tuple[str, str]]] = {}
    relations: Dict[str, str] = {}
    for head, relation, tail in _triples(path):
        facts.setdefault(head, []).append((relation, tail))
        facts.setdefault(tail, [])
        relations.setdefault(relation, relation.replace("_", " "))
    entities = [
        {
            "id": name,
            "label": name,
            "aliases": _aliases(name),
            "facts": [list(fact) for fact in dict.fromkeys(entity_facts)],
        }
        for name, entity_facts in facts.items()
    ]
    return entities, relations


def add_triples(builder: KBBuilder, path: PathLike) -> int:
    """Add the entities and facts of a triples TSV to a `KBBuilder`.

    builder (KBBuilder): The builder, inside its `with` block.
    path (str / Path): The triples TSV.
    RETURNS (int): The number of entities added.
    RAISES (DumpError): For a missing file or a malformed line.
    """
    entities, relations = read_triples(path)
    for data in entities:
        builder.writer.add_entity(EntityRecord.from_dict(data))
    for relation, label in relations.items():
        builder.relation_labels.setdefault(relation, label)
    builder.sources.append({"kind": "triples", "path": str(path), "entities": len(entities)})
    return len(entities)


def _triples(path: PathLike) -> Iterator[Tuple[str, str, str]]:
    if not Path(path).exists():
        raise DumpError(path, "no such file")
    with open_text(path) as f:
        for line_number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 3 or not all(field.strip() for field in fields):
                raise DumpError(
                    path,
                    f"expected head<TAB>relation<TAB>tail, got {len(fields)} field(s): {line[:80]!r}",
                    line=line_number,
                )
            yield fields[0].strip(), fields[1].strip(), fields[2].strip()


def _aliases(name: str) -> List[str]:
    spaced = " ".join(name.replace("_", " ").split())
    return [spaced] if spaced != name and spaced else []
