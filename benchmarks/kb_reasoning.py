"""KB-fact reasoning (the linker's `relations` setting): a pipeline trained
with it against one trained without, same data, seed and steps.

    python benchmarks/kb_reasoning.py WITH WITHOUT --data ../shared/data/el [--output out/kb_reasoning.json]

Measures, on the gold data of AIDA and MSNBC (EL JSONL):

* EL F1 (links on NIL spans as errors) and ED accuracy on gold spans (in-KB
  gold mentions) of both pipelines: AIDA testb and MSNBC;
* the diagnostic subset, defined from the data: AIDA testa + testb gold
  mentions whose gold entity is a candidate and has a competing candidate
  that shares its (non-empty) KB types whose description score (of the
  pipeline without the mechanism) is at least the gold entity's, and for
  which the KB has at least one fact between a candidate of the mention and
  the gold entity of another mention of the document; its size and the
  mentions both pipelines get right (gold spans), read two ways: the rival
  has the very same type set, or at least one type in common;
* the facts' headroom: the errors of the pipeline without the mechanism
  (gold spans, gold entity among the candidates) where the gold entity
  alone has a KB fact with another mention's gold entity, the most the
  KB score could fix, and how many the pipeline with it gets right;
* the relation head of WITH on testb gold spans: precision and recall, at
  the `threshold` setting, of the relations it gives the pairs of gold
  mentions against the KB facts between their gold entities (pairs with two
  in-KB gold entities), and the precision of `doc._.relations`;
* speed: docs/s of WITH on testb (mentions detected) with the mechanism on
  and turned off (`relations = null`, same weights), alternated.
"""

import argparse
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import spacy
import srsly
from spacy.language import Language
from thinc.api import NumpyOps, set_current_ops

from spacy_refined.evaluation.runner import evaluate, load_pipeline, set_gold_spans
from spacy_refined.evaluation.runner import gold_mentions as read_gold
from spacy_refined.pipeline.linker import find_linker
from spacy_refined.pipeline.relations import facts_among


def el_rows(path: Path, data: Path) -> Dict[str, Any]:
    """EL F1 and ED accuracy (gold spans) on AIDA testb and MSNBC, with docs/s."""
    out: Dict[str, Any] = {}
    for name, file in (("testb", data / "aida" / "testb.jsonl"), ("msnbc", data / "msnbc.jsonl")):
        records = list(srsly.read_jsonl(file))
        el = evaluate(path, records)
        ed = evaluate(path, records, gold_spans=True)
        out[name] = {
            "el_f1": el["el"]["nil_fp"]["micro"]["f"],
            "ed_accuracy_in_kb": ed["ed"]["accuracy_in_kb"],
            "docs_per_s": el["speed"]["docs_per_s"],
        }
    return out


def gold_outputs(nlp: Language, records: Sequence[Dict[str, Any]], batch_size: int = 32) -> List[Dict[str, Any]]:
    """The linker's output on the gold mentions of `records`: per batch, the
    `RefinedOutput` and each mention's gold entity ID."""
    linker = find_linker(nlp)
    kb = linker.require_kb()
    batches = []
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        docs, gold_ids = [], []
        for record in chunk:
            doc = nlp.make_doc(record["text"])
            mentions = read_gold(record, None, None)
            aligned = set_gold_spans(doc, mentions)
            by_span = {m.span: m.entity_id for m in mentions}
            gold_ids.append(
                {(ent.start, ent.end): by_span[aligned[(ent.start_char, ent.end_char)]] for ent in doc.ents}
            )
            docs.append(doc)
        output = linker.predict(docs)
        m = output.mentions
        ids = [gold_ids[d].get((s, e)) or "" for d, s, e in zip(m.doc.tolist(), m.start.tolist(), m.end.tolist())]
        batches.append({"output": output, "gold": kb.find(ids), "docs": docs})
    return batches


def facts_with_others(kb, output, gold: np.ndarray, m: int) -> np.ndarray:
    """Whether each candidate of mention `m` (n_candidates,) has a KB fact,
    either way, with the gold entity of another mention of its document."""
    entities = output.candidates.entities
    doc = output.mentions.doc[m]
    others = gold[(output.mentions.doc == doc) & (np.arange(len(gold)) != m) & (gold >= 0)]
    mine = entities[m]
    table = np.unique(np.concatenate([mine[mine >= 0], others]))
    facts = facts_among(kb, table, len(kb.relation_ids))
    other_rows = np.searchsorted(table, others)
    linked = np.union1d(facts[0][np.isin(facts[2], other_rows)], facts[2][np.isin(facts[0], other_rows)])
    return (mine >= 0) & np.isin(np.searchsorted(table, np.maximum(mine, 0)), linked)


