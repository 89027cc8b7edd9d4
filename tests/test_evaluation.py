"""The evaluation: metrics on hand-made documents with known values, the NIF
and AIDA readers on small real-format fixtures, and the evaluate command."""

import json
from datetime import date
from pathlib import Path

import pytest
import spacy
import srsly
from conftest import add_linker
from spacy.training import Example
from thinc.api import get_current_ops

from spacy_refined.evaluation import DocumentResult, FormatError, Mention, read_documents, read_nif, score
from spacy_refined.ids import NIL, UNKNOWN, entity_status
from spacy_refined.kb import RefinedKB
from spacy_refined.labels import DEFAULT_LABEL, DEFAULT_TYPE_LABELS, CoarseLabels
from spacy_refined.training import docs_from_jsonl

DATA = Path(__file__).parent / "data"
SHARED_TESTB = Path(__file__).parents[2] / "shared" / "data" / "el" / "aida" / "testb.jsonl"


def m(start: int, end: int, entity_id: str, type_: str = "ENT") -> Mention:
    return Mention(start, end, entity_id, type_)


@pytest.fixture(scope="module")
def documents():
    """A: 1 right link, 1 wrong, 1 on a NIL span, 1 on an unknown-ID span, 1 spurious,
    a gold link out of the KB predicted NIL; B: empty; C: a missed link."""
    a = DocumentResult(
        "A",
        gold=[
            m(0, 5, "Q1", "PER"),
            m(10, 15, "Q2", "ORG"),
            m(20, 25, NIL, "NIL"),
            m(30, 35, UNKNOWN),
            m(40, 45, "Q3", "PER"),
        ],
        predicted=[
            m(0, 5, "Q1"),
            m(10, 15, "Q9"),
            m(20, 25, "Q4"),
            m(30, 35, "Q5"),
            m(50, 55, "Q6", "LOC"),
            m(40, 45, NIL),
        ],
        n_tokens=12,
        in_kb=[True, True, False, False, False],
        candidate_ranks=[0, 3, -1, -1, -1],
    )
    b = DocumentResult("B", gold=[], predicted=[], in_kb=[], candidate_ranks=[])
    c = DocumentResult("C", gold=[m(0, 3, "Q7", "ORG")], predicted=[], in_kb=[True], candidate_ranks=[12])
    return [a, b, c]


def test_entity_status():
    assert entity_status("<NIL>") == entity_status("NIL") == NIL
    assert entity_status(None) == entity_status("") == entity_status("<NO_MAPPING>") == UNKNOWN
    assert entity_status("Q42") == "Q42"


def test_coarse_labels_for_ids(kb_path):
    kb = RefinedKB.load(kb_path)
    coarse = CoarseLabels(kb.type_ids, DEFAULT_TYPE_LABELS, DEFAULT_LABEL)
    ids = ["Q90", "Q41421", "Q128109", "Q404", NIL, UNKNOWN]
    assert coarse.for_ids(kb, ids) == ["GPE", "PERSON", "ORG", DEFAULT_LABEL, DEFAULT_LABEL, DEFAULT_LABEL]
    assert coarse.for_ids(kb, ids, unknown="?")[2:] == ["ORG", "?", "?", "?"]
    assert coarse.for_ids(kb, []) == []


