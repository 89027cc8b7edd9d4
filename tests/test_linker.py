"""The refined_linker component, trained to overfit a few documents of a tiny KB."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy
import pytest
import spacy
import torch
from conftest import add_linker, add_transformer
from spacy import displacy
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from thinc.api import NumpyOps

from spacy_refined.kb import KBError, RefinedKB
from spacy_refined.kb.builder import append_segment
from spacy_refined.model._torch import wrapped_module
from spacy_refined.model.losses import sigmoid_loss
from spacy_refined.pipeline import find_linker
from spacy_refined.pipeline.linker import DEFAULT_MODEL_CONFIG
from spacy_refined.training import docs_from_jsonl, embed_kb

LONG_DOC_TOKENS = 20_000

ENT_MENTIONS = {"@misc": "spacy_refined.EntMentions.v1"}
SPAN_MENTIONS = {"@misc": "spacy_refined.SpanGroupMentions.v1", "key": "mentions"}


def links(doc: Doc) -> List[Tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.kb_id_) for e in doc.ents]


def scores(doc: Doc) -> List[float]:
    return [e._.kb_score for e in doc.ents if e._.kb_score is not None]


def train(nlp: Language, kb_path: Path, records: List[dict], max_steps: int = 300) -> Tuple[List[float], List[Doc]]:
    """Update on `records` until the predictions equal the gold (checked every 10 steps)."""
    golds = list(docs_from_jsonl(nlp, records))
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in golds]
    nlp.config["initialize"]["components"]["refined_kb"] = {
        "kb_loader": {"@misc": "spacy_refined.KBFromPath.v1", "path": str(kb_path)}
    }
    optimizer = nlp.initialize(lambda: examples)
    history = []
    for step in range(max_steps):
        losses: Dict[str, float] = {}
        nlp.update(examples, sgd=optimizer, losses=losses)
        history.append(losses["refined_linker"])
        if step % 10 == 9 and all(
            links(doc) == links(gold) for doc, gold in zip(nlp.pipe(g.text for g in golds), golds)
        ):
            break
    return history, golds


def long_text(records: List[dict], n_tokens: int) -> str:
    texts = [record["text"] for record in records]
    words: List[str] = []
    while len(words) < n_tokens:
        words.extend(texts[len(words) % len(texts)].split())
    return " ".join(words[:n_tokens])


@pytest.fixture(scope="module")
def trained(kb_path, records):
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    add_linker(nlp, config={"extra_labels": ["DATE"]})
    history, golds = train(nlp, kb_path, records)
    return nlp, history, golds


@pytest.fixture(scope="module")
def trained_trf(kb_path, bert_path, records):
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    add_transformer(nlp, bert_path, max_wordpieces=32, overlap=8)
    add_linker(
        nlp,
        config={
            "extra_labels": ["DATE"],
            "model": {
                "@architectures": "spacy_refined.RefinedModel.v1",
                "tok2vec": {
                    "@architectures": "spacy-transformers.TransformerListener.v1",
                    "pooling": {"@layers": "reduce_mean.v1"},
                },
                "description_encoder": {
                    "@architectures": "spacy_refined.TransformerDescriptionEncoder.v1",
                    "name": str(bert_path),
                    "width": 32,
                    "max_length": 16,
                },
            },
        },
    )
    history, golds = train(nlp, kb_path, records)
    return nlp, history, golds


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pipeline") / "linker"
    trained[0].to_disk(path)
    return path


def test_overfit_tok2vec(trained):
    nlp, history, golds = trained
    assert history[-1] < history[0] / 10
    docs = list(nlp.pipe(gold.text for gold in golds))
    assert [links(doc) for doc in docs] == [links(gold) for gold in golds]
    paris, hilton, monday = docs[0].ents
    assert (paris.label_, hilton.label_, monday.label_) == ("GPE", "PERSON", "DATE")
    assert paris._.kb_candidates[0][0] == "Q90" and 0 < paris._.kb_score <= 1
    assert paris._.kb_types[0][0] == "Q515"
    # the most probable types, best first
    linker = nlp.get_pipe("refined_linker")
    type_probs = [p for _, p in paris._.kb_types]
    assert len(type_probs) == min(linker.top_types, len(linker.kb.type_ids)) and type_probs == sorted(
        type_probs, reverse=True
    )
    assert monday._.kb_score is None and monday.kb_id_ == ""
    group = docs[0].spans["refined"]
    assert [span.kb_id_ for span in group] == ["Q90", "Q47899"]
    assert group.attrs["scores"] == pytest.approx([paris._.kb_score, hilton._.kb_score])


def test_overfit_transformer(trained_trf):
    nlp, history, golds = trained_trf
    assert history[-1] < history[0] / 3
    docs = list(nlp.pipe(gold.text for gold in golds))
    assert [links(doc) for doc in docs] == [links(gold) for gold in golds]


@pytest.mark.parametrize("pipeline", ["trained", "trained_trf"])
def test_long_document(pipeline, request, records):
    nlp = request.getfixturevalue(pipeline)[0]
    doc = nlp(long_text(records, LONG_DOC_TOKENS))
    assert len(doc) == LONG_DOC_TOKENS
    assert len(doc.ents) > LONG_DOC_TOKENS / 20
    assert len({e.kb_id_ for e in doc.ents if e.kb_id_.startswith("Q")}) >= 3


def test_pipe_equals_call(trained):
    nlp, _, golds = trained
    texts = [gold.text for gold in golds] + ["", "Officials in Paris met Jordan ."]
    piped = list(nlp.pipe(texts, batch_size=3))
    called = [nlp(text) for text in texts]
    assert [links(doc) for doc in piped] == [links(doc) for doc in called]
    assert [scores(doc) for doc in piped] == [pytest.approx(scores(doc), abs=1e-5) for doc in called]


def run_python(code: str, *args: str, timeout: float) -> str:
    """Run `code` in a fresh Python process; its stdout. A process that does
    not finish in time fails the test, and its whole process group is killed
    (forked workers included)."""
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"the process did not finish in {timeout} s (hung)")
    assert process.returncode == 0, err
    return out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_forked_worker_runs_torch_on_one_thread():
    """torch's OpenMP threads do not survive a fork: in a worker forked after
    torch ran multi-threaded, a multi-threaded operation would wait forever.
    In a worker forked from the process that created the component, the
    component's block runs torch on one thread, whatever `cpu_threads` asks."""
    code = (
        "import os, torch\n"
        "from spacy_refined.model.threads import torch_threads\n"
        "owner = os.getpid()\n"
        "torch.set_num_threads(2)\n"
        "scores = torch.randn(4000, 1400)\n"
        "torch.topk(scores, 5, dim=1)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    with torch_threads(2, owner):\n"
        "        torch.topk(scores, 5, dim=1)\n"
        "    torch.topk(scores, 5, dim=1)\n"
        "    os._exit(torch.get_num_threads())\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    assert run_python(code, timeout=60).strip() == "1"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_loading_the_linker_leaves_the_process_and_its_children_alone():
    """No process-wide side effect at import or load: the thread settings of
    the process, and of processes it forks for other work, stay theirs."""
    code = (
        "import os, torch, spacy\n"
        "import spacy_refined.pipeline.linker\n"
        "nlp = spacy.blank('en')\n"
        "nlp.add_pipe('refined_kb'); nlp.add_pipe('refined_linker')\n"
        "torch.set_num_threads(2)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(torch.get_num_threads())\n"
        "print(torch.get_num_threads(), os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n"
    )
    assert run_python(code, timeout=60).split() == ["2", "2"]


def test_pipe_with_worker_processes(saved, records):
    """nlp.pipe(n_process=2) links as one process does."""
    code = (
        "import json, sys, spacy\n"
        "nlp = spacy.load(sys.argv[1])\n"
        "texts = json.loads(sys.argv[2])\n"
        "list(nlp.pipe(texts))\n"
        "links = lambda docs: [[(e.start, e.end, e.kb_id_) for e in doc.ents] for doc in docs]\n"
        "print(json.dumps([links(nlp.pipe(texts, batch_size=2, n_process=n)) for n in (1, 2)]))\n"
    )
    texts = [record["text"] for record in records] * 2
    one, two = json.loads(run_python(code, str(saved), json.dumps(texts), timeout=240))
    assert one == two and sum(map(len, one)) > 0


def test_save_load_round_trip(trained, saved):
    nlp, _, golds = trained
    loaded = spacy.load(saved)
    assert (saved / "refined_kb" / "kb" / "manifest.json").exists()  # small KB: copied
    texts = [gold.text for gold in golds]
    expected, got = list(nlp.pipe(texts)), list(loaded.pipe(texts))
    assert [links(doc) for doc in got] == [links(doc) for doc in expected]
    assert [scores(doc) for doc in got] == [scores(doc) for doc in expected]
    restored = spacy.blank("en")
    add_linker(restored, config={"extra_labels": ["DATE"]})
    restored.from_bytes(nlp.to_bytes())
    assert [links(doc) for doc in restored.pipe(texts)] == [links(doc) for doc in expected]


def test_transformer_round_trip(trained_trf, tmp_path):
    nlp, _, golds = trained_trf
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    texts = [gold.text for gold in golds]
    expected, got = list(nlp.pipe(texts)), list(loaded.pipe(texts))
    assert [links(doc) for doc in got] == [links(doc) for doc in expected]
    assert [scores(doc) for doc in got] == [pytest.approx(scores(doc), abs=1e-6) for doc in expected]


def test_uninitialized_pipeline_round_trip(tmp_path):
    nlp = spacy.blank("en")
    add_linker(nlp)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    with pytest.raises(KBError, match="has no KB"):
        loaded("Paris")


def test_linker_without_kb_component_says_how_to_add_one(records):
    nlp = spacy.blank("en")
    nlp.add_pipe("refined_linker")
    examples = [Example(nlp.make_doc(d.text), d) for d in docs_from_jsonl(nlp, records)]
    with pytest.raises(KBError, match=r'add_pipe\("refined_kb"'):
        nlp.initialize(lambda: examples)


def test_kb_referenced_by_path(trained, saved, records, tmp_path):
    """With kb_copy false, a saved pipeline refers to its KB by the path it was opened from."""
    nlp = trained[0]
    copy = spacy.load(saved, config={"components": {"refined_kb": {"kb_copy": False}}})
    copy.to_disk(tmp_path / "pipeline")
    assert not (tmp_path / "pipeline" / "refined_kb" / "kb").exists()
    loaded = spacy.load(tmp_path / "pipeline")
    assert find_linker(loaded).kb.path.resolve() == (saved / "refined_kb" / "kb").resolve()
    text = records[1]["text"]
    assert links(loaded(text)) == links(nlp(text))


def test_use_params_and_batches_without_mentions(trained, records):
    nlp = trained[0]
    with nlp.use_params({("unknown", "param"): None}):  # spaCy drives use_params as a generator
        assert links(nlp(records[3]["text"]))
    # no gold mention: nothing to link, but the tagger still learns (names it must not tag)
    unlinked = {"text": "Tourists met Zorblax Quentaro in Vlimp .", "labels": []}
    examples = [Example(nlp.make_doc(d.text), d) for d in docs_from_jsonl(nlp, [records[4], unlinked, {"text": ""}])]
    losses = nlp.get_pipe("refined_linker").update(examples)
    assert losses["refined_linker_ed"] == 0 and losses["refined_linker_md"] > 0


def test_empty_doc(trained):
    doc = trained[0]("")
    assert len(doc) == 0 and doc.ents == () and len(doc.spans["refined"]) == 0


def test_doc_without_mentions(trained):
    doc = trained[0]("It was a quiet day .")
    assert doc.ents == ()
    assert len(doc.spans["refined"]) == 0


def test_mention_without_candidates_is_nil(trained):
    doc = trained[0]("King Abdullah returned to Jordan on Friday .")
    abdullah = doc.ents[0]
    assert (abdullah.text, abdullah.kb_id_) == ("Abdullah", "NIL")
    assert abdullah._.kb_candidates == [] and abdullah._.kb_score > 0.5


def test_nil_mentions_can_be_dropped(trained, saved):
    nlp = spacy.load(saved, config={"components": {"refined_linker": {"keep_nil": False}}})
    doc = nlp("King Abdullah returned to Jordan on Friday .")
    assert [(e.text, e.kb_id_) for e in doc.ents] == [("Jordan", "Q810"), ("Friday", "")]
    assert [span.kb_id_ for span in doc.spans["refined"]] == ["NIL", "Q810"]


def test_nil_bias_moves_answers_to_and_from_nil(saved, records):
    texts = [record["text"] for record in records]

    def answers(nil_bias):
        nlp = spacy.load(saved, config={"components": {"refined_linker": {"nil_bias": nil_bias}}})
        return [
            [
                (span.start, span.end, span.kb_id_, [entity for entity, _ in span._.kb_candidates])
                for span in doc.spans["refined"]
            ]
            for doc in nlp.pipe(texts)
        ]

    neutral, never, always = answers(0.0), answers(-30.0), answers(30.0)
    mentions = [m for doc in neutral for m in doc]
    assert any(kb_id != "NIL" for _, _, kb_id, _ in mentions) and any(
        not candidates for _, _, _, candidates in mentions
    )
    for doc, doc_never, doc_always in zip(neutral, never, always):
        # The same mentions and candidate rankings; only the NIL decision moves.
        assert (
            [(s, e, c) for s, e, _, c in doc]
            == [(s, e, c) for s, e, _, c in doc_never]
            == [(s, e, c) for s, e, _, c in doc_always]
        )
        assert all(kb_id == (candidates[0] if candidates else "NIL") for _, _, kb_id, candidates in doc_never)
        assert all(kb_id == "NIL" for _, _, kb_id, _ in doc_always)


def test_non_ascii(trained):
    doc = trained[0]("Officials in Washington praised the deal signed in Zürich .")
    assert [(e.text, e.kb_id_) for e in doc.ents] == [("Washington", "Q61"), ("Zürich", "Q72")]
    doc = trained[0]("Встреча в Zürich , 東京 и Paris — café .")
    assert {"Q72", "Q90"} <= {e.kb_id_ for e in doc.ents}


def test_mention_across_sentence_boundary(trained, records):
    nlp = trained[0]
    doc = nlp.make_doc(records[0]["text"])
    for token in doc:
        token.is_sent_start = token.i in (0, 5)  # "Paris | Hilton"
    doc = nlp(doc)
    assert ("Paris Hilton", "Q47899") in [(e.text, e.kb_id_) for e in doc.ents]
    assert len(list(doc.sents)) == 2


def test_missing_kb_loader_at_initialize(records):
    nlp = spacy.blank("en")
    add_linker(nlp)
    examples = [Example(nlp.make_doc(d.text), d) for d in docs_from_jsonl(nlp, records)]
    with pytest.raises(KBError, match=r"initialize\.components\.refined_kb\.kb_loader"):
        nlp.initialize(lambda: examples)


def test_mismatched_type_hash(trained, saved, other_kb_path):
    linker = find_linker(trained[0])
    other = RefinedKB.load(other_kb_path)
    with pytest.raises(KBError) as error:
        linker.kb_changed(other)
    assert other.type_hash in str(error.value) and linker.kb.type_hash in str(error.value)
    loaded = spacy.load(saved, config={"components": {"refined_kb": {"external_kb_path": str(other_kb_path)}}})
    with pytest.raises(KBError, match=other.type_hash):
        loaded("Paris")


def test_bad_settings():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="alias_share"):
        nlp.add_pipe("refined_linker", config={"alias_share": 1.5})
    with pytest.raises(ValueError, match="loss_weights"):
        nlp.add_pipe("refined_linker", config={"loss_weights": {"ner": 1.0}})


