import bz2
import gzip
import json
import pickle
from itertools import islice
from pathlib import Path

import pytest

from spacy_refined.kb.errors import DumpError
from spacy_refined.kb.wikidata import iter_dump_lines, parse_record, read_wikidata

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
MINI_DUMP = DATA_DIR / "wikidata" / "mini-latest-all.json.bz2"


def statement(prop, value, rank="normal", snaktype="value", datatype="wikibase-item"):
    snak = {"snaktype": snaktype, "property": prop, "datatype": datatype}
    if snaktype == "value":
        if datatype == "wikibase-item":
            snak["datavalue"] = {
                "value": {"entity-type": "item", "id": value},
                "type": "wikibase-entityid",
            }
        else:
            snak["datavalue"] = {"value": value, "type": "string"}
    return {"mainsnak": snak, "type": "statement", "rank": rank}


def terms(language, value):
    return {language: {"language": language, "value": value}}


ENTITIES = [
    {
        "type": "property",
        "datatype": "wikibase-item",
        "id": "P31",
        "labels": terms("en", "instance of"),
        "claims": {},
    },
    {
        "type": "item",
        "id": "Q1",
        "labels": {**terms("en", "Universe"), **terms("de", "Universum")},
        "descriptions": terms("en", "totality of space and time"),
        "aliases": {
            "en": [
                {"language": "en", "value": "Cosmos"},
                {"language": "en", "value": "Universe"},
                {"language": "en", "value": "Cosmos"},
            ],
            "mul": [{"language": "mul", "value": "Kosmos"}],
            "de": [{"language": "de", "value": "Weltall"}],
        },
        "claims": {
            "P31": [
                statement("P31", "Q36906466"),
                statement("P31", "Q1454986", rank="deprecated"),
                statement("P31", None, snaktype="novalue"),
            ],
            "P279": [
                statement("P279", "Q16686448", rank="preferred"),
                statement("P279", None, snaktype="somevalue"),
            ],
            "P793": [
                statement("P793", "Q323"),
                statement("P793", "Q999", rank="deprecated"),
                statement("P793", None, snaktype="novalue"),
            ],
            "P18": [statement("P18", "Universe.jpg", datatype="commonsMedia")],
        },
        "sitelinks": {
            "enwiki": {"site": "enwiki", "title": "Universe", "badges": []},
            "dewiki": {"site": "dewiki", "title": "Universum", "badges": []},
        },
    },
    {
        "type": "item",
        "id": "Q2",
        "labels": terms("de", "Erde"),
        "descriptions": terms("de", "dritter Planet"),
        "aliases": {"de": [{"language": "de", "value": "Terra"}]},
        "claims": {"P31": [statement("P31", "Q3504248")]},
        "sitelinks": {"dewiki": {"site": "dewiki", "title": "Erde", "badges": []}},
    },
    {
        "type": "item",
        "id": "Q3",
        "labels": terms("mul", "Homo sapiens"),
        "descriptions": [],
        "aliases": [],
        "claims": [],
        "sitelinks": [],
    },
    {
        "type": "lexeme",
        "id": "L1",
        "lemmas": terms("en", "cat"),
        "lexicalCategory": "Q1084",
        "claims": {},
        "forms": [],
        "senses": [],
    },
]


def dump_text(entities):
    lines = [json.dumps(entity, ensure_ascii=False) for entity in entities]
    return "[\n" + ",\n".join(lines) + "\n]\n"


def write(path, text, opener=open):
    with opener(path, "wb") as file_:
        file_.write(text.encode("utf8"))
    return path


@pytest.fixture
def dump_path(tmp_path):
    return write(tmp_path / "dump.json.bz2", dump_text(ENTITIES), bz2.open)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_iter_dump_lines_strips_array_layout(tmp_path, newline):
    text = dump_text(ENTITIES).replace("\n", newline) + newline
    path = write(tmp_path / "dump.json", text)
    lines = list(iter_dump_lines(path))
    assert [line_no for line_no, _ in lines] == [2, 3, 4, 5, 6]
    assert all(line.startswith(b"{") and line.endswith(b"}") for _, line in lines)
    assert json.loads(lines[-1][1])["id"] == "L1"


@pytest.mark.parametrize(
    "name,opener",
    [
        ("dump.json", open),
        ("dump.json.bz2", bz2.open),
        ("dump.json.gz", gzip.open),
        ("mislabelled.json", bz2.open),
        ("mislabelled.bz2", gzip.open),
    ],
)
def test_compression_formats_give_same_records(tmp_path, dump_path, name, opener):
    path = write(tmp_path / name, dump_text(ENTITIES), opener)
    assert list(read_wikidata(path)) == list(read_wikidata(dump_path))


