"""Training data from Wikipedia hyperlinks: `training/wikipedia_corpus.py` and the
`wikipedia-corpus` and `convert` commands; its links are the KB's anchors."""

import bz2
from collections import Counter
from pathlib import Path
from typing import List, Tuple

import pytest
import srsly

from spacy_refined.ids import RECORD_NIL
from spacy_refined.kb.builder import KBBuilder
from spacy_refined.kb.mediawiki import iter_pages
from spacy_refined.kb.store import RefinedKB
from spacy_refined.kb.wikipedia import read_wikipedia
from spacy_refined.training.wikipedia_corpus import read_redirects, wikitext_paragraphs, write_wikipedia_corpus

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {
    "shared-sample": ROOT.parent / "shared" / "data" / "wikipedia" / "enwiki-sample-pages-articles.xml.bz2",
    "embedded-sample": ROOT / "assets" / "enwiki-sample.xml.bz2",
}

ENTITIES = [
    {
        "id": "Q916",
        "label": "Angola",
        "title": "Angola",
        "description": "country in southern Africa",
        "types": ["Q6256"],
    },
    {"id": "Q3897", "label": "Luanda", "title": "Luanda", "description": "capital of Angola", "types": ["Q515"]},
    {
        "id": "Q97",
        "label": "Atlantic Ocean",
        "aliases": ["Atlantic"],
        "title": "Atlantic Ocean",
        "description": "ocean",
        "types": ["Q9430"],
    },
    {
        "id": "Q1065",
        "label": "United Nations",
        "aliases": ["UN"],
        "title": "United Nations",
        "description": "intergovernmental organization",
        "types": ["Q43229"],
    },
]
ARTICLE = """{{Infobox country|name=Angola|capital=[[Luanda]]}}
'''Angola''' ({{IPA|ænˈɡoʊlə}}), officially the Republic of Angola, is a country on the [[Atlantic Ocean|Atlantic]].<ref>{{cite web|url=http://x.org|title=[[Nope]]}}</ref> Its capital is [[Luanda]], and it is a member of the [[UN|United Nations]].
[[File:Flag of Angola.svg|thumb|The flag, with [[Luanda|the capital]]]]

== History ==
{| class="wikitable"
|-
| [[Luanda]] || 1576
|}
The [[Portuguese Empire|Portuguese]] founded [[Luanda]]s first fort &amp; a port on the [http://example.org Atlantic coast] in 1576 <!-- [[Hidden]] -->.
* A list item about [[Angola]] and the [[Atlantic Ocean]].

== See also ==
* [[Luanda]] and the [[Atlantic Ocean]] in a see-also list, long enough to count.

[[Category:Countries in Africa]]
[[fr:Angola]]
"""
# Links where the KB's and the corpus's parsers once disagreed: in templates,
# references and captions, piped, with trails, tags or templates in anchors,
# categories, interlanguage links and unclosed brackets.
MIXED_LINKS = """{{Infobox country|capital=[[Luanda]]|anthem={{lang|pt|[[Angola Avante|''Angola Avante!'']]}}}}
'''Angola''' borders the [[Atlantic Ocean|Atlantic]] and [[Namibia]]n deserts.<ref>See [[Nope]].</ref> It emits [[Carbon dioxide|CO<sub>2</sub>]] and lies at [[12th parallel south|{{nowrap|12° S}}]].
[[File:Flag of Angola.svg|thumb|The flag, with [[Luanda|the capital]]]] A [[UN|United Nations]] member.

An unclosed [[Kwanza and the [[Congo River]] after it.
[[Category:Countries in Africa]] [[fr:Angola]]
"""


def page(title: str, text: str = "", redirect: str = "") -> str:
    redirect_tag = f'<redirect title="{redirect}" />' if redirect else ""
    text = text or f"#REDIRECT [[{redirect}]]"
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<page><title>{title}</title><ns>0</ns>{redirect_tag}<revision><text>{escaped}</text></revision></page>"


def write_dump(path: Path, pages: List[str], siteinfo: str = "") -> Path:
    xml = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">' + siteinfo + "".join(pages) + "</mediawiki>"
    path.write_bytes(bz2.compress(xml.encode("utf8")))
    return path