def test_ent_mentions_link_upstream_ents(saved):
    nlp = spacy.load(saved, config={"components": {"refined_linker": {"mentions": ENT_MENTIONS}}})
    doc = nlp.make_doc("Officials in Washington praised the deal signed in Zürich on Friday .")
    doc.ents = [Span(doc, 2, 3, label="CITY"), Span(doc, 10, 11, label="DATE")]
    doc = nlp(doc)
    assert [(e.text, e.label_, e.kb_id_) for e in doc.ents] == [("Washington", "CITY", "Q61"), ("Friday", "DATE", "")]
    assert doc.ents[0]._.kb_candidates[0] == ("Q61", doc.ents[0]._.kb_score) and doc.ents[0]._.kb_score > 0.3


def test_span_group_mentions_link_given_spans(saved, records):
    nlp = spacy.load(saved, config={"components": {"refined_linker": {"mentions": SPAN_MENTIONS, "write_ents": False}}})
    doc = nlp.make_doc(records[0]["text"])
    doc.spans["mentions"] = [Span(doc, 4, 6), Span(doc, 4, 5), Span(doc, 2, 3)]  # overlapping
    doc = nlp(doc)
    assert doc.ents == ()
    assert [(s.text, s.kb_id_) for s in doc.spans["refined"]] == [
        ("Paris", "Q90"),
        ("Paris", "Q90"),
        ("Paris Hilton", "Q47899"),
    ]


