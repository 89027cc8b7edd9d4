"""Question answering benchmarks that are not a trained pipeline's scores.

    python benchmarks/qa_bench.py ceiling KB QUESTIONS.jsonl [...] [--output ceiling.json]
    python benchmarks/qa_bench.py scale [--entities 2000000] [--facts 20000000] [--output scale.json]
    python benchmarks/qa_bench.py demo PIPELINE QUESTIONS.jsonl [--n 5]

`ceiling`: the share of questions whose own relation path (MetaQA: from its
`qtype`; PathQuestion/WC2014: its `path`), followed from its topic entities
over the KB's facts, reaches at least one gold answer: what any model
answering from this KB can reach at best. And `hits1_ties`: the expected
Hits@1 of following that path exactly and ranking the entities it reaches
(the topic entities left out, unless `--keep-topic`: PathQuestion's paths
often lead back to the topic) in random order: they all get the same score,
so this is what a model that finds every question's path gets, where a name
stands for several entities (two films "Hamlet" are one entity here) and the
path reaches answers of both.

`scale`: `follow` (`spacy_refined.model.follow`) on a synthetic uniform KG:
the graph's build time and memory, then the milliseconds per question of two
hops from one seed entity (forward, and forward with backward), batched and
not, and of one hop over the whole graph (every entity weighted), with the
process's peak memory.

`demo`: a trained pipeline's answers to the first questions of a file, with
their explanation (resolved entities, relations per hop).
"""

import argparse
import json
import resource
import time
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch

from spacy_refined.kb.store import RefinedKB
from spacy_refined.model.follow import EntityWeights, FactGraph
from spacy_refined.util import read_jsonl

# MetaQA's question-type words -> the KB relation that links a movie to them
METAQA_RELATIONS = {
    "director": "directed_by",
    "writer": "written_by",
    "actor": "starred_actors",
    "year": "release_year",
    "language": "in_language",
    "tag": "has_tags",
    "tags": "has_tags",
    "genre": "has_genre",
    "imdbvotes": "has_imdb_votes",
    "imdbrating": "has_imdb_rating",
}


def relation_path(record: Dict[str, Any], relation_ids: List[str]) -> List[List[int]]:
    """The graph relation numbers of a question's gold path(s), one list per
    topic entity (inverse relation r: R + r)."""
    n = len(relation_ids)
    if "qtype" in record:
        words = record["qtype"].split("_to_")
        path = []
        for a, b in zip(words, words[1:]):
            if a == "movie":
                path.append(relation_ids.index(METAQA_RELATIONS[b]))
            else:
                path.append(n + relation_ids.index(METAQA_RELATIONS[a]))
        return [path] * len(record["topic_entities"])
    paths = record["path"]
    paths = paths if paths and isinstance(paths[0], list) else [paths] * len(record["topic_entities"])
    return [[relation_ids.index(r) for r in path] for path in paths]


def ceiling(kb: RefinedKB, records: Sequence[Dict[str, Any]], mask_topic: bool = True) -> Dict[str, Any]:
    """The share (percent) of questions whose gold path reaches a gold answer, and the expected Hits@1 of ranking
    what it reaches at random (`hits1_ties`; with `mask_topic` as the model's: the paths neither come back
    through the topic entities nor end on them)."""
    graph = FactGraph.from_kb(kb)
    reached_any = 0
    tie_hits = 0.0
    for record in records:
        topics = kb.find(record["topic_entities"])
        answers = set(kb.find(record["answers"]).tolist()) - {-1}
        paths = list(zip(topics.tolist(), relation_path(record, kb.relation_ids)))
        if any(topic < 0 for topic, _ in paths):
            continue
        reached = _reached(graph, paths, kb, masked=False)
        reached_any += bool(reached & answers)
        candidates = _reached(graph, paths, kb, masked=True) - set(topics.tolist()) if mask_topic else reached
        tie_hits += len(candidates & answers) / len(candidates) if candidates else 0.0
    n = max(1, len(records))
    return {
        "n": len(records),
        "ceiling": round(100.0 * reached_any / n, 1),
        "hits1_ties": round(100.0 * tie_hits / n, 1),
    }


