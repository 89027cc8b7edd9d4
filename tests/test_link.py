"""`link`: a corpus file in, sharded and resumable linked records out, locally and with Ray Data."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import spacy
from conftest import add_linker, add_transformer
from spacy.training import Example

from spacy_refined.linking import link_corpus, read_output
from spacy_refined.training import docs_from_jsonl

TRAIN_STEPS = 60


@pytest.fixture(scope="module")
def pipeline(kb_path, records, tmp_path_factory) -> Path:
    """A small trained tok2vec pipeline, saved (it need not be accurate: the tests compare runs)."""
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    add_linker(nlp, kb_path, config={"extra_labels": ["DATE"]})
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs_from_jsonl(nlp, records)]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(TRAIN_STEPS):
        nlp.update(examples, sgd=optimizer)
    path = tmp_path_factory.mktemp("link") / "pipeline"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def corpus(records, tmp_path_factory) -> Path:
    """40 JSONL documents: the six records repeated, each with its own ID."""
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    lines = [json.dumps({"id": f"doc-{i}", "text": records[i % len(records)]["text"]}) for i in range(40)]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


@pytest.fixture(scope="module")
def expected(pipeline, corpus) -> List[Dict[str, Any]]:
    """The records as `nlp.pipe` links them, document by document."""
    from spacy_refined.linking import doc_record, load_pipeline

    nlp = load_pipeline(pipeline)
    rows = [json.loads(line) for line in corpus.read_text(encoding="utf8").splitlines()]
    return [doc_record(doc, row["id"]) for doc, row in zip(nlp.pipe(r["text"] for r in rows), rows)]


def output_lines(directory: Path) -> List[str]:
    return [line for p in sorted(directory.glob("part-*.jsonl")) for line in p.read_text(encoding="utf8").splitlines()]


def test_link_jsonl(run_cli, pipeline, corpus, expected, tmp_path):
    code, out, err = run_cli("link", pipeline, corpus, "--output", tmp_path / "out", "--shard-size", 16)
    assert code == 0, err
    assert "read 40 documents: linked 40, skipped 0" in out
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*.jsonl")) == [
        "part-00000.jsonl",
        "part-00001.jsonl",
        "part-00002.jsonl",
    ]
    assert list(read_output(tmp_path / "out")) == expected
    assert any(e["kb_id"] not in (None, "NIL") and e["candidates"] for r in expected for e in r["entities"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["read"], summary["linked"], summary["skipped"], summary["shards"]) == (40, 40, 0, 3)


def test_link_text(run_cli, pipeline, corpus, expected, tmp_path):
    texts = tmp_path / "docs.txt"
    texts.write_text("".join(json.loads(line)["text"] + "\n" for line in corpus.read_text().splitlines()))
    code, out, err = run_cli("link", pipeline, texts, "-o", tmp_path / "out")
    assert code == 0, err
    records = list(read_output(tmp_path / "out"))
    assert [r["id"] for r in records] == [str(i) for i in range(1, 41)]  # the line numbers
    assert [r["entities"] for r in records] == [r["entities"] for r in expected]


def test_link_parquet(run_cli, pipeline, corpus, expected, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "docs.parquet", row_group_size=7)
    code, _, err = run_cli(
        "link", pipeline, tmp_path / "docs.parquet", "-o", tmp_path / "out", "--output-format", "parquet"
    )
    assert code == 0, err
    assert list(read_output(tmp_path / "out")) == expected


def test_link_two_processes_same_output(run_cli, pipeline, corpus, tmp_path):
    assert run_cli("link", pipeline, corpus, "-o", tmp_path / "one", "--shard-size", 16, "--batch-size", 4)[0] == 0
    code, _, err = run_cli(
        "link", pipeline, corpus, "-o", tmp_path / "two", "--shard-size", 16, "--batch-size", 4, "--n-process", 2
    )
    assert code == 0, err
    assert output_lines(tmp_path / "two") == output_lines(tmp_path / "one")


def test_malformed_line_reported(run_cli, pipeline, tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "text": "Jordan scored ."}\n{"id": "b", "text": 3}\n{not json\n{"text": "Paris ."}\n')
    code, _, err = run_cli("link", pipeline, path, "-o", tmp_path / "fail")
    assert code == 1
    assert "line 2" in err and "'text'" in err
    code, out, err = run_cli("link", pipeline, path, "-o", tmp_path / "skip", "--on-error", "skip")
    assert code == 0, err
    assert "line 2" in err and "line 3" in err
    assert "read 4 documents: linked 2, skipped 2" in out
    assert [r["id"] for r in read_output(tmp_path / "skip")] == ["a", "4"]
    stats = json.loads((tmp_path / "skip" / "part-00000.stats.json").read_text())
    assert [s["line"] for s in stats["skipped"]] == [2, 3]


def test_empty_input(run_cli, pipeline, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    code, out, err = run_cli("link", pipeline, tmp_path / "empty.jsonl", "-o", tmp_path / "out")
    assert code == 0, err
    assert "read 0 documents: linked 0, skipped 0" in out
    assert list(read_output(tmp_path / "out")) == []


def test_resume_after_interrupted_run(pipeline, corpus, expected, tmp_path):
    """Kill a run after its first shard, rerun: the finished shards are kept, the output is complete and identical."""
    big = tmp_path / "big.jsonl"
    big.write_text(corpus.read_text() * 10)  # 400 documents, 100 shards of 4
    out = tmp_path / "out"
    command = [sys.executable, "-m", "spacy_refined", "link", str(pipeline), str(big), "-o", str(out)]
    command += ["--shard-size", "4", "--batch-size", "2", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(out.glob("part-*.jsonl"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p.name: p.read_bytes() for p in out.glob("part-*.jsonl")}
    assert 3 <= len(finished) < 100, "the run was not interrupted in the middle"
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert f"{len(finished)} finished before this run" in done.stdout
    assert all((out / name).read_bytes() == data for name, data in finished.items())
    assert list(read_output(out)) == expected * 10


def test_other_job_in_output_refused(run_cli, pipeline, corpus, tmp_path):
    assert run_cli("link", pipeline, corpus, "-o", tmp_path / "out")[0] == 0
    code, _, err = run_cli("link", pipeline, corpus, "-o", tmp_path / "out", "--shard-size", 7)
    assert code == 1 and "another job" in err


# ------------------------------------------------------------------ Ray


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def test_ray_same_output_as_local(ray_local, pipeline, corpus, tmp_path):
    link_corpus(pipeline, corpus, tmp_path / "local", shard_size=16, batch_size=4, progress=False)
    summary = link_corpus(
        pipeline, corpus, tmp_path / "ray", shard_size=16, batch_size=4, engine="ray", n_actors=2, progress=False
    )
    assert (summary.read, summary.linked, summary.shards) == (40, 40, 3)
    assert output_lines(tmp_path / "ray") == output_lines(tmp_path / "local")


def link_actor_processes() -> List[int]:
    """The processes of this test's Ray runtime (descendants of this process) that run a LinkActor."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"LinkActor" not in (entry / "cmdline").read_bytes():
                continue
            pid = int(entry.name)
            while pid > 1 and pid != os.getpid():
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if pid == os.getpid():
            found.append(int(entry.name))
    return found