def test_unknown_entities_are_left_out_of_disambiguation(kb_path):
    nlp = spacy.blank("en")
    add_linker(nlp, kb_path)
    record = {
        "text": "Jordan beat the Knicks .",
        "labels": [{"span": [0, 6], "entity_id": "Q999999"}, {"span": [16, 22], "entity_id": None}],
    }
    examples = [Example(nlp.make_doc(d.text), d) for d in docs_from_jsonl(nlp, [record])]
    nlp.initialize(lambda: examples)
    losses = nlp.update(examples)
    assert losses["refined_linker_md"] > 0
    assert losses["refined_linker_ed"] == losses["refined_linker_description"] == losses["refined_linker_typing"] == 0


def test_typing_loss_does_not_grow_with_the_type_inventory():
    # the same predictions and gold types, the inventory padded with 100x more
    # types that the mention does not have and the typer rules out: the loss
    # and the gradient reaching the encoder stay of the same size
    ops = NumpyOps()
    logits = numpy.array([[2.0, -1.0, -3.0]], dtype="float32")
    targets = numpy.array([[1.0, 0.0, 0.0]], dtype="float32")
    rows = numpy.array([True])
    wide_logits = numpy.hstack([logits, numpy.full((1, 300), -3.0, dtype="float32")])
    wide_targets = numpy.hstack([targets, numpy.zeros((1, 300), dtype="float32")])
    loss, d_logits = sigmoid_loss(ops, logits, targets, rows, 1.0)
    wide_loss, wide_d_logits = sigmoid_loss(ops, wide_logits, wide_targets, rows, 1.0)
    assert 0 < wide_loss < loss
    assert abs(wide_d_logits).sum() < abs(d_logits).sum()


