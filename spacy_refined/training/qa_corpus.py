"""Question-answering JSONL -> spaCy `Example`s (for `spacy train`).

A record: `{"question": str, "answers": [entity ID, ...]}`, optionally
`"topic_entities": [entity ID, ...]` and `"question_marked"` (the question
with each topic entity in brackets: "who directed [Titanic]"). The gold
answers go to `Example.reference.user_data["qa_answers"]`. The topic
entities become the span group `topic_entities` (with `kb_id_`) of both
docs: the `refined_qa` component reads them only with `entities = "gold"`,
and the entity-resolution metric reads the reference's; they are placed by
the brackets of `question_marked`, else at the first occurrence of the
entity ID in the question (case-insensitive), else left out. Other fields
(`id`, `qtype`, `path`) go to `user_data` of both docs.
"""

import random
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry

from ..evaluation.qa import ANSWERS_KEY, TOPIC_KEY
from ..kb.normalize import normalize_alias
from ..util import DumpError, read_jsonl

TOPIC_LABEL = "TOPIC"
_MARKED = re.compile(r"\[([^\[\]]+)\]")


@registry.readers("spacy_refined.QACorpus.v1")
def create_qa_corpus(
    path: Union[str, Path], limit: int = 0, shuffle: bool = False, seed: int = 0
) -> Callable[[Language], Iterator[Example]]:
    """A corpus of questions with their answers, for `spacy train`
    (`[corpora.train] @readers = "spacy_refined.QACorpus.v1"`).

    path (str / Path): The JSONL file (plain or compressed).
    limit (int): Read at most this many questions (0: all).
    shuffle (bool): Read the questions in a random order, the same on every
        pass, so that `limit` takes a random sample: a dev sample that
        covers all question types of a file sorted by type.
    seed (int): The seed of that order.
    RETURNS (Callable[[Language], Iterator[Example]]): The corpus.
    """
    return QACorpus(path, limit=limit, shuffle=shuffle, seed=seed)


class QACorpus:
    """Iterate over the questions of a QA JSONL file as `Example`s."""

    def __init__(self, path: Union[str, Path], *, limit: int = 0, shuffle: bool = False, seed: int = 0) -> None:
        self.path = path
        self.limit = limit
        self.shuffle = shuffle
        self.seed = seed

    def __call__(self, nlp: Language) -> Iterator[Example]:
        records: Iterable[Tuple[int, Dict[str, Any]]] = read_jsonl(self.path)
        if self.shuffle:
            records = list(records)
            random.Random(self.seed).shuffle(records)
        for n, (line, record) in enumerate(records):
            if self.limit and n >= self.limit:
                return
            try:
                yield question_example(nlp, record)
            except ValueError as error:
                raise DumpError(self.path, str(error), line=line) from None


def question_example(nlp: Language, record: Dict[str, Any]) -> Example:
    """The `Example` of one QA record (see the module docstring); ValueError if malformed.

    nlp (Language): The pipeline whose tokenizer makes the docs.
    record (Dict[str, Any]): The record.
    RETURNS (Example): The example.
    """
    question = record.get("question")
    answers = record.get("answers", [])
    if not isinstance(question, str):
        raise ValueError("a question record needs a string 'question'")
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise ValueError("'answers' must be a list of entity IDs")
    predicted = nlp.make_doc(question)
    topics = _topic_spans(predicted, record.get("question_marked"), list(record.get("topic_entities") or []))
    predicted.spans[TOPIC_KEY] = topics
    extra = {key: record[key] for key in ("id", "qtype", "path") if key in record}
    predicted.user_data.update(extra)
    reference = predicted.copy()
    reference.user_data[ANSWERS_KEY] = list(answers)
    return Example(predicted, reference)


def _topic_spans(doc: Doc, marked: Any, topic_entities: List[str]) -> List[Span]:
    """The topic entities as spans with `kb_id_`: by the brackets of `marked`, else by search."""
    places: List[Tuple[int, int, str]] = []
    unplaced = list(topic_entities)
    if isinstance(marked, str):
        removed = 0
        for match in _MARKED.finditer(marked):
            start = match.start() - removed
            text = match.group(1)
            removed += 2
            entity = next((e for e in unplaced if e == text or normalize_alias(e) == normalize_alias(text)), None)
            if entity is not None:
                unplaced.remove(entity)
                places.append((start, start + len(text), entity))
    lowered = doc.text.casefold()
    for entity in unplaced:
        for surface in dict.fromkeys([entity, entity.replace("_", " ")]):
            at = lowered.find(surface.casefold())
            if at >= 0:
                places.append((at, at + len(surface), entity))
                break
    spans = []
    for start, end, entity in sorted(places):
        span = doc.char_span(start, end, label=TOPIC_LABEL, kb_id=entity, alignment_mode="expand")
        if span is not None:
            spans.append(span)
    return spans
