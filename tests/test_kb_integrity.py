"""Nothing lost, nothing written where it should not be: the KB under
concurrent writers, crashes, a full disk and hostile bytes (issue 21)."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import spacy
import srsly
from conftest import add_linker
from test_kb import ENTITIES, build_kb, top_ids, write_jsonl

from spacy_refined.kb import KBError, RefinedKB
from spacy_refined.kb import format as kb_format
from spacy_refined.kb.builder import append_segment, store_embeddings
from spacy_refined.kb.lock import LOCK_FILE
from spacy_refined.pipeline.linker import find_linker
from spacy_refined.training import embed_kb


def new_entities(prefix: str, n: int):
    return [{"id": f"{prefix}{i}", "label": f"{prefix} thing {i}", "aliases": [f"{prefix}{i} alias"]} for i in range(n)]


def scratch(directory: Path):
    """Entries a writer leaves while it runs (`.NAME.tmp-PID-...`, `.NAME.old-PID-...`)."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and p.name != LOCK_FILE)


def answers(kb: RefinedKB):
    """Everything the KB says about each entity and each of its names."""
    entities = [kb.entity(i) for i in range(len(kb))]
    names = sorted({n for e in entities for n in [e["label"], *e["aliases"]] if n})
    candidates = {}
    for name in names:
        found, priors = kb.candidates([name])[0]
        candidates[name] = (kb.entity_ids(found), priors)
    return entities, candidates


@pytest.fixture
def kb(tmp_path) -> RefinedKB:
    return RefinedKB.load(build_kb(tmp_path))


# ------------------------------------------------------------------ writers


def test_concurrent_adds_keep_both_batches(tmp_path):
    """Two `kb add` processes at once: both batches are in the KB after (issue 21, 1)."""
    path = build_kb(tmp_path)
    go = tmp_path / "go"
    script = textwrap.dedent(
        """
        import json, sys, time
        from pathlib import Path
        from spacy_refined.kb.builder import append_segment
        path, prefix, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
        entities = [{"id": f"{prefix}{i}", "label": f"{prefix} {i}"} for i in range(3000)]
        Path(str(go) + "." + prefix).touch()
        while not go.exists():
            time.sleep(0.01)
        print(append_segment(path, entities))
        """
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), prefix, str(go)], stdout=subprocess.PIPE)
        for prefix in ("A", "B")
    ]
    deadline = time.time() + 120
    while not all(Path(f"{go}.{p}").exists() for p in "AB") and time.time() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = [worker.communicate(timeout=300)[0].decode().strip() for worker in workers]
    assert [w.returncode for w in workers] == [0, 0] and outputs == ["3000", "3000"]
    kb = RefinedKB.load(path)
    assert len(kb) == len(ENTITIES) + 6000
    assert (kb.find([f"{p}{i}" for p in "AB" for i in range(3000)]) >= 0).all()
    assert sorted(s.path.name for s in kb.segments) == ["added-0001", "added-0002", "base"]
    assert kb.verify() == []


def test_add_during_embed_is_kept(tmp_path):
    """`kb add` while `kb embed` computes: the added segment survives (issue 21, 2)."""
    path = build_kb(tmp_path)
    nlp = spacy.blank("en")
    add_linker(nlp, path)
    nlp.initialize()
    linker = find_linker(nlp)
    encode = linker.encode_descriptions
    added = []

    def encode_while_adding(texts):
        if not added:
            added.append(append_segment(path, new_entities("N", 3)))
        return encode(texts)

    linker.encode_descriptions = encode_while_adding
    assert embed_kb(nlp, path, progress=False) == len(ENTITIES)
    kb = RefinedKB.load(path)
    assert len(kb) == len(ENTITIES) + 3 and "N1" in kb
    assert kb.segments[0].embeddings is not None and kb.segments[1].embeddings is None
    linker.encode_descriptions = encode
    assert embed_kb(nlp, path, progress=False) == 3  # the new segment is embedded next time
    assert RefinedKB.load(path).has_embeddings


def test_nan_embeddings_are_refused(kb):
    vectors = np.ones((len(kb), 4), dtype=np.float32)
    vectors[2, 1] = np.nan
    with pytest.raises(KBError, match="1 of the 11 embeddings of segment base are NaN"):
        store_embeddings(kb.path, "base", vectors, {"model": "broken"})
    assert not (kb.path / "base" / "embeddings.npy").exists() and scratch(kb.path / "base") == []