def test_el_micro_macro_both_nil_variants(documents):
    result = score(documents)
    strict, lenient = result["el"]["nil_fp"], result["el"]["nil_ignored"]
    # A: links Q1 Q2 Q3 gold; predicted links on (0,5) (10,15) (20,25 NIL) (50,55); (30,35) has an unknown ID
    assert {k: strict["micro"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 3, "fn": 3}
    assert {k: lenient["micro"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 2, "fn": 3}
    assert strict["micro"]["p"] == pytest.approx(0.25) and strict["micro"]["r"] == pytest.approx(0.25)
    assert lenient["micro"]["p"] == pytest.approx(1 / 3) and lenient["micro"]["f"] == pytest.approx(
        2 * (1 / 3) * 0.25 / (1 / 3 + 0.25)
    )
    # GERBIL macro: A (P 1/4, R 1/3), B perfect (nothing to find, nothing found), C 0
    f_a = 2 * 0.25 * (1 / 3) / (0.25 + 1 / 3)
    assert strict["macro"]["p"] == pytest.approx((0.25 + 1) / 3)
    assert strict["macro"]["r"] == pytest.approx((1 / 3 + 1) / 3)
    assert strict["macro"]["f"] == pytest.approx((f_a + 1) / 3)
    assert result["per_document"][0]["el"]["fp"] == 3 and result["per_document"][0]["el_nil_ignored"]["fp"] == 2


def test_md_ed_recall_and_gold_counts(documents):
    result = score(documents)
    md = result["md"]["micro"]
    assert (md["tp"], md["fp"], md["fn"]) == (5, 1, 1)
    assert result["gold"] == {"mentions": 6, "linked": 4, "nil": 1, "unknown_id": 1, "in_kb": 3, "not_in_kb": 1}
    ed = result["ed"]
    assert (ed["correct"], ed["in_kb"], ed["detected"]) == (1, 3, 2)
    assert ed["accuracy_in_kb"] == pytest.approx(1 / 3)
    assert ed["accuracy_detected"] == pytest.approx(1 / 2)
    assert ed["accuracy_all_linked"] == pytest.approx(1 / 4)
    # over the in-KB gold links: ranks 0, 3 and 12
    assert ed["recall_at_k"] == pytest.approx({"1": 1 / 3, "5": 2 / 3, "10": 2 / 3, "30": 1.0})


def test_per_type(documents):
    per_type = score(documents)["per_type"]
    assert {k: per_type["PER"]["el"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 0, "fn": 1}
    assert {k: per_type["ORG"]["el"][k] for k in ("tp", "fp", "fn")} == {"tp": 0, "fp": 1, "fn": 2}
    assert per_type["NIL"]["el"]["fp"] == 1 and per_type["LOC"]["el"]["fp"] == 1
    assert per_type["PER"]["ed_accuracy"] == 1.0 and per_type["ORG"]["ed_accuracy"] == 0.0


def test_forced_accuracy_takes_the_best_candidate_where_nil_won():
    gold = [m(0, 2, "Q8"), m(3, 5, "Q9"), m(6, 8, "Q10")]
    predicted = [Mention(0, 2, NIL, best="Q8"), Mention(3, 5, NIL, best="Q1"), m(6, 8, "Q10")]
    ed = score([DocumentResult("D", gold, predicted, in_kb=[True] * 3)])["ed"]
    assert ed["accuracy_in_kb"] == pytest.approx(1 / 3) and ed["accuracy_in_kb_forced"] == pytest.approx(2 / 3)


def test_accuracy_for_entities_seen_and_not_seen_in_training(documents):
    # in-KB gold links: Q1 (right) and Q2 (wrong) in A, Q7 (missed) in C; Q1 and Q7 were in the training data
    by_training = score(documents, training_entities={"Q1", "Q7", "Q99"})["ed"]["by_training"]
    assert by_training["seen"] == {"in_kb": 2, "accuracy_in_kb": 0.5, "accuracy_in_kb_forced": 0.5}
    assert by_training["unseen"] == {"in_kb": 1, "accuracy_in_kb": 0.0, "accuracy_in_kb_forced": 0.0}
    assert score(documents)["ed"]["by_training"] is None


def test_without_kb_every_linked_mention_counts():
    doc = DocumentResult("X", gold=[m(0, 1, "Q1"), m(2, 3, "Q2")], predicted=[m(0, 1, "Q1")])
    result = score([doc])
    assert result["gold"]["in_kb"] is None and result["ed"]["recall_at_k"] is None
    assert result["ed"]["accuracy_in_kb"] == 0.5


# ---------------------------------------------------------------- formats


def test_nif_reader():
    records = read_documents(DATA / "gerbil_sample.ttl", id_map={"Angela_Merkel": "Q567", "France": "Q142"})
    assert [r["id"] for r in records] == [
        "http://www.aksw.org/gerbil/test/doc1",
        "http://www.aksw.org/gerbil/test/doc2",
    ]
    doc1, doc2 = records
    assert doc1["text"] == 'Angela Merkel met "Zizou" in Zürich with Ann Smith.'
    assert [doc1["text"][s:e] for s, e in (label["span"] for label in doc1["labels"])] == [
        "Angela Merkel",
        "Zizou",
        "Zürich",
        "Ann Smith",
    ]
    assert [label["entity_id"] for label in doc1["labels"]] == ["Q567", "Q1835", None, "<NIL>"]
    assert doc1["labels"][2]["wikipedia_title"] == "Zürich"
    assert doc2["text"] == "Paris is in France.\n"
    assert [(label["span"], label["entity_id"]) for label in doc2["labels"]] == [([0, 5], "<NIL>"), ([12, 18], "Q142")]


def test_nif_errors():
    with pytest.raises(FormatError, match="undeclared prefix"):
        read_nif('<http://x/d#char=0,1> nif:isString "a" .')
    with pytest.raises(FormatError, match="line 2"):
        read_nif('@prefix nif: <http://x#> .\n<http://x/d> nif:isString "unterminated .\n')


def test_aida_reader():
    records = read_documents(DATA / "aida_sample.tsv", id_map={"Germany": "Q183", "London": "Q84"})
    assert [(r["id"], r["split"]) for r in records] == [("aida-947", "testa"), ("aida-948", "testa")]
    first, second = records
    assert first["text"] == "CRICKET - LEICESTERSHIRE TAKE OVER LONDON 1996-08-30 Phil Simmons took four for 38 ."
    spans = [first["text"][s:e] for s, e in (label["span"] for label in first["labels"])]
    assert spans == ["-", "LEICESTERSHIRE", "LONDON", "Phil Simmons"]
    assert [label["entity_id"] for label in first["labels"]] == ["<NIL>", None, "Q84", None]
    assert first["labels"][3]["wikipedia_title"] == "Phil_Simmons"
    # two adjacent B mentions stay separate; YAGO2 \u escapes are decoded
    assert [label["span"] for label in second["labels"]] == [[0, 13], [18, 25], [26, 33]]
    assert second["labels"][0]["wikipedia_title"] == "José_Mourinho"
    titles = read_documents(DATA / "aida_sample.tsv")
    assert titles[1]["labels"][1]["entity_id"] == "Germany"


# ------------------------------------------------------ pipeline and CLI


@pytest.fixture(scope="module")
def pipeline_path(tmp_path_factory, kb_path, records):
    """An initialized (untrained) refined_linker pipeline over the tiny KB, saved."""
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    add_linker(nlp, kb_path)
    golds = list(docs_from_jsonl(nlp, records))
    nlp.initialize(lambda: [Example(nlp.make_doc(d.text), d) for d in golds])
    path = tmp_path_factory.mktemp("pipeline") / "nlp"
    nlp.to_disk(path)
    return path


def test_evaluate_command_gold_spans(pipeline_path, records, tmp_path, run_cli):
    docs = tmp_path / "docs.jsonl"
    srsly.write_jsonl(docs, records)
    output = tmp_path / "metrics.json"
    code, out, err = run_cli("evaluate", pipeline_path, docs, "--gold-spans", "--output", output)
    assert code == 0, err
    assert "ED accuracy" in out and "docs/s" in out
    metrics = json.loads(output.read_text())
    # 14 gold mentions: 10 linked (all in the KB), 2 NIL (Knicks, Abdullah), 2 unknown (the DATEs)
    assert metrics["gold"] == {"mentions": 14, "linked": 10, "nil": 2, "unknown_id": 2, "in_kb": 10, "not_in_kb": 0}
    # the gold spans are linked as given: mention detection is perfect, ED covers every in-KB mention
    assert metrics["md"]["micro"]["p"] == metrics["md"]["micro"]["r"] == 1.0
    assert metrics["ed"]["accuracy_in_kb"] == metrics["ed"]["accuracy_detected"]
    # candidates by prior: "Jordan" (the player) and "Washington" (the city) are second to their namesakes
    assert metrics["ed"]["recall_at_k"]["1"] == pytest.approx(0.8) and metrics["ed"]["recall_at_k"]["5"] == 1.0
    assert len(metrics["per_document"]) == 6 and metrics["per_document"][4]["md"]["tp"] == 0
    speed = metrics["speed"]
    assert (
        speed["documents"] == 6
        and speed["docs_per_s"] > 0
        and speed["warm_up_seconds"] > 0
        and speed["peak_memory_mb"] > 0
    )
    # six short documents take milliseconds: timed again, the median pass reported
    assert 1 < speed["timed_passes"] <= 10
    assert set(metrics["per_type"]) <= {"PERSON", "GPE", "LOC", "ORG", "MISC", "DATE"}
    # where and when it ran, for the benchmark table (the GPU, when spaCy runs on one)
    ops = get_current_ops()
    on_gpu = ops.device_type == "gpu"
    assert metrics["settings"]["gpu_id"] == (ops.device_id if on_gpu else -1)
    assert metrics["machine"].endswith("CPU only") is not on_gpu and metrics["date"] == date.today().isoformat()


def test_evaluate_command_matrix_products_change_speed_only(pipeline_path, records, tmp_path, run_cli):
    docs = tmp_path / "docs.jsonl"
    srsly.write_jsonl(docs, records)
    ops = get_current_ops()
    on_cpu = ops.device_type == "cpu"
    metrics = {}
    for gemm in ("numpy", "blis"):
        output = tmp_path / f"{gemm}.json"
        code, out, err = run_cli("evaluate", pipeline_path, docs, "--gemm", gemm, "--output", output)
        assert code == 0, err
        metrics[gemm] = json.loads(output.read_text())
        # recorded and printed (on CPU; a GPU has its own)
        assert metrics[gemm]["settings"]["gemm"] == (gemm if on_cpu else None)
        assert (f"{gemm} matrix products" in out) is on_cpu
        # the command leaves the process's ops as it found them
        assert get_current_ops() is ops
    for part in ("el", "ed", "md"):
        assert metrics["numpy"][part] == metrics["blis"][part]
    code, _, err = run_cli("evaluate", pipeline_path, docs, "--gemm", "mkl")
    assert code == 1 and "--gemm: 'mkl': choose one of numpy, blis" in err


def test_evaluate_command_splits_accuracy_by_training_entities(pipeline_path, records, tmp_path, run_cli):
    docs, train = tmp_path / "docs.jsonl", tmp_path / "train.jsonl"
    srsly.write_jsonl(docs, records)
    srsly.write_jsonl(train, records[:2])
    output = tmp_path / "metrics.json"
    code, out, err = run_cli("evaluate", pipeline_path, docs, "--gold-spans", "--train-docs", train, "--output", output)
    assert code == 0, err
    metrics = json.loads(output.read_text())
    seen = {label["entity_id"] for record in records[:2] for label in record["labels"]} - {"<NIL>", None}
    in_kb = [
        label["entity_id"]
        for record in records
        for label in record["labels"]
        if str(label["entity_id"]).startswith("Q")
    ]
    by_training = metrics["ed"]["by_training"]
    assert by_training["seen"]["in_kb"] == sum(entity in seen for entity in in_kb) > 0
    assert by_training["unseen"]["in_kb"] == sum(entity not in seen for entity in in_kb) > 0
    correct = sum(c["accuracy_in_kb_forced"] * c["in_kb"] for c in by_training.values())
    assert correct == pytest.approx(metrics["ed"]["accuracy_in_kb_forced"] * metrics["ed"]["in_kb"])
    assert metrics["settings"]["train_docs"] == str(train) and "ED accuracy by training data" in out


def test_evaluate_command_nil_bias(pipeline_path, records, tmp_path, run_cli):
    docs = tmp_path / "docs.jsonl"
    srsly.write_jsonl(docs, records)
    output = tmp_path / "metrics.json"
    code, _, err = run_cli("evaluate", pipeline_path, docs, "--gold-spans", "--nil-bias", "30", "--output", output)
    assert code == 0, err
    metrics = json.loads(output.read_text())
    # NIL wins everywhere: nothing is linked, but the candidates keep their ranking
    assert metrics["settings"]["nil_bias"] == 30.0
    assert metrics["el"]["nil_fp"]["micro"]["tp"] == 0 and metrics["ed"]["accuracy_in_kb"] == 0.0
    assert metrics["ed"]["accuracy_in_kb_forced"] > 0.5


@pytest.mark.parametrize("command", [["evaluate"], ["calibrate", "-o", "{tmp}/calibrated"]])
def test_truncated_documents_fail_with_the_line(command, pipeline_path, tmp_path, run_cli):
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "Paris", "labels": []}\n{"text": "Lond', encoding="utf8")
    code, _, err = run_cli(command[0], pipeline_path, docs, *[arg.format(tmp=tmp_path) for arg in command[1:]])
    assert code == 1 and "docs.jsonl (line 2): not valid JSON" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "calibrated").exists()


def test_evaluate_command_detect_and_nif(pipeline_path, run_cli, tmp_path):
    output = tmp_path / "metrics.json"
    code, out, err = run_cli("evaluate", pipeline_path, DATA / "gerbil_sample.ttl", "--output", output)
    assert code == 0, err
    metrics = json.loads(output.read_text())
    assert (
        metrics["gold"]["mentions"] == 6 and metrics["gold"]["nil"] == 2 and metrics["settings"]["gold_spans"] is False
    )
    # the Wikipedia titles and the Wikidata ID of the fixture are not in the tiny KB
    assert metrics["gold"]["not_in_kb"] == 4 and metrics["ed"]["accuracy_in_kb"] == 0.0


def test_convert_docs_command(run_cli, tmp_path):
    output = tmp_path / "aida.jsonl"
    code, out, err = run_cli("convert-docs", DATA / "aida_sample.tsv", output, "--split", "testa")
    assert code == 0, err
    assert "2 documents" in out
    assert [r["id"] for r in srsly.read_jsonl(output)] == ["aida-947", "aida-948"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("-DOCSTART- (1 X)\nEU\tX\tEU\n", encoding="utf8")
    code, out, err = run_cli("convert-docs", bad, tmp_path / "x.jsonl")
    assert code == 1 and "line 2" in err


@pytest.mark.skipif(not SHARED_TESTB.exists(), reason="the shared AIDA data is absent")
def test_aida_testb_gold_counts():
    records = read_documents(SHARED_TESTB)
    result = score(
        DocumentResult(
            r["id"], [Mention(*label["span"], entity_status(label["entity_id"])) for label in r["labels"]], []
        )
        for r in records
    )
    assert result["gold"]["mentions"] == 5616 and result["gold"]["nil"] == 1131 and result["gold"]["linked"] == 4484
    assert result["el"]["nil_fp"]["micro"]["fn"] == 4484
