"""The `refined_qa` component: KB from triples, training from answers alone,
prediction, serialization, bad input and a KB grown after training."""

import functools
import json
import random
import shutil
from pathlib import Path
from typing import Any, Dict, List

import pytest
import spacy
from conftest import add_transformer
from spacy.util import fix_random_seed

import spacy_refined.pipeline.qa  # noqa: F401  (registers refined_qa)
from spacy_refined.evaluation.qa import QAMetrics, question_scores
from spacy_refined.kb.builder import KBBuilder, append_segment
from spacy_refined.kb.errors import KBError
from spacy_refined.kb.triples import add_triples, read_triples
from spacy_refined.model.relation_names import RelationNames
from spacy_refined.training.qa_corpus import QACorpus, question_example
from spacy_refined.util import DumpError

TRIPLES = """\
Titanic\tdirected_by\tJames Cameron
Avatar\tdirected_by\tJames Cameron
Inception\tdirected_by\tChristopher Nolan
Memento\tdirected_by\tChristopher Nolan
Titanic\tstarred_actors\tKate Winslet
Titanic\tstarred_actors\tLeonardo DiCaprio
Inception\tstarred_actors\tLeonardo DiCaprio
Memento\tstarred_actors\tGuy Pearce
Avatar\tstarred_actors\tSam Worthington
Titanic\trelease_year\t1997
Avatar\trelease_year\t2009
Inception\trelease_year\t2010
Memento\trelease_year\t2000
Christopher Nolan\tborn_in\tLondon
James Cameron\tborn_in\tKapuskasing
"""

QUESTIONS: List[Dict[str, Any]] = [
    {"question": "who directed Titanic", "answers": ["James Cameron"], "topic_entities": ["Titanic"]},
    {"question": "who directed Inception", "answers": ["Christopher Nolan"], "topic_entities": ["Inception"]},
    {"question": "who directed Avatar", "answers": ["James Cameron"], "topic_entities": ["Avatar"]},
    {
        "question": "which films did James Cameron direct",
        "answers": ["Titanic", "Avatar"],
        "topic_entities": ["James Cameron"],
    },
    {
        "question": "which films did Christopher Nolan direct",
        "answers": ["Inception", "Memento"],
        "topic_entities": ["Christopher Nolan"],
    },
    {"question": "when was Memento released", "answers": ["2000"], "topic_entities": ["Memento"]},
    {"question": "when was Titanic released", "answers": ["1997"], "topic_entities": ["Titanic"]},
    {
        "question": "who starred in Titanic",
        "answers": ["Kate Winslet", "Leonardo DiCaprio"],
        "topic_entities": ["Titanic"],
    },
    {"question": "where was the director of Memento born", "answers": ["London"], "topic_entities": ["Memento"]},
    {"question": "where was the director of Avatar born", "answers": ["Kapuskasing"], "topic_entities": ["Avatar"]},
]

CONFIG = {
    "model": {
        "hidden_width": 32,
        "hops": 2,
        "max_span_width": 4,
        "tok2vec": {"width": 32, "depth": 1, "embed_size": 500},
    }
}