def test_zero_shot_entity_added_after_training(saved, kb_path, tmp_path):
    copy = shutil.copytree(kb_path, tmp_path / "kb")
    nlp = spacy.load(saved, config={"components": {"refined_kb": {"external_kb_path": str(copy)}}})
    linker = find_linker(nlp)
    append_segment(
        linker.kb.path,
        [
            {
                "id": "Q999001",
                "label": "Zorblaxia",
                "aliases": ["Kingdom of Zorblaxia"],
                "description": "country in Western Asia",
                "types": ["Q6256"],
                "popularity": 0.5,
            }
        ],
    )
    linker.kb.reload()
    assert embed_kb(nlp, copy, progress=False) == len(linker.kb)
    assert linker.kb.has_embeddings
    doc = nlp("King Abdullah returned to Zorblaxia on Friday .")
    assert ("Zorblaxia", "Q999001", "GPE") in [(e.text, e.kb_id_, e.label_) for e in doc.ents]
    assert len(linker._cache) == 0  # the stored embeddings were used
    assert embed_kb(nlp, copy, progress=False) == 0  # up to date


def test_stored_embeddings_give_the_same_links(saved, kb_path, records, tmp_path):
    copy = shutil.copytree(kb_path, tmp_path / "kb")
    nlp = spacy.load(saved, config={"components": {"refined_kb": {"external_kb_path": str(copy)}}})
    texts = [record["text"] for record in records]
    on_the_fly = list(nlp.pipe(texts))
    embed_kb(nlp, copy, batch_size=4, progress=False)
    stored = list(nlp.pipe(texts))
    assert [links(doc) for doc in stored] == [links(doc) for doc in on_the_fly]
    assert [scores(doc) for doc in stored] == [pytest.approx(scores(doc), abs=1e-6) for doc in on_the_fly]


