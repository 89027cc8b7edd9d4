"""The KB store and builder on a small custom KB (no Wikidata needed)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.kb import KnowledgeBase

from spacy_refined.kb import DumpError, KBError, RefinedKB, UnknownEntityError
from spacy_refined.kb.builder import Evidence, KBBuilder, append_segment, store_embeddings
from spacy_refined.kb.candidates import make_prior_candidates, person_name_candidates, prior_candidates
from spacy_refined.kb.format import SEGMENT_ARRAYS, SEGMENT_STRINGS
from spacy_refined.kb.lock import LOCK_FILE

ENTITIES = [
    {
        "id": "Q90",
        "label": "Paris",
        "aliases": ["City of Light", "Paris, France"],
        "description": "capital city of France",
        "types": ["Q515"],
        "facts": [["P17", "Q142"], ["P1376", "Q142"]],
        "popularity": 0.9,
    },
    {
        "id": "Q167646",
        "label": "Paris",
        "description": "son of Priam, king of Troy",
        "types": ["Q5"],
        "popularity": 0.2,
    },
    {
        "id": "Q47899",
        "label": "Paris Hilton",
        "aliases": ["Paris"],
        "description": "American media personality",
        "types": ["Q5"],
        "facts": [{"relation": "P27", "object": "Q30"}],
        "popularity": 0.6,
    },
    {
        "id": "Q142",
        "label": "France",
        "aliases": ["French Republic"],
        "description": "country in Western Europe",
        "types": ["Q6256"],
        "popularity": 1.0,
    },
    {
        "id": "Q76",
        "label": "Barack Obama",
        "aliases": ["Obama", "Barack Hussein Obama II"],
        "description": "44th president of the United States",
        "types": ["Q5"],
        "facts": [["P27", "Q30"]],
        "popularity": 0.95,
    },
    {
        "id": "Q41773",
        "label": "Obama",
        "description": "city in Fukui Prefecture, Japan",
        "types": ["Q515"],
        "popularity": 0.1,
    },
    {
        "id": "Q30",
        "label": "United States",
        "aliases": ["USA", "the U.S."],
        "description": "country in North America",
        "types": ["Q6256"],
        "popularity": 1.0,
    },
    {"id": "Q515", "label": "city", "subclass_of": ["Q486972"]},
    {"id": "Q486972", "label": "human settlement"},
    {"id": "Q6256", "label": "country"},
    {"id": "Q5", "label": "human"},
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf8")
    return path


def build_kb(tmp_path: Path, name: str = "kb", entities=ENTITIES, mention_counts=None) -> Path:
    source = write_jsonl(tmp_path / f"{name}.jsonl", entities)
    output = tmp_path / name
    with KBBuilder(output, n_types=20, min_type_count=1, max_type_share=1.0, progress=False) as builder:
        builder.add_entities_jsonl(source)
        if mention_counts is not None:
            builder.add_mention_counts(mention_counts)
    return output


@pytest.fixture
def kb(tmp_path) -> RefinedKB:
    return RefinedKB.load(build_kb(tmp_path))


def top_ids(kb: RefinedKB, mention: str, k: int = 10):
    entities, priors = kb.candidates([mention], k)[0]
    assert np.all(np.diff(priors) <= 1e-6), "candidates must come best first"
    return [kb.entity_id(e) for e in entities]


def test_custom_kb_entities(kb):
    assert len(kb) == len(ENTITIES)
    paris = kb.index("Q90")
    assert kb.entity_id(paris) == "Q90"
    assert kb.label(paris) == "Paris"
    assert kb.description(paris) == "capital city of France"
    assert kb.aliases(paris) == ["City of Light", "Paris, France"]
    assert kb.title(paris) == ""
    # Types are closed over subclass-of: a city is a human settlement.
    assert set(kb.types(paris)) == {"Q515", "Q486972"}
    assert dict(zip(kb.type_ids, kb.type_labels))["Q515"] == "city"
    assert kb.find(["Q142", "Q999999"]).tolist() == [kb.index("Q142"), -1]
    assert "Q30" in kb and "Q999999" not in kb
    with pytest.raises(KeyError, match="Q999999"):
        kb.index("Q999999")


def test_unknown_entity_error_is_a_key_error_and_a_kb_error(kb):
    with pytest.raises(UnknownEntityError) as excinfo:
        kb.index("Q999999")
    assert isinstance(excinfo.value, KeyError) and isinstance(excinfo.value, KBError)
    assert str(excinfo.value) == f"entity 'Q999999' is not in the KB at {kb.path}"  # not quoted as KeyError's


def test_candidates_ranked_by_prior(kb):
    # Labels weigh more than aliases; popularity orders entities sharing a name.
    assert top_ids(kb, "Paris") == ["Q90", "Q167646", "Q47899"]
    assert top_ids(kb, "paris") == top_ids(kb, "PARIS") == top_ids(kb, "Paris")
    assert top_ids(kb, "Paris", k=1) == ["Q90"]
    assert top_ids(kb, "The U.S.") == ["Q30"]
    assert top_ids(kb, "City of Light") == ["Q90"]
    assert top_ids(kb, "Atlantis") == []
    _, priors = kb.candidates(["Paris"])[0]
    assert priors.sum() == pytest.approx(1.0, abs=1e-5)


def test_batch_lookup_is_aligned(kb):
    mentions = ["Paris", "nowhere", "France", "", "Obama"] * 50
    batch = kb.candidates(mentions, k=2)
    assert len(batch) == len(mentions)
    for i, mention in enumerate(mentions):
        entities, _ = batch[i]
        assert [kb.entity_id(e) for e in entities] == top_ids(kb, mention, k=2)


def test_mention_counts_change_priors(tmp_path):
    counts = tmp_path / "counts.tsv"
    counts.write_text("Paris\tQ47899\t50\nParis\tQ90\t10\nUnknown entity\tQ000\t3\n", encoding="utf8")
    kb = RefinedKB.load(build_kb(tmp_path, mention_counts=counts))
    assert top_ids(kb, "Paris")[0] == "Q47899"


def test_mention_counts_from_documents(tmp_path):
    doc = {
        "id": "d1",
        "text": "Hilton arrived.",
        "labels": [{"span": [0, 6], "entity_id": "Q47899"}, {"span": [7, 14], "entity_id": "<NIL>"}],
    }
    kb = RefinedKB.load(build_kb(tmp_path, mention_counts=write_jsonl(tmp_path / "docs.jsonl", [doc])))
    assert top_ids(kb, "Hilton") == ["Q47899"]
    assert top_ids(kb, "arrived") == []


def test_facts_by_subject_and_object(kb):
    paris, france = kb.index("Q90"), kb.index("Q142")
    subjects, relations, objects = kb.facts_about(np.array([paris]))
    assert sorted(kb.relation_ids[r] for r in relations) == ["P1376", "P17"]
    assert set(objects.tolist()) == {france}
    subjects, relations, objects = kb.facts_pointing_to(np.array([kb.index("Q30")]))
    assert {kb.entity_id(s) for s in subjects} == {"Q76", "Q47899"}
    assert kb.entity(paris)["facts"][0]["object"] == "Q142"


def test_type_matrix(kb):
    indices = kb.find(["Q90", "Q76", "Q5"])
    matrix = kb.type_matrix(indices)
    assert matrix.shape == (3, len(kb.type_ids))
    assert matrix[0, kb.type_ids.index("Q515")] == 1 and matrix[0, kb.type_ids.index("Q5")] == 0
    assert matrix[1, kb.type_ids.index("Q5")] == 1
    assert matrix[2].sum() == 0


def test_person_name_rule(kb):
    alone = person_name_candidates(kb, ["Obama"])
    assert [kb.entity_id(e) for e in alone[0][0]][0] == "Q41773"
    doc = person_name_candidates(kb, ["Barack Obama", "Paris", "Obama"])
    # After the full name, the surname is that person, with the full name's prior.
    assert [kb.entity_id(e) for e in doc[2][0]] == ["Q76"]
    assert doc[2][1][0] == pytest.approx(doc[0][1][0])
    assert [kb.entity_id(e) for e in doc[1][0]] == top_ids(kb, "Paris")
    # A surname before the full name (a headline) too, but not a first name.
    before = person_name_candidates(kb, ["Obama", "Paris", "Barack Obama", "Paris Hilton"])
    assert [kb.entity_id(e) for e in before[0][0]] == ["Q76"]
    assert [kb.entity_id(e) for e in before[1][0]] == top_ids(kb, "Paris")


def test_registered_candidate_generators(kb):
    mentions = ["Barack Obama", "Paris", "Obama"]
    registered = spacy.registry.misc.get("spacy_refined.PriorCandidates.v1")
    assert registered is make_prior_candidates
    with_names = registered()(kb, mentions, 5)
    plain = registered(person_names=False)(kb, mentions, 5)
    assert make_prior_candidates(person_names=False) is prior_candidates
    expected = kb.candidates(mentions, 5)
    assert plain.offsets.tolist() == expected.offsets.tolist() and plain.entities.tolist() == expected.entities.tolist()
    assert [kb.entity_id(e) for e in with_names[2][0]] == ["Q76"]
    assert [kb.entity_id(e) for e in plain[2][0]] == top_ids(kb, "Obama", 5) != ["Q76"]
    resolved = spacy.util.registry.resolve({"g": {"@misc": "spacy_refined.PriorCandidates.v1", "person_names": False}})
    assert resolved["g"] is prior_candidates


def test_append_segment_without_rebuild(tmp_path):
    path = build_kb(tmp_path)
    kb = RefinedKB.load(path)
    base_files = {p.name: p.stat().st_mtime_ns for p in (path / "base").iterdir()}
    added = append_segment(
        path,
        [
            {
                "id": "X1",
                "label": "Paris Saint-Germain",
                "aliases": ["PSG", "Paris"],
                "description": "football club",
                "title": "Paris_Saint-Germain_F.C.",
                "types": ["Q515"],
                "facts": [["P17", "Q142"], ["P159", "X2"]],
                "popularity": 0.99,
            },
            {"id": "X2", "label": "Parc des Princes", "description": "stadium in Paris", "types": ["human settlement"]},
        ],
        mention_counts=[("Paris", "X1", 1000.0)],
    )
    assert added == 2 and len(kb) == len(ENTITIES)  # an open KB sees the segment after reload()
    assert "X1" not in kb
    kb.reload()
    assert len(kb) == len(ENTITIES) + 2 and [s.path.name for s in kb.segments] == ["base", "added-0001"]
    assert top_ids(kb, "PSG") == ["X1"]
    ranked = top_ids(kb, "Paris")
    assert ranked[0] == "X1" and set(ranked) == {"X1", "Q90", "Q47899", "Q167646"}
    _, priors = kb.candidates(["Paris"])[0]
    assert priors.sum() == pytest.approx(1.0, abs=1e-5)
    x1 = kb.index("X1")
    assert kb.find_titles(["Paris Saint-Germain F.C.", "PSG"]).tolist() == [x1, -1]
    assert kb.types(x1) == ["Q515"] or set(kb.types(x1)) == {"Q515"}
    assert kb.types(kb.index("X2")) == ["Q486972"]
    _, relations, objects = kb.facts_about(np.array([x1]))
    assert {kb.entity_id(o) for o in objects} == {"Q142", "X2"}
    assert "P159" in kb.relation_ids
    # The base segment was not rewritten, and the addition survives reopening.
    assert {p.name: p.stat().st_mtime_ns for p in (path / "base").iterdir()} == base_files
    reopened = RefinedKB.load(path)
    assert top_ids(reopened, "PSG") == ["X1"] and len(reopened) == len(kb)


def test_append_segment_errors(kb):
    with pytest.raises(KBError, match="already in the KB"):
        append_segment(kb.path, [{"id": "Q90", "label": "Paris"}])
    with pytest.raises(KBError, match="not in the KB's type inventory"):
        append_segment(kb.path, [{"id": "X9", "label": "Thing", "types": ["Q999"]}])
    with pytest.raises(KBError, match="non-empty string 'id'"):
        append_segment(kb.path, [{"label": "no id"}])
    with pytest.raises(KBError, match="no entities to add"):
        append_segment(kb.path, [])
    kb.reload()
    assert len(kb) == len(ENTITIES) and len(kb.segments) == 1
    assert [s.name for s in kb.path.iterdir() if s.name.startswith(".")] == [LOCK_FILE]  # no staging left


def test_disk_and_bytes_round_trip(kb, tmp_path):
    kb.to_disk(tmp_path / "copy")
    copy = RefinedKB(spacy.blank("en").vocab).from_disk(tmp_path / "copy")
    assert len(copy) == len(kb) and top_ids(copy, "Paris") == top_ids(kb, "Paris")
    restored = RefinedKB(spacy.blank("en").vocab).from_bytes(kb.to_bytes())
    assert top_ids(restored, "Obama") == top_ids(kb, "Obama")
    assert restored.entity(restored.index("Q90")) == kb.entity(kb.index("Q90"))


def test_failed_build_keeps_the_good_kb(tmp_path):
    path = build_kb(tmp_path)
    before = (path / "manifest.json").read_text()
    bad = write_jsonl(tmp_path / "bad.jsonl", ENTITIES[:3])
    with bad.open("a") as f:
        f.write('{"id": "Q1", "label": broken json\n')
    with pytest.raises(DumpError, match=r"bad.jsonl \(line 4\)"):
        with KBBuilder(path, progress=False) as builder:
            builder.add_entities_jsonl(bad)
    assert (path / "manifest.json").read_text() == before
    assert RefinedKB.load(path).index("Q76") >= 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(KBError, match="'Q90' occurs more than once"):
        build_kb(tmp_path, entities=ENTITIES + [ENTITIES[0]])
    assert not (tmp_path / "kb").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no staging left behind


def test_bad_kb_directories(tmp_path):
    with pytest.raises(KBError, match="manifest.json is missing"):
        RefinedKB.load(tmp_path)
    path = build_kb(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KBError, match="format version 99"):
        RefinedKB.load(path)


def test_spacy_knowledge_base_api(kb):
    nlp = spacy.blank("en")
    doc = nlp("Barack Obama visited Paris with Paris Hilton. Obama and Hilton smiled.")
    spans = [doc[0:2], doc[3:4], doc[5:7], doc[8:9], doc[10:11]]
    assert isinstance(kb, KnowledgeBase)
    batch = kb.get_candidates_batch(spans)
    assert [c.entity_ for c in batch[0]] == ["Q76"]
    assert [c.entity_ for c in batch[1]] == ["Q90", "Q167646", "Q47899"]
    assert [c.entity_ for c in batch[3]] == ["Q76"]  # the person-name rule
    assert [c.entity_ for c in batch[4]] == ["Q47899"]
    assert batch[1][0].prior_prob > batch[1][1].prior_prob > 0
    assert batch[1][0].alias_ == "paris"
    assert [c.entity_ for c in kb.get_candidates(doc[3:4])] == [c.entity_ for c in batch[1]]


def test_spacy_entity_linker_uses_the_kb(tmp_path):
    """spaCy's own `entity_linker` trains, predicts and round-trips with a RefinedKB."""
    from spacy.training import Example

    path = build_kb(tmp_path)
    kb = RefinedKB.load(path)
    rng = np.random.default_rng(0)
    store_embeddings(path, "base", rng.normal(size=(len(kb), 16)).astype(np.float32), {"model": "random-test-vectors"})
    kb.reload()
    assert kb.entity_vector_length == 16

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    linker = nlp.add_pipe("entity_linker", config={"generate_empty_kb": {"@misc": "spacy_refined.EmptyKB.v1"}})
    text = "Paris Hilton flew to Paris."
    gold = {
        "entities": [(0, 12, "PERSON"), (21, 26, "GPE")],
        "links": {(0, 12): {"Q47899": 1.0}, (21, 26): {"Q90": 1.0}},
    }
    examples = [Example.from_dict(nlp.make_doc(text), gold)]
    for eg in examples:
        eg.predicted.set_ents([eg.predicted.char_span(s, e, label=label) for s, e, label in gold["entities"]])
    kb_loader = spacy.registry.misc.get("spacy_refined.KBFromPath.v1")(path)
    linker.set_kb(kb_loader)
    optimizer = nlp.initialize(lambda: examples)
    assert isinstance(linker.kb, RefinedKB)
    for _ in range(10):
        nlp.update(examples, sgd=optimizer)

    def predict(pipeline):
        doc = pipeline.make_doc(text)
        doc.set_ents([doc.char_span(s, e, label=label) for s, e, label in gold["entities"]])
        for _, proc in pipeline.pipeline:
            doc = proc(doc)
        return [(ent.text, ent.kb_id_) for ent in doc.ents]

    predicted = predict(nlp)
    assert [kb_id for _, kb_id in predicted][1] in {"Q90", "Q167646", "Q47899"}
    nlp.to_disk(tmp_path / "pipeline")
    reloaded = spacy.load(tmp_path / "pipeline")
    assert isinstance(reloaded.get_pipe("entity_linker").kb, RefinedKB)
    assert predict(reloaded) == predicted