@pytest.fixture(scope="module")
def qa_kb_path(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("qa")
    triples = directory / "kb.tsv"
    triples.write_text(TRIPLES, encoding="utf8")
    with KBBuilder(directory / "kb", progress=False) as builder:
        add_triples(builder, triples)
    return directory / "kb"


def add_qa(nlp, kb_path: Path, config: Dict[str, Any] = None, name: str = "refined_qa"):
    """Add a `refined_kb` component (initialized from `kb_path`) and a `refined_qa` listening to it."""
    nlp.add_pipe("refined_kb")
    nlp.config["initialize"]["components"]["refined_kb"] = {
        "kb_loader": {"@misc": "spacy_refined.KBFromPath.v1", "path": str(kb_path)}
    }
    return nlp.add_pipe("refined_qa", name=name, config={**CONFIG, **(config or {})})


def train(kb_path: Path, config: Dict[str, Any] = None, steps: int = 60, questions: List[Dict[str, Any]] = QUESTIONS):
    nlp = spacy.blank("en")
    add_qa(nlp, kb_path, config)
    examples = [question_example(nlp, record) for record in questions]
    random.seed(0)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    for _ in range(steps):
        random.shuffle(examples)
        nlp.update(examples, sgd=optimizer, drop=0.0)
    return nlp


@pytest.fixture(scope="module")
def trained(qa_kb_path):
    return train(qa_kb_path)


def top_answer(doc) -> str:
    return doc._.answers[0][0] if doc._.answers else ""


# ------------------------------------------------------------------- triples


def test_read_triples(tmp_path):
    path = tmp_path / "kb.tsv"
    path.write_text("Lionel_Messi\tplays_for\tFC_Barcelona\nLionel_Messi\tplays_for\tFC_Barcelona\n", encoding="utf8")
    entities, relations = read_triples(path)
    by_id = {e["id"]: e for e in entities}
    assert by_id["Lionel_Messi"]["aliases"] == ["Lionel Messi"]
    assert by_id["Lionel_Messi"]["facts"] == [["plays_for", "FC_Barcelona"]]  # duplicates dropped
    assert by_id["FC_Barcelona"]["facts"] == []
    assert relations == {"plays_for": "plays for"}


def test_malformed_triples_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("a\tr\tb\n\nc\tr\n", encoding="utf8")
    with pytest.raises(DumpError, match=r"bad\.tsv \(line 3\)"):
        read_triples(path)
    with pytest.raises(DumpError, match="no such file"):
        read_triples(tmp_path / "missing.tsv")


# ------------------------------------------------------------------- reader


def test_reader_places_topic_entities(tmp_path):
    nlp = spacy.blank("en")
    record = {
        "question": "which Australia footballer plays for Newcastle_Jets ?",
        "question_marked": "which [Australia] footballer plays for [Newcastle_Jets] ?",
        "topic_entities": ["Newcastle_Jets", "Australia"],
        "answers": ["Adam"],
        "id": "q1",
    }
    eg = question_example(nlp, record)
    assert [(s.text, s.kb_id_) for s in eg.predicted.spans["topic_entities"]] == [
        ("Australia", "Australia"),
        ("Newcastle_Jets", "Newcastle_Jets"),
    ]
    assert eg.reference.user_data["qa_answers"] == ["Adam"] and eg.predicted.user_data["id"] == "q1"
    unmarked = question_example(nlp, {"question": "who directed titanic", "answers": [], "topic_entities": ["Titanic"]})
    assert [s.text for s in unmarked.predicted.spans["topic_entities"]] == ["titanic"]
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps({"answers": []}) + "\n", encoding="utf8")
    with pytest.raises(DumpError, match="line 2"):
        list(QACorpus(path)(nlp))