def test_ray_killed_actor(ray_local, pipeline, corpus, expected):
    """An actor killed mid-run is restarted and its batch retried: every document comes out exactly once."""
    from spacy_refined.linking import link_dataset

    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    rows = [{**row, "id": f"{row['id']}/{k}"} for k in range(5) for row in rows]  # 200 documents

    def slow(batch):
        time.sleep(0.05)
        return batch

    dataset = ray_local.data.from_items(rows).map_batches(slow, batch_size=2)
    linked = link_dataset(dataset, pipeline, batch_size=2, n_actors=2)
    results: List[Dict[str, Any]] = []
    killed: List[int] = []

    def kill_one() -> None:
        while not killed:
            actors = link_actor_processes()
            if actors and len(results) >= 20:
                os.kill(actors[0], signal.SIGKILL)
                killed.append(actors[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    for row in linked.iter_rows():
        results.append(row)
    assert killed, "no actor was killed during the run"
    assert len(results) == len(rows)
    by_id = {}
    for row in results:
        assert row["id"] not in by_id
        by_id[row["id"]] = row["entities"]
    assert by_id == {f"{r['id']}/{k}": r["entities"] for k in range(5) for r in expected}


# ------------------------------------------------------------------ transformer windows


@pytest.mark.parametrize("n_tokens", [1, 5, 60, 61, 300, 1001])
@pytest.mark.parametrize("seed", [0, 1])
def test_wordpiece_windows_cover_every_token_within_the_budget(n_tokens, seed):
    from spacy_refined.model.spans import wordpiece_windows

    doc = spacy.blank("en").make_doc(" ".join(["w"] * n_tokens))
    pieces = np.random.default_rng(seed).integers(1, 4, n_tokens)
    windows = wordpiece_windows(doc, pieces, 120, 8)
    assert windows == wordpiece_windows(doc, pieces, 120, 8)  # deterministic
    assert windows[0].start == 0 and windows[-1].end == n_tokens
    assert all(pieces[w.start : w.end].sum() <= 120 for w in windows)
    assert all(a.end - b.start >= 8 for a, b in zip(windows, windows[1:]))  # neighbours overlap, no gaps
    assert len(windows) == 1 or len(windows) <= 2 * -(-pieces.sum() // 112)  # few windows
    if pieces.sum() <= 120:
        assert [(w.start, w.end) for w in windows] == [(0, n_tokens)]  # a document that fits is one window


def test_wordpiece_windows_even_and_centred():
    from spacy_refined.model.spans import wordpiece_windows

    doc = spacy.blank("en").make_doc(" ".join(["w"] * 1000))
    windows = wordpiece_windows(doc, np.ones(1000, dtype=int), 300, 20)
    assert len(windows) == 4
    assert max(map(len, windows)) - min(map(len, windows)) <= 12  # parts of equal size, widened inwards only
    for token in range(1000):  # every token has a window reaching 10 tokens past it on both sides
        assert any(
            (w.start == 0 or token - w.start >= 10)
            and (w.end == 1000 or w.end - token > 10)
            and w.start <= token < w.end
            for w in windows
        )


def test_token_wordpieces(bert_path):
    from transformers import AutoTokenizer

    from spacy_refined.model.spans import token_wordpieces

    tokenizer = AutoTokenizer.from_pretrained(str(bert_path), use_fast=True)
    doc = spacy.blank("en").make_doc("Paris  is xyzzy.")
    counts = token_wordpieces(doc, tokenizer)
    expected = [len(tokenizer(t.text, add_special_tokens=False)["input_ids"]) if t.text.strip() else 0 for t in doc]
    assert counts.tolist() == expected


def test_windowed_transformer_model(bert_path, tmp_path):
    nlp = spacy.blank("en")
    add_transformer(nlp, bert_path, max_wordpieces=24, overlap=4, max_batch_items=1)
    nlp.initialize()
    texts = ["a short text", " ".join(["word"] * 30) + " and a 1996-08-30 date, 3-1 ."]
    docs = list(nlp.pipe(texts))
    assert docs[0]._.trf_data.wordpieces.input_ids.shape[0] == 1
    data = docs[1]._.trf_data
    assert data.wordpieces.input_ids.shape[0] > 1 and max(data.wordpieces.lengths) <= 24
    assert all(data.align[i].lengths.sum() > 0 for i in range(len(docs[1])))  # every token has a vector
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")  # the windows need the tokenizer restored from disk
    again = list(loaded.pipe(texts))[1]._.trf_data
    assert again.wordpieces.input_ids.tolist() == data.wordpieces.input_ids.tolist()
    assert np.allclose(again.model_output.last_hidden_state, data.model_output.last_hidden_state, atol=1e-5)
