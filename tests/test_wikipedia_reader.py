import bz2
import gzip
from pathlib import Path

import pytest

from spacy_refined.kb.errors import DumpError
from spacy_refined.kb.mediawiki import Link, iter_links, iter_pages
from spacy_refined.kb.normalize import normalize_title
from spacy_refined.kb.wikipedia import parse_links, read_wikipedia

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLE_DUMP = DATA_DIR / "wikipedia" / "enwiki-sample-pages-articles.xml.bz2"

EXPORT_XML = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11">
  <siteinfo>
    <sitename>Testwiki</sitename>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="1" case="first-letter">Talk</namespace>
      <namespace key="14" case="first-letter">Kategorie</namespace>
    </namespaces>
  </siteinfo>
  <page>
    <title>Paris</title>
    <ns>0</ns>
    <id>1</id>
    <revision>
      <id>10</id>
      <text xml:space="preserve">old text with [[Old link]]</text>
    </revision>
    <revision>
      <id>11</id>
      <text xml:space="preserve">'''Paris''' is the capital of [[France]] &amp;amp; the [[Île-de-France|region]]'s seat.
[[Kategorie:Cities]] [[Category:Not a namespace here]] [[de:Paris]]</text>
    </revision>
  </page>
  <page>
    <title>City_of_Light</title>
    <ns>0</ns>
    <id>2</id>
    <redirect title="Paris#Name" />
    <revision>
      <id>20</id>
      <text xml:space="preserve">#REDIRECT [[Paris#Name]]</text>
    </revision>
  </page>
  <page>
    <title>Talk:Paris</title>
    <ns>1</ns>
    <id>3</id>
    <revision>
      <id>30</id>
      <text xml:space="preserve">See [[Paris]].</text>
    </revision>
  </page>
