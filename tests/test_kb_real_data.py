"""`kb build` on the real development dumps (skipped when ../shared/data is absent)."""

from pathlib import Path

import numpy as np
import pytest

from spacy_refined.kb import RefinedKB
from spacy_refined.kb.builder import KBBuilder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WIKIDATA = DATA / "wikidata" / "mini-latest-all.json.bz2"
WIKIPEDIA = DATA / "wikipedia" / "enwiki-sample-pages-articles.xml.bz2"
PAGERANK = DATA / "wikidata" / "pagerank.tsv.gz"

pytestmark = pytest.mark.skipif(not WIKIDATA.exists(), reason="development data (../shared/data) not present")


@pytest.fixture(scope="module")
def kb(tmp_path_factory) -> RefinedKB:
    output = tmp_path_factory.mktemp("real") / "kb"
    with KBBuilder(output, progress=False) as builder:
        builder.add_wikidata(WIKIDATA, processes=2)
        builder.add_wikipedia(WIKIPEDIA)
        builder.add_popularity(PAGERANK)
    return RefinedKB.load(output)


def ids(kb, mention, k=10):
    return [kb.entity_id(e) for e in kb.candidates([mention], k)[0][0]]


def test_counts(kb):
    assert len(kb) == 71_771
    assert len(kb.type_ids) == 1400
    assert kb.manifest["counts"]["facts"] > 50_000
    sources = {s["kind"]: s for s in kb.manifest["build"]["sources"]}
    assert sources["wikidata"]["entities"] == 71_771
    assert sources["wikipedia"]["links"] > 25_000


def test_paris_and_england(kb):
    assert ids(kb, "Paris")[0] == "Q90"
    england = ids(kb, "England")
    assert len(england) >= 3 and "Q21" in england
    assert ids(kb, "the U.K.")[0] == ids(kb, "UK")[0]


def test_entity_content(kb):
    paris = kb.index("Q90")
    assert kb.label(paris) == "Paris"
    assert "capital" in kb.description(paris)
    types = set(kb.types(paris))
    assert types, "Paris has types"
    assert any(kb.type_labels[kb.type_ids.index(t)] in {"city", "big city", "capital"} for t in types)
    subjects, relations, objects = kb.facts_about(np.array([paris]))
    assert len(subjects) > 0 and set(subjects.tolist()) == {paris}


def test_wikipedia_anchors_and_redirects(kb, tmp_path):
    without = tmp_path / "without"
    with KBBuilder(without, progress=False) as builder:
        builder.add_wikidata(WIKIDATA)
        builder.add_popularity(PAGERANK)
    plain = RefinedKB.load(without)
    # 15 anchors "China" -> the People's Republic outweigh the label evidence of the cultural region.
    assert ids(plain, "China")[0] == "Q29520"
    assert ids(kb, "China")[0] == "Q148"
    # Redirect titles become aliases of their targets.
    assert ids(plain, "AdolfHitler") == []
    assert ids(kb, "AdolfHitler") == ["Q352"]


def test_people_have_the_person_type(kb):
    obama = kb.find(["Q76"])[0]
    if obama >= 0:
        assert "Q5" in kb.types(obama)


def test_wikipedia_titles(kb):
    paris = kb.index("Q90")
    assert kb.title(paris) == "Paris"
    assert kb.find_titles(["Paris", "paris", "No such page title", ""]).tolist() == [paris, paris, -1, -1]