def test_displacy_links_entities(trained, records):
    nlp = trained[0]
    doc = nlp(records[3]["text"])
    html = displacy.render(doc, style="ent", options=find_linker(nlp).displacy_options)
    assert 'href="https://www.wikidata.org/wiki/Q72"' in html


def test_evaluate(trained):
    nlp, _, golds = trained
    results = nlp.evaluate([Example(nlp.make_doc(gold.text), gold) for gold in golds])
    assert results["el_f"] == results["el_md_f"] == results["el_ed_acc"] == 1.0


def test_docs_from_jsonl(kb_path):
    nlp = spacy.blank("en")
    record = {
        "id": "x",
        "text": "Visit Zürich's old town in Paris-Nord with George Washington",
        "labels": [
            {"span": [6, 10], "entity_id": "Q72"},  # "Züri": expanded to the token
            {"span": [8, 14], "entity_id": "Q1"},  # overlaps: dropped
            {"span": [27, 32], "entity_id": "<NIL>"},
            {"span": [43, 60], "entity_id": None},
        ],
    }
    doc = next(docs_from_jsonl(nlp, [record]))
    assert [(e.text, e.label_, e.kb_id_) for e in doc.ents] == [
        ("Zürich", "ENT", "Q72"),
        ("Paris", "ENT", "NIL"),
        ("George Washington", "ENT", ""),
    ]
    assert doc.user_data["id"] == "x"
    doc = next(docs_from_jsonl(nlp.vocab, [record], kb=RefinedKB.load(kb_path)))
    assert [t.text for t in doc][:2] == ["Visit", "Zürich's"]
    assert [(e.label_, e.kb_id_) for e in doc.ents] == [("GPE", "Q72"), ("MISC", "NIL"), ("MISC", "")]