</mediawiki>
"""


def write(path, text, opener=open):
    with opener(path, "wb") as file_:
        file_.write(text.encode("utf8"))
    return path


@pytest.mark.parametrize(
    "wikitext,expected",
    [
        ("[[Paris]]", [("Paris", "Paris")]),
        ("[[Paris|the capital]]", [("the capital", "Paris")]),
        ("[[Paris#History|history of Paris]]", [("history of Paris", "Paris")]),
        ("[[Paris#History]]", [("Paris#History", "Paris")]),
        ("[[cat]]s and [[dog|hound]]s", [("cats", "Cat"), ("hounds", "Dog")]),
        (
            "[[Paris]]'s and [[Lyon]]. [[Nice]]-ish",
            [("Paris", "Paris"), ("Lyon", "Lyon"), ("Nice", "Nice")],
        ),
        ("[[:Paris]]", [("Paris", "Paris")]),
        ("[[new_york_City]]", [("new_york_City", "New york City")]),
        ("[[AT&amp;T|AT&amp;T Inc.]]", [("AT&T Inc.", "AT&T")]),
        ("[[Star Trek: Voyager]]", [("Star Trek: Voyager", "Star Trek: Voyager")]),
        ("[[Paris|''the'' '''capital''']]", [("the capital", "Paris")]),
        ("[[Paris|the\n   capital ]]", [("the capital", "Paris")]),
        ("[[Paris|a [b] c]]", [("a [b] c", "Paris")]),
        ("[[A]] [[B|b]] [[C]]", [("A", "A"), ("b", "B"), ("C", "C")]),
        # what the reader sees: no tags, templates or link brackets
        ("[[Carbon dioxide|CO<sub>2</sub>]]", [("CO2", "Carbon dioxide")]),
        ("[[Paris|the {{small|old}} capital]]", [("the capital", "Paris")]),
        ("[[Paris|{{nowrap|the capital}}]]", []),
        # a link can't hold a link: the inner one is the link
        ("[[Paris|a [[b]] c]]", [("b", "B")]),
        # unclosed brackets are text, and the links after them are links
        ("[[Paris [[Lyon]] and [[Nice|the city]]", [("Lyon", "Lyon"), ("the city", "Nice")]),
        ("[[Paris<b>]] [[Par]is]]", []),
    ],
)
def test_parse_links(wikitext, expected):
    assert parse_links(wikitext) == expected


def test_parse_links_keeps_links_in_file_captions():
    wikitext = (
        "[[File:Eiffel.jpg|thumb|upright|The [[Eiffel Tower]] in [[Paris|the city]]]]"
        " [[Image:Louvre.jpg|thumb|The [[Louvre]]]]"
    )
    assert parse_links(wikitext) == [
        ("Eiffel Tower", "Eiffel Tower"),
        ("the city", "Paris"),
        ("Louvre", "Louvre"),
    ]


@pytest.mark.parametrize(
    "wikitext",
    [
        "[[Category:Cities]]",
        "[[category:Cities]]",
        "[[:Category:Cities]]",
        "[[File:Paris.jpg|thumb]]",
        "[[Image:Paris.jpg]]",
        "[[Wikipedia:About]]",
        "[[WP:NPOV|neutral]]",
        "[[Template:Infobox]]",
        "[[Help:Contents]]",
        "[[Portal:France]]",
        "[[Draft:Paris]]",
        "[[User talk:Someone]]",
        "[[fr:Paris]]",
        "[[zh-yue:巴黎]]",
        "[[simple:Paris]]",
        "[[:de:Paris|Paris]]",
        "[[wikt:capital|capital]]",
        "[[#History]]",
        "[[#History|history]]",
        "[[Paris|]]",
        "[[ |Paris]]",
        "[[{{PAGENAME}}]]",
        "<!-- [[Paris]] -->",
        "<nowiki>[[Paris]]</nowiki>",
    ],
)
def test_parse_links_skips(wikitext):
    assert parse_links(wikitext) == []


def test_iter_links_offsets_and_nesting():
    wikitext = "A [[dog]]s, [[File:x.jpg|thumb|a [[cat]]]] and [[Category:Pets]]. [[Paris"
    links = list(iter_links(wikitext))
    assert links == [
        Link(2, 10, "Dog", "dogs", nested=False),
        Link(12, 42, "", "", nested=False),
        Link(33, 40, "Cat", "cat", nested=True),
        Link(47, 64, "", "", nested=False),
        Link(66, 73, "", "", nested=False),
    ]
    assert wikitext[2:10] == "[[dog]]s" and wikitext[33:40] == "[[cat]]"


def test_parse_links_namespace_names():
    link = ("Kategorie:Städte", "Kategorie:Städte")
    assert parse_links("[[Kategorie:Städte]]") == [link]
    assert parse_links("[[Kategorie:Städte]]", namespaces=["Kategorie"]) == []


@pytest.mark.parametrize(
    "title,expected",
    [
        ("Paris", "Paris"),
        ("new_york_city", "New york city"),
        ("  Foo   bar\t baz ", "Foo bar baz"),
        ("Paris#History", "Paris"),
        ("AT&amp;T", "AT&T"),
        ("Caf&eacute;", "Café"),
        ("éclair", "Éclair"),
        ("iPod", "IPod"),
        ("#History", ""),
        ("", ""),
    ],
)
def test_normalize_title(title, expected):
    assert normalize_title(title) == expected


@pytest.mark.parametrize(
    "name,opener",
    [
        ("export.xml", open),
        ("export.xml.bz2", bz2.open),
        ("export.xml.gz", gzip.open),
    ],
)
def test_read_wikipedia_export(tmp_path, name, opener):
    path = write(tmp_path / name, EXPORT_XML, opener)
    pages = list(read_wikipedia(path))
    assert [(page.title, page.namespace) for page in pages] == [
        ("Paris", 0),
        ("City of Light", 0),
    ]
    paris, city_of_light = pages
    assert paris.redirect is None
    # The latest revision; namespace names come from <siteinfo>.
    assert paris.links == [
        ("France", "France"),
        ("region", "Île-de-France"),
        ("Category:Not a namespace here", "Category:Not a namespace here"),
    ]
    assert city_of_light.redirect == "Paris"
    assert city_of_light.links == [("Paris#Name", "Paris")]


def test_read_wikipedia_namespaces(tmp_path):
    path = write(tmp_path / "export.xml", EXPORT_XML)
    pages = list(read_wikipedia(path, namespaces=(1,)))
    assert [(page.title, page.links) for page in pages] == [("Talk:Paris", [("Paris", "Paris")])]


def test_iter_pages(tmp_path):
    path = write(tmp_path / "export.xml", EXPORT_XML)
    pages = list(iter_pages(path, namespaces=(0, 1)))
    assert [(page.title, page.ns, page.redirect) for page in pages] == [
        ("Paris", 0, None),
        ("City of Light", 0, "Paris"),
        ("Talk:Paris", 1, None),
    ]
    assert pages[0].wikitext.startswith("'''Paris''' is the capital")
    # link prefixes from the <siteinfo>: "Kategorie" is a namespace, "Category" is not
    assert "kategorie" in pages[0].skipped and "category" not in pages[0].skipped


def test_iter_pages_infers_a_missing_ns_from_the_title(tmp_path):
    pages = "".join(
        f"<page><title>{title}</title><revision><text>x</text></revision></page>"
        for title in ("Paris", "Talk:Paris", "Kategorie:Cities", "Category:Cities")
    )
    path = write(tmp_path / "export.xml", EXPORT_XML.replace("</mediawiki>", pages + "</mediawiki>"))
    inferred = [(page.title, page.ns) for page in iter_pages(path, namespaces=(0, 1, 14)) if page.wikitext == "x"]
    assert inferred == [("Paris", 0), ("Talk:Paris", 1), ("Kategorie:Cities", 14), ("Category:Cities", 0)]


def test_not_a_mediawiki_export_namespace(tmp_path):
    path = write(tmp_path / "other.xml", '<mediawiki xmlns="http://example.org/other/"><page/></mediawiki>')
    with pytest.raises(DumpError, match="not a MediaWiki XML export"):
        list(iter_pages(path))


def test_truncated_bz2_raises(tmp_path):
    pages = "".join(
        f"<page><title>P{i}</title><ns>0</ns><revision><text>[[Link {i}]] {i * 7919}</text></revision></page>\n"
        for i in range(3000)
    )
    text = EXPORT_XML.replace("</mediawiki>", pages + "</mediawiki>")
    full = write(tmp_path / "full.xml.bz2", text, bz2.open)
    data = full.read_bytes()
    path = tmp_path / "truncated.xml.bz2"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DumpError, match="truncated or corrupt compressed") as excinfo:
        list(read_wikipedia(path))
    assert str(path) in str(excinfo.value)


def test_truncated_xml_raises(tmp_path):
    text = EXPORT_XML[: EXPORT_XML.index("<title>Talk:Paris")]
    path = write(tmp_path / "truncated.xml", text)
    with pytest.raises(DumpError) as excinfo:
        list(read_wikipedia(path))
    assert str(path) in str(excinfo.value)
    assert excinfo.value.line == text.count("\n") + 1
    assert "line" in str(excinfo.value)


def test_not_a_mediawiki_export(tmp_path):
    path = write(tmp_path / "other.xml", "<rss><channel/></rss>")
    with pytest.raises(DumpError, match="not a MediaWiki XML export"):
        list(read_wikipedia(path))


@pytest.fixture(scope="module")
def sample_pages():
    if not SAMPLE_DUMP.exists():
        pytest.skip(f"{SAMPLE_DUMP} not available")
    return list(read_wikipedia(SAMPLE_DUMP, namespaces=(0, 4)))


def test_sample_counts(sample_pages):
    assert len(sample_pages) == 206
    assert sum(page.namespace == 4 for page in sample_pages) == 1
    assert sum(page.redirect is not None for page in sample_pages) == 100
    n_links = sum(len(page.links) for page in sample_pages)
    # Fewer than the [[...]] article links in the texts: a few are
    # section-only, inside comments or have empty anchors.
    assert 29500 <= n_links <= 30482


def test_sample_pages(sample_pages):
    by_title = {page.title: page for page in sample_pages}
    assert by_title["AccessibleComputing"].redirect == "Computer accessibility"
    anarchism = by_title["Anarchism"]
    assert anarchism.redirect is None
    assert ("political philosophy", "Political philosophy") in anarchism.links
    targets = {target for page in sample_pages for _, target in page.links}
    assert not any(t.startswith(("Category:", "File:", "Image:")) for t in targets)


def test_sample_default_namespace(sample_pages):
    pages = list(read_wikipedia(SAMPLE_DUMP))
    assert len(pages) == 205
    assert [page.title for page in pages] == [page.title for page in sample_pages if page.namespace == 0]


@pytest.mark.parametrize(
    "old,new,reason",
    [
        ("<ns>1</ns>", "<ns>talk</ns>", "the <ns> of page 'Talk:Paris' is not a number: 'talk'"),
        ('<namespace key="1"', '<namespace key="one"', "the key of namespace 'Talk' is not a number: 'one'"),
    ],
)
def test_namespace_that_is_not_a_number(tmp_path, old, new, reason):
    path = write(tmp_path / "export.xml", EXPORT_XML.replace(old, new))
    with pytest.raises(DumpError) as excinfo:
        list(iter_pages(path))
    assert str(excinfo.value) == f"{path}: {reason}"