def test_registered_functions_found_through_entry_points(tmp_path):
    """After `pip install`, spaCy finds the KB functions without importing spacy_refined."""
    import subprocess
    import sys

    path = build_kb(tmp_path)
    code = (
        "import spacy, sys\n"
        f"kb = spacy.registry.misc.get('spacy_refined.KBFromPath.v1')({str(path)!r})(spacy.blank('en').vocab)\n"
        "print(len(kb), type(kb).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.split() == [str(len(ENTITIES)), "RefinedKB"]


def test_type_lists_match_type_matrix(kb):
    indices = np.array([kb.index("Q90"), kb.index("Q5"), kb.index("Q76"), kb.index("Q90")])
    lists = kb.type_lists(indices)
    matrix = kb.type_matrix(indices)
    for row, types in zip(matrix, lists):
        assert sorted(t for t in types.tolist() if t >= 0) == np.flatnonzero(row).tolist()
    assert lists.shape[0] == 4 and (lists[1] == -1).all()


def test_zero_and_negative_mention_counts(tmp_path):
    counts = tmp_path / "counts.tsv"
    counts.write_text("foo\tQ90\t0\n", encoding="utf8")
    kb = RefinedKB.load(build_kb(tmp_path, mention_counts=counts))
    assert top_ids(kb, "foo") == []  # zero evidence makes no candidate (and no NaN prior)
    counts.write_text("foo\tQ90\t-3\n", encoding="utf8")
    with pytest.raises(DumpError, match="negative"):
        build_kb(tmp_path, name="kb2", mention_counts=counts)
    with pytest.raises(KBError, match="negative"):
        append_segment(kb.path, [{"id": "X1", "label": "X"}], mention_counts=[("x", "X1", -1)])


def test_get_vector_of_unknown_ids_is_zero(kb):
    store_embeddings(kb.path, "base", np.ones((len(kb), 4), dtype=np.float32), {"model": "ones"})
    kb.reload()
    assert kb.get_vectors(["Q90", "NIL", "Q999999"]) == [[1.0] * 4, [0.0] * 4, [0.0] * 4]


def test_store_does_not_import_the_builder():
    """Loading a pipeline's KB loads neither the builder nor the dump readers."""
    code = (
        "import sys\n"
        "import spacy_refined.kb.store\n"
        "print(sorted(m for m in sys.modules if m.startswith('spacy_refined.kb.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    for module in ("builder", "wikidata", "wikipedia", "mediawiki"):
        assert f"'spacy_refined.kb.{module}'" not in out


def test_manifest_names_the_evidence_weights(kb):
    assert [kind.value for kind in Evidence] == list(range(5))
    assert kb.manifest["build"]["weights"] == {"label": 1.0, "alias": 0.5, "anchor": 1.0, "redirect": 1.0, "count": 1.0}


def test_segment_files_follow_the_schema(tmp_path):
    path = build_kb(tmp_path)
    append_segment(path, [{"id": "X1", "label": "Lutetia", "types": ["Q515"], "facts": [["P17", "Q142"]]}])
    expected = {array.file for array in SEGMENT_ARRAYS.values()}
    expected |= {f"{name}.{part}.npy" for name in SEGMENT_STRINGS for part in ("data", "offsets")}
    for segment in ("base", "added-0001"):
        assert {p.name for p in (path / segment).iterdir()} == expected
        for array in SEGMENT_ARRAYS.values():
            assert np.load(path / segment / array.file, mmap_mode="r").dtype == np.dtype(array.dtype), array.name


def test_nbytes_is_the_size_on_disk(tmp_path):
    path = build_kb(tmp_path)
    kb = RefinedKB.load(path)
    assert kb.nbytes == sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert kb.nbytes > sum(segment.nbytes for segment in kb.segments) > 0  # plus the manifest and inventories
    before = kb.nbytes
    append_segment(path, [{"id": "X1", "label": "Lutetia"}])
    kb.reload()
    assert kb.nbytes > before
    assert RefinedKB(spacy.blank("en").vocab).nbytes == 0


def test_compressed_input_is_recognised_by_its_content(tmp_path):
    """A gzip- or bzip2-compressed entities file opens whatever its name."""
    import bz2
    import gzip

    text = "".join(json.dumps(e) + "\n" for e in ENTITIES).encode("utf8")
    for name, compress in (("gz.jsonl", gzip.compress), ("bz2.jsonl", bz2.compress), ("plain.jsonl.bz2", lambda b: b)):
        source = tmp_path / name
        source.write_bytes(compress(text))
        with KBBuilder(
            tmp_path / f"kb-{name}", n_types=20, min_type_count=1, max_type_share=1.0, progress=False
        ) as builder:
            assert builder.add_entities_jsonl(source) == len(ENTITIES)
    with pytest.raises(DumpError, match="no such file"):
        with KBBuilder(tmp_path / "missing", progress=False) as builder:
            builder.add_entities_jsonl(tmp_path / "missing.jsonl")


# ------------------------------------------------------- bad input: one-line errors

GOOD = {"id": "Q1", "label": "Paris"}


def build_from_lines(run_cli, tmp_path: Path, data: bytes, name: str = "entities.jsonl", *options):
    """`kb build` of an entities file holding `data`: (exit code, stderr)."""
    source = tmp_path / name
    source.write_bytes(data)
    code, _, err = run_cli("kb", "build", "--entities", source, "-o", tmp_path / "out", "--no-progress", *options)
    return code, err


def assert_one_line_error(code: int, err: str, *parts: str) -> None:
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0], (part, lines[0])


@pytest.mark.parametrize(
    "bad,reason",
    [
        ({"id": 5, "label": "Paris"}, "non-empty string 'id'"),
        ({"id": "  ", "label": "Paris"}, "non-empty string 'id'"),
        ({"id": "Q2", "label": 5}, "'label' must be a string"),
        ({"id": "Q2", "label": "Paris", "title": ["Paris"]}, "'title' must be a string"),
        ({"id": "Q2", "label": "Paris", "description": {"en": "city"}}, "'description' must be a string"),
        ({"id": "Q2", "label": "Paris", "popularity": True}, "'popularity' must be a number"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_entity_is_a_one_line_error_with_file_and_line(run_cli, tmp_path, bad, reason):
    data = (json.dumps(GOOD) + "\n\n" + json.dumps(bad) + "\n").encode("utf8")
    code, err = build_from_lines(run_cli, tmp_path, data)
    assert_one_line_error(code, err, "entities.jsonl (line 3)", reason)
    assert not (tmp_path / "out").exists()


def test_nan_popularity_is_refused_by_a_build(run_cli, tmp_path):
    """A build ranks any score, but NaN has no rank."""
    data = (json.dumps(GOOD) + "\n" + '{"id": "Q2", "label": "Lyon", "popularity": NaN}\n').encode("utf8")
    code, err = build_from_lines(run_cli, tmp_path, data)
    assert_one_line_error(code, err, "entities.jsonl (line 2)", "'popularity' must be a number, got nan")
    data = (json.dumps(GOOD) + "\n" + json.dumps({"id": "Q2", "label": "Lyon", "popularity": 1e6}) + "\n").encode()
    assert build_from_lines(run_cli, tmp_path, data)[0] == 0


def test_invalid_utf8_in_an_entity_file(run_cli, tmp_path):
    data = json.dumps(GOOD).encode() + b"\n" + b'{"id": "Q2", "label": "Z\xfcrich"}\n'
    code, err = build_from_lines(run_cli, tmp_path, data)
    assert_one_line_error(code, err, "entities.jsonl (line 2)", "not valid UTF-8")


def test_compressed_entity_file_named_for_another_compression(run_cli, tmp_path):
    import gzip

    text = "".join(json.dumps(e) + "\n" for e in ENTITIES).encode("utf8")
    code, err = build_from_lines(run_cli, tmp_path, gzip.compress(text), "entities.jsonl.bz2")
    assert code == 0, err
    assert len(RefinedKB.load(tmp_path / "out")) == len(ENTITIES)


def test_truncated_bz2_entity_file(run_cli, tmp_path):
    """Before: exit code 1 with no message (click turns EOFError into an abort)."""
    import bz2

    text = "".join(json.dumps({"id": f"Q{i}", "label": f"entity {i}"}) + "\n" for i in range(20000)).encode()
    data = bz2.compress(text)
    code, err = build_from_lines(run_cli, tmp_path, data[: len(data) // 2], "entities.jsonl.bz2")
    assert_one_line_error(code, err, "entities.jsonl.bz2", "truncated or corrupt compressed stream")


@pytest.mark.parametrize(
    "row,reason",
    [("Q1\tnan\n", "score 'nan' is not a number"), ("\t0.5\n", "the entity ID is empty")],
)
def test_bad_popularity_file(run_cli, tmp_path, row, reason):
    scores = tmp_path / "scores.tsv"
    scores.write_text("Q1\t0.5\n" + row, encoding="utf8")
    code, err = build_from_lines(
        run_cli, tmp_path, (json.dumps(GOOD) + "\n").encode(), "entities.jsonl", "--popularity", scores
    )
    assert_one_line_error(code, err, "scores.tsv (line 2)", reason)


def test_empty_entity_id_in_mention_counts(run_cli, tmp_path):
    counts = tmp_path / "counts.tsv"
    counts.write_text("Paris\tQ1\t3\nParis\t \t2\n", encoding="utf8")
    code, err = build_from_lines(
        run_cli, tmp_path, (json.dumps(GOOD) + "\n").encode(), "entities.jsonl", "--mention-counts", counts
    )
    assert_one_line_error(code, err, "counts.tsv (line 2)", "the entity ID is empty")


@pytest.mark.parametrize("popularity", ["1.5", "-0.1", "NaN"])
def test_kb_add_refuses_popularity_off_the_percentile_scale(run_cli, tmp_path, popularity):
    """Before: clipped to [0, 1] (NaN: 0) without a word."""
    path = build_kb(tmp_path)
    source = tmp_path / "new.jsonl"
    source.write_text(f'{{"id": "X1", "label": "Lutetia", "popularity": {popularity}}}\n', encoding="utf8")
    code, _, err = run_cli("kb", "add", path, source)
    assert_one_line_error(code, err, "'popularity'")
    assert "X1" not in RefinedKB.load(path)
    source.write_text('{"id": "X1", "label": "Lutetia", "popularity": 1.0}\n', encoding="utf8")
    assert run_cli("kb", "add", path, source)[0] == 0
    kb = RefinedKB.load(path)
    assert kb.popularities([kb.index("X1")])[0] == 1.0


def test_bad_wikidata_dump_is_a_one_line_error(run_cli, tmp_path):
    item = {"type": "item", "id": "Q1", "labels": {"en": {"language": "en", "value": 7}}}
    dump = tmp_path / "dump.json"
    dump.write_text("[\n" + json.dumps(item) + "\n]\n", encoding="utf8")
    code, _, err = run_cli("kb", "build", "--wikidata", dump, "-o", tmp_path / "out", "--no-progress")
    assert_one_line_error(code, err, "dump.json (line 2)", "not a string: 7")


def test_bad_wikipedia_namespace_is_a_one_line_error(run_cli, tmp_path):
    source = write_jsonl(tmp_path / "entities.jsonl", [GOOD])
    xml = tmp_path / "pages.xml"
    xml.write_text(
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/">'
        "<page><title>Paris</title><ns>main</ns><revision><text>[[Paris]]</text></revision></page></mediawiki>",
        encoding="utf8",
    )
    code, _, err = run_cli(
        "kb", "build", "--entities", source, "--wikipedia", xml, "-o", tmp_path / "out", "--no-progress"
    )
    assert_one_line_error(code, err, "pages.xml", "the <ns> of page 'Paris' is not a number: 'main'")