def _reached(graph: FactGraph, paths: List[Tuple[int, List[int]]], kb: RefinedKB, masked: bool) -> Set[int]:
    """The entities reached by all of (topic, relation path); with `masked`, never through a topic after the start."""
    reached: Optional[Set[int]] = None
    topics = torch.tensor([topic for topic, _ in paths])
    for topic, path in paths:
        x = EntityWeights(torch.tensor([0]), torch.tensor([topic]), torch.tensor([1.0]), (1, len(kb)))
        for step, relation in enumerate(path):
            if step and masked:
                x = x.keep(~torch.isin(x.entities, topics))
            r = torch.zeros(1, graph.n_relations)
            r[0, relation] = 1.0
            x = graph.follow_sparse(x, r)
            x = x.keep(x.values > 0)  # the facts of other relations pass no weight
        entities = set(x.entities.tolist())
        reached = entities if reached is None else reached & entities
    return reached or set()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale(n_entities: int, n_facts: int, n_relations: int, repeats: int, seed: int = 0) -> Dict[str, Any]:
    """Timings and memory of `follow` on a synthetic uniform KG."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    result: Dict[str, Any] = {
        "entities": n_entities,
        "facts": n_facts,
        "relations": n_relations,
        "threads": torch.get_num_threads(),
    }
    before = peak_rss_mb()
    started = time.perf_counter()
    subjects = np.sort(rng.integers(0, n_entities, n_facts))
    graph = FactGraph(
        n_entities, n_relations, subjects, rng.integers(0, n_relations, n_facts), rng.integers(0, n_entities, n_facts)
    )
    del subjects
    result["build_seconds"] = round(time.perf_counter() - started, 2)
    result["graph_mb"] = round(graph.nbytes / 2**20, 1)
    result["build_peak_rss_mb"] = round(peak_rss_mb() - before, 1)

    def two_hops(batch: int, backward: bool) -> float:
        times = []
        for _ in range(repeats):
            seeds = torch.from_numpy(rng.integers(0, n_entities, batch))
            values = torch.ones(batch, requires_grad=backward)
            logits = torch.randn(batch, graph.n_relations, requires_grad=backward)
            started = time.perf_counter()
            x = EntityWeights(torch.arange(batch), seeds, values, (batch, n_entities))
            r = torch.softmax(logits, dim=1)
            for _ in range(2):
                x = graph.follow_sparse(x, r)
            if backward:
                x.values.sum().backward()
            times.append(time.perf_counter() - started)
        return round(1000 * float(np.median(times)) / batch, 3)

    for batch in (1, 32):
        result[f"two_hops_ms_per_question_batch{batch}"] = two_hops(batch, False)
        result[f"two_hops_train_ms_per_question_batch{batch}"] = two_hops(batch, True)
    started = time.perf_counter()
    x = torch.full((1, n_entities), 1.0 / n_entities)
    r = torch.softmax(torch.randn(1, graph.n_relations), dim=1)
    graph.follow(x, r)
    result["whole_graph_one_hop_ms"] = round(1000 * (time.perf_counter() - started), 1)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def demo(pipeline: str, records: Sequence[Dict[str, Any]]) -> None:
    """Print a pipeline's answers and explanations for some questions."""
    import spacy

    import spacy_refined.pipeline.qa  # noqa: F401  (registers refined_qa)

    nlp = spacy.load(pipeline)
    for record, doc in zip(records, nlp.pipe(record["question"] for record in records)):
        print(f"Q: {doc.text}   (gold: {', '.join(record.get('answers', [])[:5])})")
        print(
            f"   entities: {[(e['text'], e['kb_id'], round(e['score'], 3)) for e in doc._.qa_entities]}  status: {doc._.qa_status}"
        )
        for hop in doc._.qa_path:
            print(
                f"   hop {hop['hop']} (weight {hop['weight']:.2f}): {[(r, round(w, 2)) for r, w in hop['relations']]}"
            )
        print(f"   answers: {[(a, round(s, 3)) for a, s in doc._.answers[:5]]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ceiling_parser = commands.add_parser("ceiling", help="share of questions whose gold path reaches a gold answer")
    ceiling_parser.add_argument("kb")
    ceiling_parser.add_argument("questions", nargs="+")
    ceiling_parser.add_argument(
        "--keep-topic", action="store_true", help="hits1_ties with the topic entities ranked (mask_topic = false)"
    )
    ceiling_parser.add_argument("--output")
    scale_parser = commands.add_parser("scale", help="follow on a synthetic KG")
    scale_parser.add_argument("--entities", type=int, default=2_000_000)
    scale_parser.add_argument("--facts", type=int, default=20_000_000)
    scale_parser.add_argument("--relations", type=int, default=20)
    scale_parser.add_argument("--repeats", type=int, default=20)
    scale_parser.add_argument("--threads", type=int, default=2)
    scale_parser.add_argument("--output")
    demo_parser = commands.add_parser("demo", help="answer some questions with a trained pipeline")
    demo_parser.add_argument("pipeline")
    demo_parser.add_argument("questions")
    demo_parser.add_argument("--n", type=int, default=5)
    args = parser.parse_args()
    if args.command == "demo":
        records = [record for _, record in read_jsonl(args.questions)]
        demo(args.pipeline, records[:: max(1, len(records) // args.n)][: args.n])
        return
    if args.command == "ceiling":
        kb = RefinedKB.load(args.kb)
        records = {path: [record for _, record in read_jsonl(path)] for path in args.questions}
        result = {path: ceiling(kb, records[path], mask_topic=not args.keep_topic) for path in args.questions}
    else:
        torch.set_num_threads(args.threads)
        result = scale(args.entities, args.facts, args.relations, args.repeats)
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w", encoding="utf8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
