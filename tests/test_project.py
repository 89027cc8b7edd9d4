"""The spaCy project: Wikipedia training data, project commands, project.yml, bad input."""
import bz2
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import spacy
import srsly

from spacy_refined.kb import KBBuilder
from spacy_refined.kb.store import RefinedKB
from spacy_refined.training.wikipedia_corpus import (
    NIL_ID,
    read_articles,
    read_redirects,
    wikitext_paragraphs,
    write_wikipedia_corpus,
)

ROOT = Path(__file__).resolve().parents[1]

ENTITIES = [
    {"id": "Q916", "label": "Angola", "title": "Angola", "description": "country in southern Africa", "types": ["Q6256"]},
    {"id": "Q3897", "label": "Luanda", "title": "Luanda", "description": "capital of Angola", "types": ["Q515"]},
    {"id": "Q97", "label": "Atlantic Ocean", "aliases": ["Atlantic"], "title": "Atlantic Ocean", "description": "ocean", "types": ["Q9430"]},
    {"id": "Q1065", "label": "United Nations", "aliases": ["UN"], "title": "United Nations", "description": "intergovernmental organization", "types": ["Q43229"]},
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


def page(title: str, text: str = "", redirect: str = "") -> str:
    redirect_tag = f'<redirect title="{redirect}" />' if redirect else ""
    text = text or f"#REDIRECT [[{redirect}]]"
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<page><title>{title}</title><ns>0</ns>{redirect_tag}<revision><text>{escaped}</text></revision></page>"


def write_dump(path: Path, pages: List[str], siteinfo: str = "") -> Path:
    xml = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">' + siteinfo + "".join(pages) + "</mediawiki>"
    path.write_bytes(bz2.compress(xml.encode("utf8")))
    return path


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


def run_cli(*args: str, module: str = "spacy_refined", cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


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


def test_corpus_maps_links_through_redirects(dump, titled_kb, tmp_path):
    kb = RefinedKB.load(titled_kb)
    assert read_redirects(dump, kb) == {"UN": kb.index("Q1065")}
    counts = write_wikipedia_corpus(dump, kb, tmp_path, dev_share=0.5, min_chars=10)
    records = {r["id"]: r for split in ("train", "dev") for r in srsly.read_jsonl(tmp_path / f"{split}.jsonl")}
    assert sum(c["documents"] for c in counts.values()) == len(records) == 3
    assert "Angola#2" not in records  # its only KB link, "Luandas", has no KB candidates
    observers = records["Observers#1"]
    found = [(observers["text"][s:e], label["entity_id"]) for label in observers["labels"] for s, e in [label["span"]]]
    assert found == [("UN", "Q1065"), ("Luanda", "Q3897"), ("Atlantic", "Q97"), ("someone", NIL_ID)]


def test_namespaces_come_from_the_siteinfo(tmp_path):
    siteinfo = '<siteinfo><namespaces><namespace key="0" /><namespace key="6">Datei</namespace></namespaces></siteinfo>'
    text = "[[Datei:Karte.png|miniatur|Die Karte von [[Luanda]]]] [[Angola]] liegt am [[Atlantic Ocean|Atlantik]]."
    dump = write_dump(tmp_path / "dewiki.xml.bz2", [page("Angola", text)], siteinfo)
    [article] = read_articles(dump)
    [paragraph] = wikitext_paragraphs(article.wikitext, article.skipped)
    assert paragraph.text == "Angola liegt am Atlantik."
    assert [target for _, _, target in paragraph.links] == ["Angola", "Atlantic Ocean"]


def test_split_is_deterministic(dump, titled_kb, tmp_path):
    kb = RefinedKB.load(titled_kb)
    for name in ("a", "b"):
        write_wikipedia_corpus(dump, kb, tmp_path / name, dev_share=0.5, min_chars=10)
    for split in ("train", "dev"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()


def test_corpus_command_and_convert(dump, titled_kb, tmp_path):
    result = run_cli("wikipedia-corpus", dump, titled_kb, tmp_path, "--dev-share", "0.5", "--min-chars", "10")
    assert result.returncode == 0, result.stderr
    assert "train:" in result.stdout and "dev:" in result.stdout
    result = run_cli("convert", tmp_path / "train.jsonl", tmp_path / "train.spacy", "--kb", titled_kb)
    assert result.returncode == 0, result.stderr


def test_empty_corpus_is_one_line_error(titled_kb, tmp_path):
    unlinked = write_dump(tmp_path / "unlinked.xml.bz2", [page("Nothing", "A paragraph that links to [[Nowhere]], long enough.")])
    assert_one_line_error(run_cli("wikipedia-corpus", unlinked, titled_kb, tmp_path / "out"), "corpus is empty")
    assert not (tmp_path / "out" / "train.jsonl").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_one_line_error(run_cli("convert", empty, tmp_path / "x.spacy"), "corpus is empty")


def test_missing_inputs_are_one_line_errors(titled_kb, tmp_path):
    assert_one_line_error(run_cli("wikipedia-corpus", tmp_path / "missing.xml.bz2", titled_kb, tmp_path), "missing.xml.bz2", "does not exist")
    assert_one_line_error(run_cli("kb", "build", "--wikidata", tmp_path / "missing.json.bz2", "--output", tmp_path / "kb"), "does not exist")
    assert_one_line_error(run_cli("demo", tmp_path / "no-pipeline"), "no-pipeline")


def test_train_config(tmp_path, bert_path):
    result = run_cli("train-config", "tok2vec", tmp_path / "tok2vec.cfg")
    assert result.returncode == 0, result.stderr
    assert spacy.util.load_config(tmp_path / "tok2vec.cfg")["nlp"]["pipeline"] == ["refined_linker"]
    result = run_cli("train-config", bert_path, tmp_path / "trf.cfg")
    assert result.returncode == 0, result.stderr
    config = spacy.util.load_config(tmp_path / "trf.cfg", interpolate=True)
    assert config["components"]["transformer"]["model"]["name"] == str(bert_path)


def test_missing_encoder_is_one_line_error(tmp_path):
    assert_one_line_error(run_cli("train-config", tmp_path / "no-model", tmp_path / "c.cfg"), "encoder path", "does not exist")
    assert_one_line_error(run_cli("train-config", "./models/nope", tmp_path / "c.cfg"), "does not exist")
    (tmp_path / "not-a-model").mkdir()
    assert_one_line_error(run_cli("train-config", tmp_path / "not-a-model", tmp_path / "c.cfg"), "config.json")
    assert not (tmp_path / "c.cfg").exists()


def test_demo_prints_entities(kb_path, records, tmp_path):
    from spacy.training import Example

    from spacy_refined.training.corpus import docs_from_jsonl

    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("refined_linker", config={"extra_labels": ["DATE"]})
    nlp.config["initialize"]["components"]["refined_linker"] = {"kb_path": str(kb_path)}
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs_from_jsonl(nlp, records)]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(60):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "pipeline")
    result = run_cli("demo", tmp_path / "pipeline", "Michael Jordan visited Chicago with the Bulls .")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["text", "ID", "label", "score", "description"]
    assert any(line.startswith("Chicago ") and "Q1297" in line and "city in Illinois" in line for line in lines[2:]), result.stdout


# ---------------------------------------------------------------- project.yml

@pytest.fixture(scope="module")
def project():
    from weasel.util import load_project_config

    return load_project_config(ROOT)


def test_workflow_steps_have_their_inputs(project):
    """Every dependency of a workflow step is an asset or an output of an earlier step."""
    commands = {c["name"]: c for c in project["commands"]}
    available = {str(Path(a["dest"])) for a in project["assets"]} | {"configs/tok2vec.cfg", "configs/transformer.cfg"}
    for name in project["workflows"]["all"]:
        command = commands[name]
        for dep in command.get("deps", []):
            assert any(Path(dep) == Path(p) or Path(p) in Path(dep).parents for p in available), f"{name}: {dep}"
        available |= {str(Path(p)) for p in command.get("outputs", []) + command.get("outputs_no_cache", [])}
    assert project["workflows"]["all"][-2:] == ["package", "demo"]


def test_embedded_assets_match_their_checksums(project):
    embedded = [a for a in project["assets"] if not a.get("extra")]
    assert {Path(a["dest"]).name for a in embedded} >= {"wikidata-sample.json.bz2", "enwiki-sample.xml.bz2"}
    for asset in embedded:
        assert hashlib.md5((ROOT / asset["dest"]).read_bytes()).hexdigest() == asset["checksum"], asset["dest"]
        assert (ROOT / asset["dest"]).stat().st_size < 2_500_000
    extra = [a for a in project["assets"] if a.get("extra")]
    assert all(a["url"].startswith("https://dumps.wikimedia.org/") for a in extra) and len(extra) == 2


def test_embedded_wikipedia_sample_links_kb_entities():
    sample = ROOT / "assets" / "enwiki-sample.xml.bz2"
    articles = list(read_articles(sample))
    assert 10 <= sum(1 for a in articles if not a.redirect) <= 50
    assert any(a.redirect for a in articles)
    assert "CC BY-SA" in (ROOT / "assets" / "README.md").read_text()


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """project.yml and configs/ in a directory of their own (running creates the project's directories)."""
    shutil.copy(ROOT / "project.yml", tmp_path)
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    return tmp_path


def test_missing_asset_stops_the_project(project_copy):
    result = run_cli("project", "run", "kb", project_copy, "--vars.wikidata", "assets/missing.json.bz2", module="spacy")
    assert result.returncode == 1
    assert "Missing dependency" in result.stdout and "assets/missing.json.bz2" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_missing_encoder_stops_the_project(project_copy):
    result = run_cli("project", "run", "train-config", project_copy, "--vars.encoder", "./models/nope", module="spacy")
    assert_one_line_error(result, "encoder path ./models/nope does not exist")
    assert not (project_copy / "training" / "config.cfg").exists()


def test_project_yml_vars():
    raw = srsly.read_yaml(ROOT / "project.yml")
    assert {"wikidata", "wikipedia", "lang", "encoder", "gpu_id", "n_types", "max_candidates"} <= set(raw["vars"])
    assert json.dumps(raw["vars"]["encoder"]) == '"tok2vec"'
