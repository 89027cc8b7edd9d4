"""The spaCy-free KB reader: keys equal to spaCy's, answers equal to
`RefinedKB`'s, `kb lookup` without importing spaCy; and `kb add` errors that
name the file and line."""

import json
import random
import subprocess
import sys

import numpy as np
import pytest
from spacy.strings import SYMBOLS_BY_STR, get_string_id

from spacy_refined.kb import KBReader, RefinedKB, hashing


def test_string_key_is_spacys_string_id():
    rng = random.Random(0)
    alphabet = "abcXYZ019 _-.'éüßçÅ北京東京😀\u0301\u200b\x00"
    texts = ["", "Paris", "Zürich", "北京", "a" * 5000, "Q42", "root", "PERSON", "meta", "number", "Root"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))) for _ in range(20_000)]
    texts += list(SYMBOLS_BY_STR)
    assert [hashing.string_key(t) for t in texts] == [get_string_id(t) for t in texts]


def test_symbols_are_read_from_spacys_declaration():
    assert hashing.symbols() == dict(SYMBOLS_BY_STR)
    declaration = "cdef enum symbol_t:\n    NIL\n    A\n\n    # a comment\n    B = 7\n    C\n\ncdef other:\n    D\n"
    assert hashing.symbols_from_declaration(declaration) == {"": 0, "A": 1, "B": 7, "C": 8}


def test_reader_answers_as_the_knowledge_base(kb_path):
    reader, kb = KBReader.load(kb_path), RefinedKB.load(kb_path)
    assert isinstance(kb, KBReader) and len(reader) == len(kb)
    mentions = ["Paris", "the U.S.", "Lutetia", "nowhere", ""]
    ours, theirs = reader.candidates(mentions), kb.candidates(mentions)
    for a, b in zip([ours.offsets, ours.entities, ours.priors], [theirs.offsets, theirs.entities, theirs.priors]):
        assert np.array_equal(a, b)
    everything = np.arange(len(kb))
    assert reader.entity_ids(everything) == kb.entity_ids(everything)
    assert [reader.entity(i) for i in everything] == [kb.entity(i) for i in everything]
    assert np.array_equal(reader.find_titles(["Paris", "nowhere"]), kb.find_titles(["Paris", "nowhere"]))


LOOKUP = """
import sys
from spacy_refined.cli import main
sys.argv = ["spacy-refined", "kb", "lookup", sys.argv[1], "Paris", "--json"]
main()
print(sorted(m for m in ("spacy", "thinc", "torch") if m in sys.modules))
"""


def test_kb_lookup_imports_neither_spacy_nor_torch(kb_path):
    out = subprocess.run([sys.executable, "-c", LOOKUP, str(kb_path)], capture_output=True, text=True, check=True)
    answer, _, imported = out.stdout.rpartition("\n[")
    kb = RefinedKB.load(kb_path)
    assert json.loads(answer)["candidates"][0]["id"] == kb.entity_id(int(kb.candidates(["Paris"])[0][0][0]))
    assert imported.strip() == "]", f"kb lookup imported [{imported.strip()}"


@pytest.mark.parametrize(
    "line,error",
    [
        ('{"id": "X2", "label": "Y", "popularity": 2}', "'popularity' must lie in [0, 1], got 2"),
        ('{"id": "X2", "types": ["Q999"]}', "entity 'X2': types ['Q999'] are not in the KB's type inventory"),
        ('{"id": "Q90", "label": "Paris"}', "entity 'Q90' is already in the KB"),
        ('{"id": "X2", "label": ', "not valid JSON"),
    ],
)
def test_kb_add_errors_name_the_file_and_line(tmp_path, run_cli, line, error):
    from conftest import ENTITIES, build_kb

    path = build_kb(tmp_path / "kb", ENTITIES)
    before = (path / "manifest.json").read_bytes()
    entities = tmp_path / "new.jsonl"
    entities.write_text('{"id": "X1", "label": "X"}\n\n' + line + "\n", encoding="utf8")
    code, _, err = run_cli("kb", "add", path, entities)
    assert code == 1 and err.startswith(f"error: {entities} (line 3): ") and error in err, err
    assert len(err.strip().splitlines()) == 1
    assert (path / "manifest.json").read_bytes() == before
