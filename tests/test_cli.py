"""The command line, run in-process through its entry point."""

import bz2
import json

import pytest
from test_kb import ENTITIES, write_jsonl


@pytest.fixture
def kb_path(tmp_path, run_cli):
    entities = write_jsonl(tmp_path / "entities.jsonl", ENTITIES)
    code, out, err = run_cli(
        "kb",
        "build",
        "--entities",
        entities,
        "--output",
        tmp_path / "kb",
        "--n-types",
        10,
        "--max-type-share",
        1.0,
        "--no-progress",
    )
    assert code == 0, err
    assert "11 entities" in out
    return tmp_path / "kb"


def test_build_info_lookup(kb_path, run_cli):
    code, out, _ = run_cli("kb", "info", kb_path, "--json")
    info = json.loads(out)
    assert code == 0 and info["entities"] == 11 and info["segments"][0]["name"] == "base"
    code, out, _ = run_cli("kb", "lookup", kb_path, "the U.S.", "--json")
    result = json.loads(out)
    assert result["candidates"][0]["id"] == "Q30"
    assert result["candidates"][0]["label"] == "United States"
    code, out, _ = run_cli("kb", "lookup", kb_path, "Paris", "-k", "2")
    assert code == 0 and out.splitlines()[0].split()[1] == "Q90" and len(out.splitlines()) == 2


def test_add_entities(kb_path, tmp_path, run_cli):
    new = write_jsonl(
        tmp_path / "new.jsonl", [{"id": "N1", "label": "Lutetia", "description": "Roman city", "types": ["city"]}]
    )
    code, out, err = run_cli("kb", "add", kb_path, new)
    assert code == 0, err
    assert "added 1 entities" in out
    code, out, _ = run_cli("kb", "lookup", kb_path, "Lutetia", "--json")
    assert json.loads(out)["candidates"][0]["types"] == ["Q515"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["kb", "build", "--output", "{tmp}/kb"], "give --wikidata, --entities and/or --triples"),
        (["kb", "build", "--entities", "{tmp}/missing.jsonl", "--output", "{tmp}/kb"], "missing.jsonl does not exist"),
        (["kb", "info", "{tmp}"], "manifest.json is missing"),
        (["kb", "lookup", "{tmp}/nowhere", "Paris"], "manifest.json is missing"),
        (
            ["kb", "build", "--wikidata", "{tmp}/truncated.json.bz2", "--output", "{tmp}/kb", "--no-progress"],
            "truncated.json.bz2",
        ),
        (["convert", "{tmp}/truncated.jsonl", "{tmp}/kb/train.spacy"], "truncated.jsonl (line 2): not valid JSON"),
        (["calibrate", "{tmp}/nowhere", "{tmp}/truncated.jsonl", "-o", "{tmp}/kb"], "is not a spaCy pipeline"),
    ],
)
def test_bad_input_exits_1_with_one_line(args, message, tmp_path, run_cli):
    data = bz2.compress(b'[\n{"type":"item","id":"Q1","labels":{}},\n{"type":"item","id":"Q2","labels":{}}\n]\n')
    (tmp_path / "truncated.json.bz2").write_bytes(data[: len(data) // 2])
    (tmp_path / "truncated.jsonl").write_text('{"text": "Paris", "labels": []}\n{"text": "Lond', encoding="utf8")
    code, out, err = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert code == 1
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "kb").exists()


def test_every_command_has_help(run_cli):
    for args in (
        ["--help"],
        ["kb", "--help"],
        ["kb", "build", "--help"],
        ["kb", "info", "--help"],
        ["kb", "lookup", "--help"],
        ["kb", "add", "--help"],
    ):
        code, out, _ = run_cli(*args)
        assert code == 0 and "Usage" in out


def test_traceback_only_with_debug(tmp_path, run_cli, monkeypatch):
    code, _, err = run_cli("kb", "info", tmp_path)
    assert code == 1 and "Traceback" not in err
    monkeypatch.setenv("SPACY_REFINED_DEBUG", "1")
    code, _, err = run_cli("kb", "info", tmp_path)
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error: no KB at")


def test_unknown_entity_is_a_user_error(kb_path, run_cli, monkeypatch):
    from spacy_refined.cli import kb as kb_commands

    def lookup_unknown(path):
        kb = kb_commands.KBReader.load(path)
        kb.index("Q404")

    monkeypatch.setattr(kb_commands.KBReader, "candidates", lambda self, mentions, k: lookup_unknown(kb_path))
    code, _, err = run_cli("kb", "lookup", kb_path, "Paris")
    assert code == 1 and err.strip() == f"error: entity 'Q404' is not in the KB at {kb_path}"


def test_other_errors_are_not_hidden(kb_path, run_cli, monkeypatch):
    from spacy_refined.cli import kb as kb_commands

    def broken(self, mentions, k):
        raise KeyError("a bug")

    monkeypatch.setattr(kb_commands.KBReader, "candidates", broken)
    with pytest.raises(KeyError, match="a bug"):
        run_cli("kb", "lookup", kb_path, "Paris")