def test_batch_where_no_mention_has_candidates(saved):
    """A batch whose mentions all lack candidates links them to NIL (no crash)."""
    nlp = spacy.load(saved, config={"components": {"refined_linker": {"mentions": ENT_MENTIONS}}})
    docs = []
    for text in ("Xyzzy met Plugh .", "Nobody knows Frobozz ."):
        doc = nlp.make_doc(text)
        doc.ents = [Span(doc, 0, 1, label="PERSON"), Span(doc, len(doc) - 2, len(doc) - 1, label="PERSON")]
        docs.append(doc)
    docs = list(nlp.pipe(docs))
    assert [[e.kb_id_ for e in doc.ents] for doc in docs] == [["NIL", "NIL"], ["NIL", "NIL"]]
    assert all(e._.kb_candidates == [] for doc in docs for e in doc.ents)


def test_cpu_threads_apply_to_prediction_only(saved, monkeypatch):
    import torch

    from spacy_refined.pipeline import linker as linker_module

    seen = []
    original = linker_module.RefinedLinker._lookup

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(linker_module.RefinedLinker, "_lookup", spy)
    before = torch.get_num_threads()
    nlp = spacy.load(saved, config={"components": {"refined_linker": {"cpu_threads": 1}}})
    nlp("Paris Hilton visited Paris .")
    assert seen == [1] and torch.get_num_threads() == before
    seen.clear()
    nlp = spacy.load(saved, config={"components": {"refined_linker": {"cpu_threads": 0}}})
    nlp("Paris Hilton visited Paris .")
    assert seen == [before]
    with pytest.raises(ValueError, match="cpu_threads"):
        spacy.load(saved, config={"components": {"refined_linker": {"cpu_threads": -1}}})