def test_disk_full_during_add_keeps_the_kb(tmp_path, monkeypatch):
    """ENOSPC midway through `kb add`: the KB is intact and opens; no staging is left (issue 21, 4)."""
    path = build_kb(tmp_path)
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and p.name != LOCK_FILE}
    real_dumps = json.dumps

    def dumps(data, *args, **kwargs):  # the disk fills up while relations.json is written
        if isinstance(data, list) and data and data[0].get("id", "").startswith("P"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_dumps(data, *args, **kwargs)

    monkeypatch.setattr(kb_format.json, "dumps", dumps)
    with pytest.raises(OSError, match="No space left"):
        append_segment(path, [{"id": "X1", "label": "X", "facts": [["P999", "Q90"]]}])
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file() and p.name != LOCK_FILE}
    assert after == before and scratch(path) == []
    kb = RefinedKB.load(path)
    assert len(kb) == len(ENTITIES) and kb.verify() == []
    assert append_segment(path, [{"id": "X1", "label": "X"}]) == 1  # the leftover segment does not block


def test_disk_full_in_the_cli_is_one_line(tmp_path, run_cli, monkeypatch):
    path = build_kb(tmp_path)
    new = write_jsonl(tmp_path / "new.jsonl", [{"id": "X1", "label": "X"}])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path / "manifest.json"))

    monkeypatch.setattr(kb_format, "write_manifest", full)
    monkeypatch.setattr("spacy_refined.kb.builder.write_manifest", full)
    code, _, err = run_cli("kb", "add", path, new)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "No space left on device" in err
    assert len(RefinedKB.load(path)) == len(ENTITIES)


def test_staging_is_removed_on_interrupt(tmp_path):
    from spacy_refined.kb.builder import KBBuilder

    source = write_jsonl(tmp_path / "e.jsonl", ENTITIES)
    with pytest.raises(KeyboardInterrupt):
        with KBBuilder(tmp_path / "kb", progress=False) as builder:
            builder.add_entities_jsonl(source)
            raise KeyboardInterrupt
    assert scratch(tmp_path) == [] and not (tmp_path / "kb").exists()


# ---------------------------------------------------------------- placement


def test_build_refuses_a_user_directory(tmp_path, run_cli):
    """`kb build --output` on a directory that is not a KB: refused, untouched (issue 21, 3)."""
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "chapter1.tex").write_text("precious")
    entities = write_jsonl(tmp_path / "e.jsonl", ENTITIES)
    args = ["kb", "build", "--entities", entities, "--output", user, "--no-progress", "--max-type-share", "1.0"]
    code, _, err = run_cli(*args)
    assert code == 1 and "is not a KB" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (user / "chapter1.tex").read_text() == "precious" and scratch(tmp_path) == []
    (tmp_path / "notes.txt").write_text("precious")
    code, _, err = run_cli(*args[:4], tmp_path / "notes.txt", *args[5:])
    assert code == 1 and (tmp_path / "notes.txt").read_text() == "precious" and scratch(tmp_path) == []
    code, _, err = run_cli(*args, "--overwrite")
    assert code == 0, err
    assert len(RefinedKB.load(user)) == len(ENTITIES) and scratch(tmp_path) == []
    code, _, err = run_cli(*args)  # a KB is replaced without --overwrite
    assert code == 0, err


def test_output_dot_is_refused(tmp_path, run_cli, monkeypatch):
    entities = write_jsonl(tmp_path / "e.jsonl", ENTITIES)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("kb", "build", "--entities", entities, "--output", ".", "--no-progress")
    assert code == 1 and "current directory" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.jsonl"]


def test_calibrate_refuses_a_user_directory(tmp_path, run_cli):
    user = tmp_path / "photos"
    user.mkdir()
    (user / "cat.jpg").write_bytes(b"meow")
    code, _, err = run_cli("calibrate", tmp_path / "nowhere", tmp_path / "dev.jsonl", "-o", user)
    assert code == 1 and "is not a pipeline" in err and (user / "cat.jpg").read_bytes() == b"meow"


