"""The README's quick-start commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def ci_commands():
    """The commands of .ci/run, without the `|| fail ...` guard that makes a broken `&&` chain stop CI."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [line.split(" || fail ")[0] for line in lines if line and not line.startswith("#")]


def test_ci_runs_the_readme_commands():
    commands = quick_start_commands()
    assert len(commands) == 2, "the quick start shows two commands: set up + main job, and tests"
    ci_lines = ci_commands()
    for command in commands:
        assert command in ci_lines, f"CI does not run the README command: {command}"
    assert "pytest" in commands[1]


def test_embedded_assets_exist():
    for command in quick_start_commands():
        for path in re.findall(r"assets/\S+", command):
            assert (ROOT / path).exists(), path


def section(title: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf8")
    return readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_ci_checks_the_package_as_the_readme_says():
    ci_lines = ci_commands()
    blocks = re.findall(r"```bash\n(.*?)\n```", section("Packaging"), flags=re.S)
    checks = [block for block in blocks if "check-package" in block]
    assert checks and all(block in ci_lines for block in checks)


def test_readme_project_steps_are_the_project_commands():
    import srsly

    project = srsly.read_yaml(ROOT / "project.yml")
    steps = re.findall(r"^\| `([\w-]+)` \|", section("The spaCy project"), flags=re.M)
    assert steps == [c["name"] for c in project["commands"]]
    assert project["workflows"]["all"] == [s for s in steps if s != "check-package"]


def test_readme_cli_table_lists_the_commands():
    import typer.main

    from spacy_refined.cli import app

    group = typer.main.get_command(app)
    shown = re.findall(r"^\| `([\w -]+?)(?: [A-Z][^`]*)?` \|", section("Command line"), flags=re.M)
    for name in shown:
        command = group
        for part in name.split():
            command = command.commands[part]
    assert {name.split()[0] for name in shown} == set(group.commands)


def test_readme_settings_table_lists_every_setting():
    from spacy.language import Language

    import spacy_refined.pipeline  # noqa: F401 (the factories)

    rows = re.findall(r"^\| `(refined_\w+)` \| `([\w`, ]+)` \|", section("Linking with a trained pipeline"), flags=re.M)
    shown = {(component, name.strip("` ")) for component, names in rows for name in names.split(",")}
    for factory in ("refined_kb", "refined_linker"):
        settings = set(Language.get_factory_meta(factory).default_config) - {"model"}
        assert {name for component, name in shown if component == factory} == settings, factory
