"""Question-answering metrics: Hits@1, Hits@k, answer-set F1 and
entity-resolution accuracy, overall and by group (hop count, question type).

One question's scores come from its ranked answers (`doc._.answers`), its
resolved entities (`doc._.qa_entities`) and its gold answers and topic
entities. The same functions serve `spacy train`'s scorer
(`spacy_refined.qa_scorer.v1`) and `evaluate-qa`.
"""

import time
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.training import Example
from spacy.util import registry

ANSWERS_KEY = "qa_answers"  # the gold answers (entity IDs) in `Example.reference.user_data`
TOPIC_KEY = "topic_entities"  # the annotated topic entities, a span group of the reference


def question_scores(
    answers: Sequence[Tuple[str, float]],
    resolved: Sequence[Dict[str, Any]],
    gold_answers: Iterable[str],
    topic_entities: Iterable[str],
    k: int = 10,
    threshold: float = 0.5,
) -> Dict[str, Optional[float]]:
    """The scores of one question.

    answers (Sequence[Tuple[str, float]]): Ranked (entity ID, score) answers.
    resolved (Sequence[Dict[str, Any]]): Resolved entities, best first (dicts
        with "kb_id", as `doc._.qa_entities`).
    gold_answers (Iterable[str]): The gold answers.
    topic_entities (Iterable[str]): The annotated topic entities (empty: not
        annotated, no entity-resolution score).
    k (int): The k of Hits@k.
    threshold (float): The predicted answer set is the answers scoring at
        least this, or the top answer when none does.
    RETURNS (Dict[str, Optional[float]]): "hits1", "hits_k", "f1" and
        "er_acc" (None without topic entities).
    """
    gold = set(gold_answers)
    topic = set(topic_entities)
    ranked = [entity for entity, _ in answers]
    predicted = {entity for entity, score in answers if score >= threshold} or set(ranked[:1])
    overlap = len(predicted & gold)
    f1 = 2 * overlap / (len(predicted) + len(gold)) if predicted or gold else 1.0
    return {
        "hits1": float(bool(ranked) and ranked[0] in gold),
        "hits_k": float(any(entity in gold for entity in ranked[:k])),
        "f1": f1,
        "er_acc": (float(bool(resolved) and resolved[0]["kb_id"] in topic) if topic else None),
    }


class QAMetrics:
    """Accumulates question scores, overall and by group."""

    METRICS = ("hits1", "hits_k", "f1", "er_acc")

    def __init__(self) -> None:
        self.sums: Dict[str, Dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.counts: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, scores: Dict[str, Optional[float]], groups: Iterable[str] = ()) -> None:
        """Add one question's scores to the totals and to each of its `groups` (e.g. "hops=2")."""
        for group in ("all", *groups):
            for metric, value in scores.items():
                if value is not None:
                    self.sums[group][metric] += value
                    self.counts[group][metric] += 1
            self.counts[group]["n"] += 1

    def group(self, name: str = "all") -> Dict[str, Any]:
        """The means (percent) of one group and its number of questions."""
        result: Dict[str, Any] = {"n": self.counts[name]["n"]}
        for metric in self.METRICS:
            count = self.counts[name][metric]
            result[metric] = round(100.0 * self.sums[name][metric] / count, 2) if count else None
        return result

    def results(self) -> Dict[str, Any]:
        """Overall means and, per group, its means."""
        return {
            **self.group("all"),
            "groups": {name: self.group(name) for name in sorted(self.counts) if name != "all"},
        }


@registry.scorers("spacy_refined.qa_scorer.v1")
def make_qa_scorer(k: int = 10, threshold: float = 0.5) -> Callable[..., Dict[str, Any]]:
    """The `refined_qa` component's scorer: qa_hits1, qa_hits_k, qa_f1 and
    qa_er_acc (fractions), from the predicted docs' answers and the
    references' gold answers and topic entities.

    k (int): The k of Hits@k.
    threshold (float): The answer score from which an answer is in the predicted set.
    RETURNS (Callable[[Iterable[Example]], Dict[str, Any]]): The scorer.
    """

    def score(examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        metrics = QAMetrics()
        for eg in examples:
            metrics.add(
                question_scores(
                    eg.predicted._.answers or [],
                    eg.predicted._.qa_entities or [],
                    eg.reference.user_data.get(ANSWERS_KEY, []),
                    topic_ids(eg.reference),
                    k=k,
                    threshold=threshold,
                )
            )
        overall = metrics.group()
        return {f"qa_{m}": (overall[m] / 100.0 if overall[m] is not None else None) for m in QAMetrics.METRICS}

    return score


def topic_ids(doc: Any) -> List[str]:
    """The entity IDs of a doc's annotated topic entities (span group `topic_entities`)."""
    return [span.kb_id_ for span in doc.spans[TOPIC_KEY]] if TOPIC_KEY in doc.spans else []


def question_groups(record: Dict[str, Any]) -> List[str]:
    """The groups a question's scores are also reported in: "hops=k" (from
    MetaQA's `qtype`, or the length of a `path`; "conj" for a path per
    topic entity) and "qtype=..." where given (`record`: a QA record, or the
    `user_data` of its doc)."""
    groups = []
    if isinstance(record.get("qtype"), str):
        groups.append(f"hops={record['qtype'].count('_to_')}")
        groups.append(f"qtype={record['qtype']}")
    path = record.get("path")
    if isinstance(path, list) and path:
        groups.append("hops=conj" if isinstance(path[0], list) else f"hops={len(path)}")
    return groups


def evaluate_qa(nlp: Any, examples: Sequence[Example], *, k: int = 10, batch_size: int = 256) -> Dict[str, Any]:
    """Answer the questions of QA examples (`training.qa_corpus`) with a
    pipeline and score the answers.

    nlp (Language): A pipeline with a `refined_qa` component.
    examples (Sequence[Example]): The questions (predicted docs), their gold
        answers and topic entities (references), and in `user_data` the
        `qtype` or `path` that groups them.
    k (int): The k of Hits@k.
    batch_size (int): Questions per batch.
    RETURNS (Dict[str, Any]): The metrics in percent (`QAMetrics.results`),
        with "questions_per_second" (the pipeline's components over the
        tokenized questions, after a warm-up batch) and the number of
        questions whose status was "no_entity".
    """
    docs = [eg.predicted for eg in examples]
    list(nlp.pipe((doc.copy() for doc in docs[:batch_size]), batch_size=batch_size))  # warm-up
    started = time.perf_counter()
    predicted = list(nlp.pipe(docs, batch_size=batch_size))
    seconds = time.perf_counter() - started
    thresholds = [component.answer_threshold for _, component in nlp.pipeline if hasattr(component, "answer_threshold")]
    threshold = thresholds[0] if thresholds else 0.5
    metrics = QAMetrics()
    no_entity = 0
    for eg, doc in zip(examples, predicted):
        no_entity += doc._.qa_status == "no_entity"
        scores = question_scores(
            doc._.answers or [],
            doc._.qa_entities or [],
            eg.reference.user_data.get(ANSWERS_KEY, []),
            topic_ids(eg.reference),
            k=k,
            threshold=threshold,
        )
        metrics.add(scores, question_groups(eg.reference.user_data))
    return {
        **metrics.results(),
        "k": k,
        "no_entity": no_entity,
        "questions_per_second": round(len(docs) / seconds, 1) if seconds > 0 else None,
        "batch_size": batch_size,
    }