def mentions_of(wikitext: str, skipped) -> List[Tuple[str, str]]:
    """(text, title) of the corpus's mentions of a page."""
    return [(p.text[start:end], title) for p in wikitext_paragraphs(wikitext, skipped) for start, end, title in p.links]


def assert_one_line_error(result: Tuple[int, str, str], *fragments: str) -> None:
    code, out, err = result
    assert code == 1, out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def titled_kb(tmp_path_factory) -> Path:
    """A KB whose entities have Wikipedia titles."""
    directory = tmp_path_factory.mktemp("titled")
    source = directory / "entities.jsonl"
    srsly.write_jsonl(source, ENTITIES)
    with KBBuilder(directory / "kb", n_types=10, min_type_count=1, max_type_share=1.0, progress=False) as builder:
        builder.add_entities_jsonl(source)
    return directory / "kb"


@pytest.fixture(scope="module")
def dump(tmp_path_factory) -> Path:
    """Two articles (one links to a redirect) and a redirect."""
    other = "The [[UN]] sent observers to [[Luanda]] and to the [[Atlantic Ocean|Atlantic]] coast, with [[Unknown page|someone]] else."
    pages = [page("Angola", ARTICLE), page("UN", redirect="United Nations"), page("Observers", other)]
    return write_dump(tmp_path_factory.mktemp("dump") / "wiki.xml.bz2", pages)


def test_wikitext_to_text_with_link_spans():
    paragraphs = wikitext_paragraphs(ARTICLE)
    texts = [p.text for p in paragraphs]
    assert texts[0] == (
        "Angola, officially the Republic of Angola, is a country on the Atlantic. "
        "Its capital is Luanda, and it is a member of the United Nations."
    )
    links = [[(p.text[s:e], target) for s, e, target in p.links] for p in paragraphs]
    assert links[0] == [("Atlantic", "Atlantic Ocean"), ("Luanda", "Luanda"), ("United Nations", "UN")]
    # link trails, entities, external links, comments; tables, files, categories and interlanguage links dropped
    assert texts[1] == "The Portuguese founded Luandas first fort & a port on the Atlantic coast in 1576."
    assert links[1] == [("Portuguese", "Portuguese Empire"), ("Luandas", "Luanda")]
    # list items are paragraphs; the see-also section is left out
    assert texts[2] == "A list item about Angola and the Atlantic Ocean."
    assert len(paragraphs) == 3


def test_kb_anchors_and_corpus_mentions_are_the_same_links(tmp_path):
    path = write_dump(tmp_path / "wiki.xml.bz2", [page("Angola", MIXED_LINKS)])
    [kb_page] = read_wikipedia(path)
    [dump_page] = iter_pages(path)
    # the KB counts every link, wherever it is
    assert kb_page.links == [
        ("Luanda", "Luanda"),
        ("Angola Avante!", "Angola Avante"),
        ("Atlantic", "Atlantic Ocean"),
        ("Namibian", "Namibia"),
        ("Nope", "Nope"),
        ("CO2", "Carbon dioxide"),
        ("the capital", "Luanda"),
        ("United Nations", "UN"),
        ("Congo River", "Congo River"),
    ]
    # the corpus those in the running text, with the same anchors
    mentions = mentions_of(dump_page.wikitext, dump_page.skipped)
    assert mentions == [
        ("Atlantic", "Atlantic Ocean"),
        ("Namibian", "Namibia"),
        ("CO2", "Carbon dioxide"),
        ("United Nations", "UN"),
    ]
    assert not Counter(mentions) - Counter(kb_page.links)
    texts = [p.text for p in wikitext_paragraphs(dump_page.wikitext, dump_page.skipped)]
    assert texts == [
        "Angola borders the Atlantic and Namibian deserts. It emits CO2 and lies at . A United Nations member.",
        "An unclosed",
    ]


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_corpus_mentions_are_kb_anchors_of_their_page(name):
    path = SAMPLES[name]
    if not path.exists():
        pytest.skip(f"{path} not available")
    anchors = {kb_page.title: Counter(kb_page.links) for kb_page in read_wikipedia(path) if not kb_page.redirect}
    n_mentions = 0
    for dump_page in iter_pages(path):
        if dump_page.redirect:
            continue
        mentions = Counter(mentions_of(dump_page.wikitext, dump_page.skipped))
        assert not mentions - anchors[dump_page.title], dump_page.title
        n_mentions += sum(mentions.values())
    assert n_mentions > 1000


