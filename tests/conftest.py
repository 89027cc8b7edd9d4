"""Shared fixtures: a tiny KB, a tiny local BERT (no downloads), EL records and the CLI.

`SPACY_REFINED_TEST_GPU=0 pytest` runs the suite with spaCy on GPU 0
(`spacy.require_gpu`): the models the tests build in their own process are
trained and run there (commands the tests start as subprocesses stay on CPU).
"""

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from spacy_refined.kb.builder import KBBuilder


def pytest_configure(config: pytest.Config) -> None:
    gpu_id = os.environ.get("SPACY_REFINED_TEST_GPU")
    if gpu_id:
        import spacy

        spacy.require_gpu(int(gpu_id))


def pytest_report_header(config: pytest.Config) -> str:
    from thinc.api import get_current_ops

    ops = get_current_ops()
    return f"spacy-refined: models on {ops.device_type}" + (f" {ops.device_id}" if ops.device_type == "gpu" else "")


ENTITIES: List[Dict[str, Any]] = [
    {
        "id": "Q90",
        "label": "Paris",
        "aliases": ["City of Light"],
        "description": "capital and largest city of France",
        "types": ["Q515"],
        "popularity": 0.9,
    },
    {
        "id": "Q47899",
        "label": "Paris Hilton",
        "aliases": ["Paris"],
        "description": "American media personality and businesswoman",
        "types": ["Q5"],
        "popularity": 0.5,
    },
    {
        "id": "Q41421",
        "label": "Michael Jordan",
        "aliases": ["Jordan", "MJ"],
        "description": "American basketball player",
        "types": ["Q5"],
        "popularity": 0.8,
    },
    {
        "id": "Q810",
        "label": "Jordan",
        "aliases": ["Hashemite Kingdom of Jordan"],
        "description": "country in Western Asia",
        "types": ["Q6256"],
        "popularity": 0.7,
    },
    {
        "id": "Q72",
        "label": "Zürich",
        "aliases": ["Zurich"],
        "description": "largest city in Switzerland",
        "types": ["Q515"],
        "popularity": 0.6,
    },
    {
        "id": "Q128109",
        "label": "Chicago Bulls",
        "aliases": ["Bulls"],
        "description": "American professional basketball team",
        "types": ["Q43229", "Q13393265"],
        "popularity": 0.6,
    },
    {
        "id": "Q1297",
        "label": "Chicago",
        "aliases": ["Windy City"],
        "description": "city in Illinois, United States",
        "types": ["Q515"],
        "popularity": 0.8,
    },
    {
        "id": "Q61",
        "label": "Washington, D.C.",
        "aliases": ["Washington"],
        "description": "capital city of the United States",
        "types": ["Q515"],
        "popularity": 0.5,
    },
    {
        "id": "Q23",
        "label": "George Washington",
        "aliases": ["Washington"],
        "description": "first president of the United States",
        "types": ["Q5"],
        "popularity": 0.9,
    },
]


def _record(doc_id: str, text: str, mentions: List[Tuple]) -> Dict[str, Any]:
    """An EL record; each mention is (surface, entity ID[, label]), found left to right."""
    labels = []
    position = 0
    for surface, entity_id, *label in mentions:
        start = text.index(surface, position)
        position = start + len(surface)
        labels.append({"span": [start, position], "entity_id": entity_id, **({"label": label[0]} if label else {})})
    return {"id": doc_id, "text": text, "labels": labels}


RECORDS = [
    _record(
        "d1",
        "Tourists in Paris spotted Paris Hilton on Monday .",
        [("Paris", "Q90"), ("Paris Hilton", "Q47899"), ("Monday", None, "DATE")],
    ),
    _record(
        "d2",
        "Jordan scored 30 points as the Bulls beat the Knicks .",
        [("Jordan", "Q41421"), ("Bulls", "Q128109"), ("Knicks", "<NIL>")],
    ),
    _record(
        "d3",
        "King Abdullah returned to Jordan on Friday .",
        [("Abdullah", "<NIL>"), ("Jordan", "Q810"), ("Friday", None, "DATE")],
    ),
    _record(
        "d4", "Officials in Washington praised the deal signed in Zürich .", [("Washington", "Q61"), ("Zürich", "Q72")]
    ),
    _record("d5", "It was a quiet day .", []),
    _record(
        "d6",
        "Michael Jordan visited Chicago with the Bulls .",
        [("Michael Jordan", "Q41421"), ("Chicago", "Q1297"), ("Bulls", "Q128109")],
    ),
]


def add_linker(nlp, kb_path=None, config=None, kb_config=None, name="refined_linker"):
    """Add a `refined_kb` component (initialized from `kb_path`) and a `refined_linker` listening to it."""
    if "refined_kb" not in nlp.pipe_names:
        nlp.add_pipe("refined_kb", config=kb_config or {})
        if kb_path is not None:
            nlp.config["initialize"]["components"]["refined_kb"] = {
                "kb_loader": {"@misc": "spacy_refined.KBFromPath.v1", "path": str(kb_path)}
            }
    return nlp.add_pipe("refined_linker", name=name, config=config or {})


def add_transformer(nlp, bert_path: Path, max_wordpieces: int, overlap: int = 32, max_batch_items: int = 4096):
    """Add a `transformer` component over the tiny local BERT, with the project's wordpiece windows."""
    return nlp.add_pipe(
        "transformer",
        config={
            "max_batch_items": max_batch_items,
            "model": {
                "@architectures": "spacy_refined.WindowedTransformerModel.v1",
                "name": str(bert_path),
                "tokenizer_config": {"use_fast": True},
                "max_wordpieces": max_wordpieces,
                "overlap": overlap,
            },
        },
    )


def build_kb(path: Path, entities: List[Dict[str, Any]]) -> Path:
    source = path.with_suffix(".jsonl")
    source.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entities), encoding="utf8")
    with KBBuilder(path, n_types=20, min_type_count=1, max_type_share=1.0, progress=False) as builder:
        builder.add_entities_jsonl(source)
    return path


@pytest.fixture(scope="session")
def records() -> List[Dict[str, Any]]:
    """Six EL records over the tiny KB: ambiguous names, NIL mentions, DATEs, no mentions."""
    return RECORDS


@pytest.fixture(scope="session")
def kb_path(tmp_path_factory) -> Path:
    return build_kb(tmp_path_factory.mktemp("kb") / "tiny", ENTITIES)


@pytest.fixture(scope="session")
def other_kb_path(tmp_path_factory) -> Path:
    """A KB whose type inventory differs from the tiny KB's."""
    extra = {"id": "Q3", "label": "Lake Geneva", "description": "lake", "types": ["Q23397"]}
    return build_kb(tmp_path_factory.mktemp("kb") / "other", ENTITIES + [extra])


@pytest.fixture(scope="session")
def bert_path(tmp_path_factory) -> Path:
    """A tiny randomly initialised BERT and its tokenizer, saved locally."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    words = {w.lower() for record in RECORDS for w in record["text"].split()}
    characters = list("abcdefghijklmnopqrstuvwxyz0123456789.,:;'\"-()")
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + characters
        + ["##" + c for c in characters]
        + sorted(words - set(characters))
    )
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), model_max_length=128).save_pretrained(path)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run the command line in-process through its entry point: (exit code, stdout, stderr)."""
    from spacy_refined.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["spacy-refined", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return run