def diagnostic_subset(kb, batches: List[Dict[str, Any]], same_types: bool = True) -> List[np.ndarray]:
    """Per batch, the mentions of the diagnostic subset (boolean), from the
    outputs of the pipeline without the mechanism (see the module docstring):
    the rival has the gold entity's very type set (`same_types`) or at least
    one of its types."""
    subsets = []
    for batch in batches:
        output, gold = batch["output"], batch["gold"]
        entities = output.candidates.entities
        description = np.asarray(output.description_logits)
        n, k = entities.shape
        is_gold = (entities == gold[:, None]) & (gold[:, None] >= 0)
        keep = np.zeros(n, dtype=bool)
        for m in np.flatnonzero(is_gold.any(axis=1)):
            g = int(np.argmax(is_gold[m]))
            gold_types = set(kb.types(int(entities[m, g])))
            if not gold_types:
                continue
            rivals = [
                c
                for c in range(k)
                if c != g
                and entities[m, c] >= 0
                and (
                    set(kb.types(int(entities[m, c]))) == gold_types
                    if same_types
                    else bool(gold_types & set(kb.types(int(entities[m, c]))))
                )
                and description[m, c] >= description[m, g]
            ]
            keep[m] = bool(rivals) and bool(facts_with_others(kb, output, gold, m).any())
        subsets.append(keep)
    return subsets


def fact_headroom(kb, without: List[Dict[str, Any]], with_: List[Dict[str, Any]]) -> Dict[str, int]:
    """What the KB's facts could fix at most: the in-KB gold mentions (gold
    among the candidates) that the pipeline without the mechanism gets
    wrong, those of them whose gold entity has a fact with another mention's
    gold entity, those where moreover its wrong answer has none (the facts
    favour the gold entity alone), and how many of these last the pipeline
    with the mechanism gets right."""
    counts = {"errors": 0, "gold_has_fact": 0, "only_gold_has_fact": 0, "right_with": 0}
    for batch, batch_with in zip(without, with_):
        output, gold = batch["output"], batch["gold"]
        entities, wrong = output.candidates.entities, ~correct(batch)
        right_with, answer = correct(batch_with), answers(output)
        for m in np.flatnonzero(wrong & ((entities == gold[:, None]) & (gold[:, None] >= 0)).any(axis=1)):
            counts["errors"] += 1
            has_fact = facts_with_others(kb, output, gold, m)
            if not has_fact[entities[m] == gold[m]].any():
                continue
            counts["gold_has_fact"] += 1
            if not has_fact[entities[m] == answer[m]].any():
                counts["only_gold_has_fact"] += 1
                counts["right_with"] += int(right_with[m])
    return counts


def correct(batch: Dict[str, Any]) -> np.ndarray:
    """Whether the top answer (a candidate or NIL) of each mention is its gold entity."""
    return (answers(batch["output"]) == batch["gold"]) & (batch["gold"] >= 0)