def test_weights_of_another_model_version_are_refused_clearly():
    import srsly
    import torch

    from spacy_refined.model._torch import deserialize_module, serialize_module
    from spacy_refined.model.heads import RefinedHeads

    heads = RefinedHeads(width=8, n_tags=3, n_types=4, entity_width=6, hidden_width=5, dropout=0.0)
    message = srsly.msgpack_loads(serialize_module(heads))
    message["config"]["width"] = 16  # the same class now builds other shapes
    with pytest.raises(ValueError, match="do not fit this version"):
        deserialize_module(None, srsly.msgpack_dumps(message), torch.device("cpu"))


def test_frozen_description_encoder_is_not_trained_and_embeddings_are_reused(kb_path, bert_path, records):
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    linker = add_linker(
        nlp,
        kb_path,
        config={
            "train_descriptions": False,
            "model": {
                "@architectures": "spacy_refined.RefinedModel.v1",
                "tok2vec": DEFAULT_MODEL_CONFIG["tok2vec"],
                "description_encoder": {
                    "@architectures": "spacy_refined.TransformerDescriptionEncoder.v1",
                    "name": str(bert_path),
                    "width": 32,
                    "max_length": 16,
                },
            },
        },
    )
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs_from_jsonl(nlp, records)]
    optimizer = nlp.initialize(lambda: examples)
    encoder, heads = linker.model.get_ref("description_encoder"), linker.model.get_ref("heads")
    encoder_before, heads_before = encoder.to_bytes(), heads.to_bytes()
    encoded: List[int] = []
    original = linker.encode_descriptions
    linker.encode_descriptions = lambda texts: encoded.append(len(texts)) or original(texts)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    assert encoder.to_bytes() == encoder_before  # not trained
    assert heads.to_bytes() != heads_before  # the rest is
    assert len(encoded) == 1 and encoded[0] == len(linker._cache)  # each candidate encoded once, in the first update


def _heads(nlp: Language):
    return wrapped_module(find_linker(nlp).model.get_ref("heads"))


def test_calibration_refits_a_nil_happy_scorer_and_nothing_else(saved, records, tmp_path, run_cli):
    import srsly
    import torch

    nlp = spacy.load(saved)
    with torch.no_grad():
        _heads(nlp).scorer.bias.fill_(-10.0)  # NIL (logit 0) wins almost everywhere
    nlp.to_disk(tmp_path / "broken")
    texts = [record["text"] for record in records]
    expected = [links(doc) for doc in spacy.load(saved).pipe(texts)]
    assert [links(doc) for doc in nlp.pipe(texts)] != expected
    srsly.write_jsonl(tmp_path / "dev.jsonl", records)
    code, out, err = run_cli("calibrate", tmp_path / "broken", tmp_path / "dev.jsonl", "-o", tmp_path / "calibrated")
    assert code == 0, err
    before, after = (float(x) for x in out.split("accuracy (NIL included) ")[1].split("\n")[0].split(" -> "))
    assert after > before
    calibrated = spacy.load(tmp_path / "calibrated")
    assert [links(doc) for doc in calibrated.pipe(texts)] == expected
    # only the scorer's linear layer moved
    old, new = _heads(nlp).state_dict(), _heads(calibrated).state_dict()
    changed = {name for name in old if not torch.equal(old[name], new[name])}
    assert changed == {"scorer.bias"} or changed == {"scorer.weight", "scorer.bias"}
    assert (
        find_linker(calibrated).model.get_ref("tok2vec").to_bytes()
        == find_linker(nlp).model.get_ref("tok2vec").to_bytes()
    )