def test_crash_between_the_renames_is_recovered(tmp_path):
    """A rebuild killed after moving the old KB aside and before moving the new
    one in: the old KB is found at its path at the next open (issue 21, 5)."""
    path = build_kb(tmp_path)
    expected = top_ids(RefinedKB.load(path), "Paris")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that is gone
    os.replace(path, tmp_path / f".kb.old-{pid}-0123abcd")
    (tmp_path / f".kb.tmp-{pid}-4567cdef").mkdir()  # the new KB, half written
    assert not path.exists()
    assert top_ids(RefinedKB.load(path), "Paris") == expected
    build_kb(tmp_path)  # the next write removes what the dead process left
    assert scratch(tmp_path) == []


def test_a_live_placement_is_not_undone(tmp_path):
    path = build_kb(tmp_path)
    os.replace(path, tmp_path / f".kb.old-{os.getpid()}-0123abcd")  # our own, under way
    with pytest.raises(KBError, match="manifest.json is missing"):
        RefinedKB.load(path)
    assert (tmp_path / f".kb.old-{os.getpid()}-0123abcd").exists()


# ------------------------------------------------------------------- bytes


@pytest.mark.parametrize("name", ["../evil.pth", "/tmp/evil-spacy-refined.pth", "base/../../evil.pth", "x.pth"])
def test_from_bytes_writes_only_inside_its_directory(kb, tmp_path, name):
    files = srsly.msgpack_loads(kb.to_bytes())
    files[name] = b"import os; os.system('echo pwned')\n"
    before = set(Path("/tmp").iterdir())
    with pytest.raises(KBError, match="outside its directory|not a KB's"):
        RefinedKB(spacy.blank("en").vocab).from_bytes(srsly.msgpack_dumps(files))
    assert set(Path("/tmp").iterdir()) == before  # not even a temporary directory
    assert not Path("/tmp/evil-spacy-refined.pth").exists()


def test_from_bytes_refuses_a_manifest_pointing_outside(kb):
    files = srsly.msgpack_loads(kb.to_bytes())
    manifest = json.loads(files["manifest.json"])
    manifest["segments"][0]["name"] = "../base"
    files["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(KBError):
        RefinedKB(spacy.blank("en").vocab).from_bytes(srsly.msgpack_dumps(files))


def test_pipeline_bytes_with_a_hostile_kb_raise(kb):
    """`nlp.from_bytes` of a pipeline whose KB names `../`: KBError, nothing written."""
    nlp = spacy.blank("en")
    add_linker(nlp, kb.path, kb_config={"kb_copy": True})
    nlp.initialize()
    files = srsly.msgpack_loads(kb.to_bytes())
    files["../../evil.pth"] = b"x"
    nlp.get_pipe("refined_kb").kb.to_bytes = lambda **kwargs: srsly.msgpack_dumps(files)
    data = nlp.to_bytes()
    fresh = spacy.blank("en")
    add_linker(fresh)
    with pytest.raises(KBError, match="outside its directory"):
        fresh.from_bytes(data)


def test_copies_hold_only_the_kbs_files(kb, tmp_path):
    (kb.path / "notes.txt").write_text("mine")
    (kb.path / "base" / "stray.npy").write_bytes(b"junk")
    (kb.path / ".manifest.json.tmp-1-abcd").write_text("{")
    kb.to_disk(tmp_path / "copy")
    copied = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert copied == sorted(["manifest.json", *kb_format.kb_files(kb.path, kb.manifest)])
    assert set(srsly.msgpack_loads(kb.to_bytes())) == set(copied)


# --------------------------------------------------------- damaged files


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: (p / "types.json").write_text('[{"id": "Q5", "lab'), r"types.json: not valid JSON"),
        (lambda p: (p / "relations.json").write_text("[{"), r"relations.json: not valid JSON"),
        (lambda p: (p / "base" / "popularity.npy").write_bytes(b""), r"popularity.npy: not a readable .npy"),
        (
            lambda p: (p / "base" / "candidate_entities.npy").write_bytes(
                (p / "base" / "candidate_entities.npy").read_bytes()[:-8]
            ),
            r"candidate_entities.npy: not a readable .npy",
        ),
        (
            lambda p: np.save(p / "base" / "candidate_offsets.npy", np.load(p / "base" / "candidate_offsets.npy") + 1),
            r"candidate_offsets.npy: offsets do not span",
        ),
        (
            lambda p: np.save(p / "base" / "popularity.npy", np.zeros(3, np.float32)),
            r"popularity.npy: 3 rows where the segment needs 11",
        ),
        (
            lambda p: np.save(p / "base" / "embeddings.npy", np.zeros((11, 4, 2), np.float16)),
            r"embeddings.npy: embeddings of shape \(11, 4, 2\)",
        ),
        (
            lambda p: np.save(p / "base" / "embeddings.npy", np.zeros((10, 4), np.float16)),
            r"embeddings.npy: embeddings of shape \(10, 4\)",
        ),
    ],
)
def test_damaged_files_are_named_at_open(tmp_path, run_cli, damage, message):
    path = build_kb(tmp_path)
    damage(path)
    with pytest.raises(KBError, match=message):
        RefinedKB.load(path)
    code, _, err = run_cli("kb", "lookup", path, "Paris")
    assert code == 1 and len(err.strip().splitlines()) == 1 and str(path) in err


