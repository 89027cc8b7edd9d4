"""Packaging: the pipeline package's requirements, an external KB, the install check's input errors.

The full check (build the package, install it into a fresh venv with
`--no-index`, link with `spacy.load`) is CI's last step:
`python -m spacy project run check-package` (scripts/check_package.py).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from conftest import add_linker
from spacy.cli.package import get_third_party_dependencies

import spacy_refined

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipeline(kb_path):
    nlp = spacy.blank("en")
    add_linker(nlp, kb_path, kb_config={"kb_copy": False})
    nlp.initialize()
    return nlp


def test_package_requires_spacy_refined_with_a_version_range(pipeline):
    major, minor, _ = spacy_refined.__version__.split(".")
    expected = f"spacy-refined>={spacy_refined.__version__},<{major}.{int(minor) + 1}.0"
    assert expected in get_third_party_dependencies(pipeline.config)


def test_spacy_package_writes_the_requirement(pipeline, tmp_path):
    pipeline.to_disk(tmp_path / "pipeline")
    (tmp_path / "packages").mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "package",
            tmp_path / "pipeline",
            tmp_path / "packages",
            "--name",
            "tiny",
            "--version",
            "0.0.1",
            "--build",
            "none",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    meta = spacy.util.load_meta(tmp_path / "packages" / "en_tiny-0.0.1" / "meta.json")
    assert any(r.startswith("spacy-refined>=") for r in meta["requirements"])


def test_large_kb_lives_outside_the_pipeline(pipeline, kb_path, tmp_path):
    pipeline.to_disk(tmp_path / "pipeline")
    assert not (tmp_path / "pipeline" / "refined_kb" / "kb").exists()
    moved = shutil.copytree(kb_path, tmp_path / "elsewhere" / "kb")
    nlp = spacy.load(tmp_path / "pipeline", config={"components": {"refined_kb": {"external_kb_path": str(moved)}}})
    assert nlp.get_pipe("refined_linker").kb.path.resolve() == moved.resolve()


def test_check_package_stops_on_a_missing_wheel(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            ROOT / "scripts" / "check_package.py",
            tmp_path / "missing.whl",
            "en_x",
            "--work-dir",
            tmp_path / "work",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: package wheel {tmp_path / 'missing.whl'} does not exist (run `python -m spacy project run package`)"
    ]