def test_calibration_without_usable_mentions_fails_clearly(saved, tmp_path, run_cli):
    import srsly

    srsly.write_jsonl(tmp_path / "dev.jsonl", [{"text": "Nothing to link here .", "labels": []}])
    code, _, err = run_cli("calibrate", saved, tmp_path / "dev.jsonl", "-o", tmp_path / "out")
    assert code == 1 and "no mention to calibrate on" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_calibration_runs_the_shared_transformer_first(trained_trf, records, tmp_path):
    from spacy_refined.training import calibrate_pipeline

    trained_trf[0].to_disk(tmp_path / "pipeline")
    nlp = spacy.load(tmp_path / "pipeline")  # a copy: the fixture stays as trained
    result = calibrate_pipeline(nlp, records)
    assert result["mentions"] == 12  # 10 in-KB gold mentions + 2 NIL
    assert result["loss_after"] <= result["loss_before"]


def test_calibration_on_predicted_mentions_learns_to_turn_down_spurious_ones(saved, records):
    from spacy_refined.training import calibrate_pipeline

    nlp = spacy.load(saved)
    texts = [record["text"] for record in records]
    assert any(span.kb_id_ != "NIL" for doc in nlp.pipe(texts) for span in doc.spans["refined"])
    # dev documents whose gold says: no entity here, every detected mention is spurious
    result = calibrate_pipeline(nlp, [{"text": text, "labels": []} for text in texts], mentions="predicted")
    assert result["mentions"] > 0 and result["loss_after"] < result["loss_before"]
    assert result["accuracy_after"] == 1.0
    assert all(span.kb_id_ == "NIL" for doc in nlp.pipe(texts) for span in doc.spans["refined"])
    with pytest.raises(ValueError, match="'gold' or 'predicted'"):
        calibrate_pipeline(nlp, records, mentions="detected")


def test_whitespace_is_never_a_mention(saved):
    """Line breaks (spaCy makes them tokens) are neither mentions nor parts of one,
    even where the tagger would tag every token as a mention."""
    nlp = spacy.load(saved)
    tagger = wrapped_module(nlp.get_pipe("refined_linker").model.get_ref("heads")).tagger[-1]
    with torch.no_grad():
        tagger.bias.fill_(-100.0)
        tagger.bias[1] = 100.0  # B-ENTITY for every token
    doc = nlp("Paris\n\nHilton  visited \nZürich .")
    assert [t.text for t in doc if t.is_space] == ["\n\n", " ", "\n"]
    assert [e.text for e in doc.ents] == ["Paris", "Hilton", "visited", "Zürich", "."]


def test_two_linkers_share_one_kb(saved, kb_path, tmp_path):
    """Two components of one pipeline use the pipeline's one KB: it is opened
    once, saved once, and an entity added to it is linked by both."""
    copy = shutil.copytree(kb_path, tmp_path / "kb")
    nlp = spacy.load(saved, config={"components": {"refined_kb": {"external_kb_path": str(copy)}}})
    source = spacy.load(
        saved, config={"components": {"refined_linker": {"mentions": SPAN_MENTIONS, "write_ents": False}}}
    )
    nlp.add_pipe("refined_linker", name="span_linker", source=source)
    detector, spans = nlp.get_pipe("refined_linker"), nlp.get_pipe("span_linker")
    assert detector.kb is spans.kb is nlp.get_pipe("refined_kb").kb
    nlp.to_disk(tmp_path / "pipeline")
    assert sorted(p.parent.parent.name for p in (tmp_path / "pipeline").glob("*/kb/manifest.json")) == ["refined_kb"]
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("refined_linker").kb is loaded.get_pipe("span_linker").kb
    kb = loaded.get_pipe("refined_kb").kb
    append_segment(
        kb.path,
        [
            {
                "id": "Q999001",
                "label": "Zorblaxia",
                "aliases": ["Kingdom of Zorblaxia"],
                "description": "country in Western Asia",
                "types": ["Q6256"],
                "popularity": 0.5,
            }
        ],
    )
    kb.reload()
    doc = loaded.make_doc("King Abdullah returned to Zorblaxia on Friday .")
    doc.spans["mentions"] = [Span(doc, 4, 5)]
    doc = loaded(doc)
    assert ("Zorblaxia", "Q999001") in [(e.text, e.kb_id_) for e in doc.ents]
    assert [(s.text, s.kb_id_) for s in doc.spans["refined"]] == [("Zorblaxia", "Q999001")]