def relation_quality(nlp: Language, batches: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Precision/recall of the relation head against the KB facts between the
    gold entities of the pairs it reads (at prediction: the pairs with a fact
    between their candidates), at several thresholds, and the precision of
    `doc._.relations` (at the setting's threshold)."""
    linker = find_linker(nlp)
    kb = linker.require_kb()
    thresholds = sorted({0.1, 0.3, 0.5, linker.relations.threshold})
    tp = {t: 0 for t in thresholds}
    predicted = {t: 0 for t in thresholds}
    actual = pairs_read = doc_tp = doc_predicted = 0
    for batch in batches:
        output, gold = batch["output"], batch["gold"]
        if output.relation_logits is None:
            continue
        pairs = output.candidates.relations.pairs
        probs = 1.0 / (1.0 + np.exp(-np.asarray(output.relation_logits)))
        targets, has_target = linker.relations.targets(kb, gold, pairs, probs.shape[1] // 2)
        pairs_read += int(has_target.sum())
        actual += int(targets[has_target].sum())
        for t in thresholds:
            said = (probs >= t) & has_target[:, None]
            tp[t] += int((said & (targets > 0)).sum())
            predicted[t] += int(said.sum())
        subject, relation, obj, _ = linker.relations.confirmed(kb, answers(output), pairs, probs)
        facts = set(zip(*[a.tolist() for a in kb.facts_about(np.unique(gold[gold >= 0]))]))
        doc_predicted += len(subject)
        doc_tp += sum(
            (int(gold[s]), int(r), int(gold[o])) in facts
            for s, r, o in zip(subject.tolist(), relation.tolist(), obj.tolist())
        )
    return {
        "pairs_with_two_gold_entities": pairs_read,
        "gold_facts": actual,
        "by_threshold": {
            str(t): {
                "predicted": predicted[t],
                "precision": tp[t] / predicted[t] if predicted[t] else None,
                "recall": tp[t] / actual if actual else None,
            }
            for t in thresholds
        },
        "doc_relations": doc_predicted,
        "doc_relations_precision": doc_tp / doc_predicted if doc_predicted else None,
    }


def answers(output) -> np.ndarray:
    """Each mention's top answer (KB index, -1: NIL)."""
    entities = output.candidates.entities
    best = np.asarray(output.link_logits).argmax(axis=1)
    k = entities.shape[1]
    return np.where(best < k, entities[np.arange(len(best)), np.minimum(best, k - 1)], -1)


def speed(path: Path, records: Sequence[Dict[str, Any]], rounds: int) -> Dict[str, float]:
    """docs/s of the pipeline with the mechanism on and off (same weights), alternated; best of `rounds`."""
    pipelines = {
        "on": spacy.load(path),
        "off": spacy.load(path, config={"components.refined_linker.relations": None}),
    }
    texts = [record["text"] for record in records]
    best = {name: 0.0 for name in pipelines}
    for nlp in pipelines.values():
        list(nlp.pipe(texts[:32], batch_size=32))
    for _ in range(rounds):
        for name, nlp in pipelines.items():
            started = time.perf_counter()
            list(nlp.pipe(texts, batch_size=32))
            best[name] = max(best[name], len(texts) / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("with_pipeline", type=Path)
    parser.add_argument("without_pipeline", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/el"))
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--skip-el", action="store_true", help="Leave out the EL/ED evaluations")
    parser.add_argument("--limit", type=int, default=0, help="Only the first N documents of testa/testb (0: all)")
    args = parser.parse_args()
    set_current_ops(NumpyOps(use_blis=False))
    report: Dict[str, Any] = {}
    paths = {"with": args.with_pipeline, "without": args.without_pipeline}
    if not args.skip_el:
        report["el"] = {name: el_rows(path, args.data) for name, path in paths.items()}
        print(report["el"], flush=True)
    records = {
        split: list(srsly.read_jsonl(args.data / "aida" / f"{split}.jsonl"))[: args.limit or None]
        for split in ("testa", "testb")
    }
    nlps = {name: load_pipeline(path, gold_spans=True) for name, path in paths.items()}
    outputs = {
        name: {split: gold_outputs(nlp, split_records) for split, split_records in records.items()}
        for name, nlp in nlps.items()
    }
    kb = find_linker(nlps["without"]).require_kb()
    report["diagnostic"] = {}
    for types in ("same", "shared"):
        for split in records:
            subsets = diagnostic_subset(kb, outputs["without"][split], same_types=types == "same")
            size = int(sum(s.sum() for s in subsets))
            row: Dict[str, Any] = {"size": size}
            for name in paths:
                row[f"right_{name}"] = sum(int(correct(b)[s].sum()) for b, s in zip(outputs[name][split], subsets))
            report["diagnostic"][f"{split}_{types}_types"] = row
    report["fact_headroom"] = {
        split: fact_headroom(kb, outputs["without"][split], outputs["with"][split]) for split in records
    }
    print(report["fact_headroom"], flush=True)
    print(report["diagnostic"], flush=True)
    report["relations"] = relation_quality(nlps["with"], outputs["with"]["testb"])
    print(report["relations"], flush=True)
    report["speed_testb_docs_per_s"] = speed(args.with_pipeline, records["testb"], args.speed_rounds)
    print(report["speed_testb_docs_per_s"], flush=True)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(args.output, report)


if __name__ == "__main__":
    main()