def test_embeddings_of_another_width_are_found_at_open(tmp_path):
    path = build_kb(tmp_path)
    store_embeddings(path, "base", np.ones((len(ENTITIES), 4)), {"model": "ones", "width": 4})
    append_segment(path, new_entities("N", 2))
    np.save(path / "added-0001" / "embeddings.npy", np.ones((2, 8), np.float16))
    with pytest.raises(KBError, match=r"added-0001/embeddings.npy: embeddings of width 8"):
        RefinedKB.load(path)


def test_verify_finds_tampering(tmp_path, run_cli):
    path = build_kb(tmp_path)
    append_segment(path, new_entities("N", 3))
    code, out, _ = run_cli("kb", "verify", path)
    assert code == 0 and "intact" in out
    keys = np.load(path / "base" / "entity_keys.npy")
    np.save(path / "base" / "entity_keys.npy", keys[::-1].copy())  # shuffled keys: answers go wrong silently
    code, _, err = run_cli("kb", "verify", path)
    assert code == 1
    assert "entity_keys.npy: changed since it was written" in err and "entity_keys.npy: keys not sorted" in err


# ------------------------------------------------------------------ compact


def test_compact_gives_the_same_answers(tmp_path, run_cli):
    path = build_kb(tmp_path)
    store_embeddings(path, "base", np.arange(len(ENTITIES) * 4).reshape(-1, 4), {"model": "m", "width": 4})
    append_segment(
        path,
        [
            {"id": "X1", "label": "Paris Saint-Germain", "aliases": ["PSG", "Paris"], "types": ["Q515"]},
            {"id": "X2", "label": "Parc des Princes", "title": "Parc_des_Princes", "facts": [["P159", "X1"]]},
        ],
        mention_counts=[("Paris", "X1", 1000.0), ("Obama", "Q41773", 3.0)],
    )
    append_segment(path, [{"id": "X3", "label": "Paris", "facts": [["P17", "Q142"]], "popularity": 0.3}])
    for name in ("added-0001", "added-0002"):
        n = RefinedKB.load(path).segments[-1 if name == "added-0002" else 1].n_entities
        store_embeddings(path, name, np.full((n, 4), 7.0), {"model": "m", "width": 4})
    kb = RefinedKB.load(path)
    entities, candidates = answers(kb)
    facts = [sorted(zip(*[a.tolist() for a in kb.facts_pointing_to(np.array([i]))])) for i in range(len(kb))]
    titles = kb.find_titles(["Parc des Princes", "Paris"]).tolist()
    embeddings = kb.embeddings(np.arange(len(kb)))
    code, out, err = run_cli("kb", "compact", path)
    assert code == 0 and "compacted 3 segments" in out, err
    compacted = RefinedKB.load(path)
    assert len(compacted.segments) == 1 and compacted.verify() == []
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == ["compact-0003"]
    new_entities_, new_candidates = answers(compacted)
    assert new_entities_ == entities
    for name, (ids, priors) in candidates.items():
        assert new_candidates[name][0] == ids, name
        np.testing.assert_allclose(new_candidates[name][1], priors, rtol=1e-6)
    assert [
        sorted(zip(*[a.tolist() for a in compacted.facts_pointing_to(np.array([i]))])) for i in range(len(kb))
    ] == facts
    assert compacted.find_titles(["Parc des Princes", "Paris"]).tolist() == titles
    np.testing.assert_array_equal(compacted.embeddings(np.arange(len(kb))), embeddings)
    append_segment(path, new_entities("N", 2))  # adding after compaction works
    assert top_ids(RefinedKB.load(path), "N1 alias") == ["N1"]