def test_read_wikidata_skips_lexemes(dump_path):
    records = list(read_wikidata(dump_path))
    assert [(r.id, r.kind) for r in records] == [
        ("P31", "property"),
        ("Q1", "item"),
        ("Q2", "item"),
        ("Q3", "item"),
    ]


def test_parse_record_fields():
    record = parse_record(json.dumps(ENTITIES[1]).encode("utf8"))
    assert record.id == "Q1"
    assert record.kind == "item"
    assert record.label == "Universe"
    assert record.description == "totality of space and time"
    # Deduplicated, label removed, "mul" aliases included.
    assert record.aliases == ["Cosmos", "Kosmos"]
    assert record.sitelink_title == "Universe"
    assert record.sitelink_count == 2


def test_deprecated_and_novalue_claims_are_ignored():
    record = parse_record(json.dumps(ENTITIES[1]).encode("utf8"))
    assert record.instance_of == ["Q36906466"]
    assert record.subclass_of == ["Q16686448"]
    # P31/P279 and non-item claims are not facts.
    assert record.facts == [("P793", "Q323")]


def test_language_and_site_options():
    line = json.dumps(ENTITIES[1]).encode("utf8")
    record = parse_record(line, language="de", site="dewiki")
    assert record.label == "Universum"
    assert record.description is None
    assert record.aliases == ["Weltall", "Kosmos"]
    assert record.sitelink_title == "Universum"


def test_item_without_english_terms():
    record = parse_record(json.dumps(ENTITIES[2]).encode("utf8"))
    assert record.label is None
    assert record.description is None
    assert record.aliases == []
    assert record.sitelink_title is None
    assert record.sitelink_count == 1
    assert record.instance_of == ["Q3504248"]


def test_multilingual_label_fallback_and_empty_maps():
    record = parse_record(json.dumps(ENTITIES[3]).encode("utf8"))
    assert record.label == "Homo sapiens"
    assert record.description is None
    assert record.aliases == []
    assert record.sitelink_count == 0


def test_parse_record_rejects_bad_json():
    with pytest.raises(ValueError):
        parse_record(b'{"type": "item", "id": "Q1"')
    with pytest.raises(ValueError):
        parse_record(b'{"type": "item"}')


@pytest.mark.parametrize("suffix,opener", [(".bz2", bz2.open), (".gz", gzip.open)])
def test_truncated_compressed_dump(tmp_path, suffix, opener):
    entities = [{**ENTITIES[1], "id": f"Q{i}"} for i in range(1, 200)]
    full = write(tmp_path / f"full.json{suffix}", dump_text(entities), opener)
    data = full.read_bytes()
    path = tmp_path / f"truncated.json{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DumpError, match="truncated") as excinfo:
        list(read_wikidata(path))
    assert str(path) in str(excinfo.value)
    assert "line" in str(excinfo.value)


def test_missing_closing_bracket(tmp_path):
    text = dump_text(ENTITIES[:3]).rstrip().rstrip("]")
    path = write(tmp_path / "dump.json", text)
    with pytest.raises(DumpError, match="line 4 without the closing") as excinfo:
        list(read_wikidata(path))
    assert str(path) in str(excinfo.value)


def test_content_after_closing_bracket(tmp_path):
    path = write(tmp_path / "dump.json", dump_text(ENTITIES) + "[\n")
    with pytest.raises(DumpError, match="line 8.*after the closing"):
        list(iter_dump_lines(path))


def test_cut_inside_last_line_reports_truncation(tmp_path):
    text = dump_text(ENTITIES)
    path = write(tmp_path / "dump.json", text[: len(text) - 40])
    with pytest.raises(DumpError, match="without the closing"):
        list(read_wikidata(path))


def test_dump_must_start_with_bracket(tmp_path):
    path = write(tmp_path / "dump.json", dump_text(ENTITIES)[2:])
    with pytest.raises(DumpError, match="line 1.*does not start"):
        list(iter_dump_lines(path))


@pytest.mark.parametrize("processes", [1, 2])
def test_corrupt_json_line_is_reported(tmp_path, processes):
    lines = dump_text(ENTITIES).split("\n")
    lines[3] = lines[3].replace('"type": "item"', '"type": "item",,')
    path = write(tmp_path / "dump.json", "\n".join(lines))
    with pytest.raises(DumpError) as excinfo:
        list(read_wikidata(path, processes=processes, batch_size=2))
    assert excinfo.value.line == 4
    assert str(path) in str(excinfo.value)
    assert "line 4" in str(excinfo.value)