def test_corpus_maps_links_through_redirects(dump, titled_kb, tmp_path):
    kb = RefinedKB.load(titled_kb)
    assert read_redirects(dump, kb) == {"UN": kb.index("Q1065")}
    counts = write_wikipedia_corpus(dump, kb, tmp_path, dev_share=0.5, min_chars=10)
    records = {r["id"]: r for split in ("train", "dev") for r in srsly.read_jsonl(tmp_path / f"{split}.jsonl")}
    assert sum(c["documents"] for c in counts.values()) == len(records) == 3
    assert "Angola#2" not in records  # its only KB link, "Luandas", has no KB candidates
    observers = records["Observers#1"]
    found = [(observers["text"][s:e], label["entity_id"]) for label in observers["labels"] for s, e in [label["span"]]]
    assert found == [("UN", "Q1065"), ("Luanda", "Q3897"), ("Atlantic", "Q97"), ("someone", RECORD_NIL)]


def test_namespaces_come_from_the_siteinfo(tmp_path):
    siteinfo = '<siteinfo><namespaces><namespace key="0" /><namespace key="6">Datei</namespace></namespaces></siteinfo>'
    text = "[[Datei:Karte.png|miniatur|Die Karte von [[Luanda]]]] [[Angola]] liegt am [[Atlantic Ocean|Atlantik]]."
    path = write_dump(tmp_path / "dewiki.xml.bz2", [page("Angola", text)], siteinfo)
    [dump_page] = iter_pages(path)
    [paragraph] = wikitext_paragraphs(dump_page.wikitext, dump_page.skipped)
    assert paragraph.text == "Angola liegt am Atlantik."
    assert [target for _, _, target in paragraph.links] == ["Angola", "Atlantic Ocean"]


def test_split_is_deterministic(dump, titled_kb, tmp_path):
    kb = RefinedKB.load(titled_kb)
    for name in ("a", "b"):
        write_wikipedia_corpus(dump, kb, tmp_path / name, dev_share=0.5, min_chars=10)
    for split in ("train", "dev"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()


def test_corpus_command_and_convert(dump, titled_kb, tmp_path, run_cli):
    code, out, err = run_cli("wikipedia-corpus", dump, titled_kb, tmp_path, "--dev-share", "0.5", "--min-chars", "10")
    assert code == 0, err
    assert "train:" in out and "dev:" in out
    code, out, err = run_cli("convert", tmp_path / "train.jsonl", tmp_path / "train.spacy", "--kb", titled_kb)
    assert code == 0, err


def test_empty_corpus_is_one_line_error(titled_kb, tmp_path, run_cli):
    unlinked = write_dump(
        tmp_path / "unlinked.xml.bz2", [page("Nothing", "A paragraph that links to [[Nowhere]], long enough.")]
    )
    assert_one_line_error(run_cli("wikipedia-corpus", unlinked, titled_kb, tmp_path / "out"), "corpus is empty")
    assert not (tmp_path / "out" / "train.jsonl").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_one_line_error(run_cli("convert", empty, tmp_path / "x.spacy"), "corpus is empty")


def test_missing_dump_is_one_line_error(titled_kb, tmp_path, run_cli):
    result = run_cli("wikipedia-corpus", tmp_path / "missing.xml.bz2", titled_kb, tmp_path)
    assert_one_line_error(result, "missing.xml.bz2", "does not exist")


def test_bad_el_record_is_one_line_error_naming_its_line(tmp_path, run_cli):
    records = tmp_path / "bad.jsonl"
    records.write_text(
        '{"text": "Luanda", "labels": [{"span": [0, 6]}]}\n{"text": "Luanda", "labels": [{"start": 0}]}\n'
    )
    assert_one_line_error(
        run_cli("convert", records, tmp_path / "bad.spacy"), "bad.jsonl (line 2)", "'span' [start, end]"
    )
    records.write_text('["Luanda"]\n')
    assert_one_line_error(run_cli("convert", records, tmp_path / "bad.spacy"), "bad.jsonl (line 1)", "'text' string")
    assert not (tmp_path / "bad.spacy").exists()