def test_reader_shuffled_sample_is_seeded_and_covers_the_file(tmp_path):
    nlp = spacy.blank("en")
    path = tmp_path / "sorted.jsonl"
    records = [{"question": f"q {i}", "answers": [], "qtype": "a" if i < 50 else "b"} for i in range(100)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf8")
    first = [eg.predicted.text for eg in QACorpus(path, limit=20)(nlp)]
    assert first == [f"q {i}" for i in range(20)]
    sample = [eg.predicted for eg in QACorpus(path, limit=20, shuffle=True, seed=1)(nlp)]
    assert [doc.text for doc in sample] == [
        eg.predicted.text for eg in QACorpus(path, limit=20, shuffle=True, seed=1)(nlp)
    ]
    assert {doc.user_data["qtype"] for doc in sample} == {"a", "b"}
    other = [eg.predicted.text for eg in QACorpus(path, limit=20, shuffle=True, seed=2)(nlp)]
    assert other != [doc.text for doc in sample]


# ------------------------------------------------------------------- model


def test_overfits_a_handful_of_questions_with_learned_entities(trained):
    for record in QUESTIONS:
        doc = trained(record["question"])
        assert top_answer(doc) in record["answers"], (record, doc._.answers, doc._.qa_entities, doc._.qa_path)
        assert doc._.qa_entities[0]["kb_id"] == record["topic_entities"][0]
        assert doc._.qa_status == "answered"
    doc = trained("which films did James Cameron direct")
    assert {entity for entity, score in doc._.answers if score >= 0.5} == {"Titanic", "Avatar"}
    group = doc.spans["qa_entities"]
    assert group[0].text == "James Cameron" and group[0].kb_id_ == "James Cameron"
    assert doc._.qa_path and doc._.qa_path[0]["relations"][0][0] == "directed_by^-1"


def test_pipe_equals_call(trained):
    texts = [record["question"] for record in QUESTIONS] + ["", "what is this"]
    piped = list(trained.pipe(texts, batch_size=3))
    for text, doc in zip(texts, piped):
        single = trained(text)
        assert [a for a, _ in single._.answers] == [a for a, _ in doc._.answers]
        assert [s for _, s in single._.answers] == pytest.approx([s for _, s in doc._.answers], abs=1e-5)


def test_save_load_round_trip(trained, tmp_path):
    trained.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    for record in QUESTIONS:
        assert trained(record["question"])._.answers == loaded(record["question"])._.answers
    restored = spacy.blank("en")
    add_qa(restored, tmp_path / "missing-kb-unused")
    restored.from_bytes(trained.to_bytes())
    assert restored("who directed Titanic")._.answers == trained("who directed Titanic")._.answers


def test_empty_question_and_question_without_entities(trained):
    empty = trained("")
    assert empty._.answers == [] and empty._.qa_entities == [] and empty._.qa_status == "empty"
    none = trained("what is the meaning of all this ?")
    assert none._.answers == [] and none._.qa_entities == [] and none._.qa_path == []
    assert none._.qa_status == "no_entity"


def test_gold_entities_mode(qa_kb_path):
    nlp = train(qa_kb_path, {"entities": "gold"}, steps=40)
    eg = question_example(nlp, QUESTIONS[0])
    doc = nlp(eg.predicted)
    assert top_answer(doc) == "James Cameron"
    assert nlp("who directed Titanic")._.qa_status == "no_entity"  # no annotated topic entity


def test_linker_entities_mode(trained, qa_kb_path):
    nlp = spacy.blank("en")
    add_qa(nlp, qa_kb_path, {"entities": "linker"})
    nlp.initialize(lambda: [question_example(nlp, QUESTIONS[0])])
    doc = nlp.make_doc("who directed Titanic")
    doc.ents = [doc.char_span(13, 20, label="ENTITY", kb_id="Titanic")]
    assert nlp(doc)._.qa_entities[0]["kb_id"] == "Titanic"


def test_intersection_setting(qa_kb_path):
    nlp = spacy.blank("en")
    qa = add_qa(nlp, qa_kb_path, {"model": {**CONFIG["model"], "intersection": False}})
    nlp.initialize(lambda: [question_example(nlp, QUESTIONS[0])])
    assert (
        nlp("which films with Leonardo DiCaprio did Christopher Nolan direct")
        .spans["qa_entities"]
        .attrs["intersection"]
        == 0.0
    )
    assert qa.model.get_ref("heads").attrs["intersection"] is False


def test_kb_without_facts_is_refused_at_initialize(kb_path):
    nlp = spacy.blank("en")
    add_qa(nlp, kb_path)
    with pytest.raises(KBError, match="has no facts"):
        nlp.initialize(lambda: [question_example(nlp, QUESTIONS[0])])


def test_kb_grown_with_kb_add_answers_about_new_entities(qa_kb_path, tmp_path):
    kb_copy = tmp_path / "kb"
    shutil.copytree(qa_kb_path, kb_copy)
    nlp = train(kb_copy)
    assert "Oppenheimer" not in nlp.get_pipe("refined_kb").kb
    append_segment(
        kb_copy, [{"id": "Oppenheimer", "label": "Oppenheimer", "facts": [["directed_by", "Christopher Nolan"]]}]
    )
    nlp.get_pipe("refined_kb").kb.reload()
    doc = nlp("who directed Oppenheimer")
    assert doc._.qa_entities[0]["kb_id"] == "Oppenheimer"
    assert top_answer(doc) == "Christopher Nolan"
    assert "Oppenheimer" in {a for a, _ in nlp("which films did Christopher Nolan direct")._.answers}


# ------------------------------------------------------------------- metrics


def test_question_scores():
    scores = question_scores([("a", 0.9), ("b", 0.6), ("c", 0.1)], [{"kb_id": "t"}], ["b", "c"], ["t"], k=2)
    assert scores == {"hits1": 0.0, "hits_k": 1.0, "f1": pytest.approx(0.5), "er_acc": 1.0}
    assert question_scores([], [], ["x"], [])["hits1"] == 0.0
    metrics = QAMetrics()
    metrics.add(scores, ["hops=1"])
    metrics.add(question_scores([("b", 0.9)], [], ["b"], []), ["hops=2"])
    results = metrics.results()
    assert results["hits1"] == 50.0 and results["er_acc"] == 100.0 and results["groups"]["hops=2"]["n"] == 1


def test_evaluate_qa_command(trained, tmp_path, run_cli):
    trained.to_disk(tmp_path / "pipeline")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({**q, "qtype": "x"}) + "\n" for q in QUESTIONS), encoding="utf8")
    code, out, err = run_cli("evaluate-qa", tmp_path / "pipeline", questions, "--output", tmp_path / "metrics.json")
    assert code == 0, err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (
        metrics["hits1"] == 100.0 and metrics["er_acc"] == 100.0 and metrics["groups"]["qtype=x"]["n"] == len(QUESTIONS)
    )
    assert metrics["questions_per_second"] > 0