def test_stopping_early_with_processes(dump_path):
    records = read_wikidata(dump_path, processes=2, batch_size=1)
    assert next(records).id == "P31"
    records.close()


def test_dump_error_message_and_pickling():
    error = DumpError("dump.json.bz2", "bad", line=3, offset=120)
    assert str(error) == "dump.json.bz2 (line 3, byte offset 120): bad"
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)
    assert copy.line == 3


@pytest.fixture(scope="module")
def mini_records():
    if not MINI_DUMP.exists():
        pytest.skip(f"{MINI_DUMP} not available")
    return list(read_wikidata(MINI_DUMP))


def test_mini_dump_counts(mini_records):
    kinds = [record.kind for record in mini_records]
    assert kinds.count("property") == 722
    assert kinds.count("item") == 71771
    # Properties come first in the dump.
    assert set(kinds[:722]) == {"property"}


def test_mini_dump_known_items(mini_records):
    by_id = {record.id: record for record in mini_records}
    paris = by_id["Q90"]
    assert paris.label == "Paris"
    assert paris.description == "capital city of France"
    assert "City of Light" in paris.aliases
    assert "Q5119" in paris.instance_of  # capital city
    assert paris.sitelink_title == "Paris"
    assert ("P17", "Q142") in paris.facts  # country: France
    china = by_id["Q148"]
    assert china.sitelink_title == "China"
    assert china.sitelink_count == 332
    # The deprecated statement "shares border with: Soviet Union" is left out.
    assert ("P47", "Q15180") not in china.facts
    assert by_id["P31"].label == "instance of"


def test_mini_dump_processes_give_same_records(tmp_path):
    if not MINI_DUMP.exists():
        pytest.skip(f"{MINI_DUMP} not available")
    lines = [line for _, line in islice(iter_dump_lines(MINI_DUMP), 15000)]
    path = tmp_path / "slice.json"
    path.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    records = list(read_wikidata(path))
    assert len(records) == 15000
    assert list(read_wikidata(path, processes=2, batch_size=250)) == records


@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("suffix,opener", [(".bz2", bz2.open), (".gz", gzip.open)])
def test_parallel_decompressor_and_fallback_agree(tmp_path, monkeypatch, parallel, suffix, opener):
    import shutil

    from spacy_refined import util

    tool = util.PARALLEL_DECOMPRESSORS[b"BZh" if suffix == ".bz2" else b"\x1f\x8b"][0]
    if parallel and not shutil.which(tool):
        pytest.skip(f"{tool} not installed")
    if not parallel:
        monkeypatch.setattr(util.shutil, "which", lambda name: None)
    text = dump_text([{**ENTITIES[1], "id": f"Q{i}"} for i in range(1, 300)])
    path = write(tmp_path / f"dump.json{suffix}", text, opener)
    with util.open_binary(path) as file_:
        assert file_.read() == text.encode("utf8")
    # The content, not the name, tells the compression.
    misnamed = tmp_path / "dump.json"
    misnamed.write_bytes(path.read_bytes())
    with util.open_binary(misnamed) as file_:
        assert file_.read() == text.encode("utf8")
    with util.open_text(misnamed) as file_:
        assert file_.read() == text
    truncated = tmp_path / f"truncated.json{suffix}"
    truncated.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DumpError, match="truncated") as excinfo:
        list(read_wikidata(truncated))
    assert str(truncated) in str(excinfo.value)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"id": 1}, "'id' is not a string: 1"),
        ({"id": ""}, "the entity 'id' is empty"),
        ({"labels": terms("en", ["Universe"])}, "a label or description is not a string"),
        ({"descriptions": terms("en", 3)}, "a label or description is not a string: 3"),
        ({"aliases": {"en": [{"language": "en", "value": None}]}}, "an alias is not a string: None"),
        ({"sitelinks": {"enwiki": {"site": "enwiki", "title": 42}}}, "the sitelink title is not a string: 42"),
        ({"claims": {"P31": [statement("P31", 5)]}}, "a P31 value is not a string: 5"),
    ],
)
@pytest.mark.parametrize("processes", [1, 2])
def test_non_string_values_are_reported_with_their_line(tmp_path, change, reason, processes):
    item = {**ENTITIES[1], **change}
    path = write(tmp_path / "dump.json", dump_text([ENTITIES[0], item]))
    with pytest.raises(DumpError, match="line 3") as excinfo:
        list(read_wikidata(path, processes=processes))
    assert reason in str(excinfo.value)