def test_kb_build_triples_command(tmp_path, run_cli):
    good = tmp_path / "kb.tsv"
    good.write_text(TRIPLES, encoding="utf8")
    code, out, err = run_cli("kb", "build", "--triples", good, "-o", tmp_path / "kb", "--no-progress")
    assert code == 0, err
    assert "15 facts" in out
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tr\tb\nc\tr\n", encoding="utf8")
    code, out, err = run_cli("kb", "build", "--triples", bad, "-o", tmp_path / "bad-kb", "--no-progress")
    assert code == 1 and "bad.tsv (line 2)" in err
    assert not (tmp_path / "bad-kb").exists()


# ------------------------------------------------------------ relation names


def test_relation_names_match_tokens_to_relation_labels():
    nlp = spacy.blank("en")
    labels = ["  music  release track  recording", "  music  recording  tracks", "directed by", "place of birth"]
    names = RelationNames(labels, frozenset(nlp.Defaults.stop_words))
    assert names.words("appears_in_topic_gallery") == {"appear", "topic", "gallery"}
    docs = [nlp("what is the recording of Smetana 's tracks ?"), nlp(""), nlp("who directed it")]
    found = names(docs)
    entries = {
        (int(d), docs[d][int(p)].text, int(r)): tuple(v)
        for d, p, r, v in zip(found.doc, found.position, found.relation, found.values.tolist())
    }
    # "recording" is the last segment of relation 0 and a word of relation 1
    assert entries[(0, "recording", 0)] == (1.0, 1.0)
    assert entries[(0, "recording", 1)] == (1.0, 0.0)
    assert entries[(0, "tracks", 1)] == (1.0, 1.0)
    assert (2, "directed", 2) in entries and entries[(2, "directed", 2)] == (1.0, 1.0)
    # stop words ("of", "is", "the") name nothing
    assert all(docs[d][int(p)].text not in {"of", "is", "the", "what"} for d, p in zip(found.doc, found.position))
    assert len(names([nlp("")]).doc) == 0


def test_a_relation_is_found_by_its_name_without_training(tmp_path):
    """A question that names a KB relation follows it before any training
    (as it must for relations that no training question used); without
    `relation_names` the untrained heads spread the hop over all relations."""
    triples = tmp_path / "kb.tsv"
    triples.write_text(TRIPLES + "Titanic\tfilming_location\tBaja California\nAvatar\tfilming_location\tWellington\n")
    with KBBuilder(tmp_path / "kb", progress=False) as builder:
        add_triples(builder, triples)
    named = {}
    for relation_names in (True, False):
        fix_random_seed(0)
        nlp = spacy.blank("en")
        add_qa(nlp, tmp_path / "kb", {"model": {**CONFIG["model"], "relation_names": relation_names}})
        nlp.initialize(functools.partial(list, [question_example(nlp, record) for record in QUESTIONS]))
        doc = nlp("what is the filming location of Avatar")
        weights = dict(doc._.qa_path[0]["relations"])
        named[relation_names] = weights.get("filming_location", 0.0) + weights.get("filming_location^-1", 0.0)
        if relation_names:
            assert top_answer(doc) == "Wellington", (doc._.answers, doc._.qa_path)
    assert named[True] > 0.9 and named[False] < 0.5, named


def test_transformer_listener_encoder(qa_kb_path, bert_path, tmp_path):
    """The QA heads read a shared transformer through a listener, as the linker does."""
    fix_random_seed(0)
    nlp = spacy.blank("en")
    add_transformer(nlp, bert_path, max_wordpieces=64)
    listener = {"@architectures": "spacy-transformers.TransformerListener.v1", "pooling": {"@layers": "reduce_mean.v1"}}
    add_qa(nlp, qa_kb_path, {"model": {**CONFIG["model"], "tok2vec": listener}})
    examples = [question_example(nlp, record) for record in QUESTIONS]
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    losses = []
    for _ in range(40):
        random.shuffle(examples)
        losses.append(nlp.update(examples, sgd=optimizer, drop=0.0)["refined_qa"])
    assert losses[-1] < losses[0] / 3
    right = sum(top_answer(nlp(record["question"])) in record["answers"] for record in QUESTIONS)
    assert right >= len(QUESTIONS) - 2
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    for record in QUESTIONS:
        before, after = nlp(record["question"])._.answers, loaded(record["question"])._.answers
        assert [entity for entity, _ in after] == [entity for entity, _ in before]
        assert [score for _, score in after] == pytest.approx([score for _, score in before], abs=1e-5)
