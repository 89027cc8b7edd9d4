"""The README's quick-start commands are the ones CI runs."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_ci_runs_the_readme_commands():
    commands = quick_start_commands()
    assert len(commands) == 2, "the quick start shows two commands: set up + main job, and tests"
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    for command in commands:
        assert command in ci_lines, f"CI does not run the README command: {command}"
    assert "pytest" in commands[1]


def test_embedded_assets_exist():
    for command in quick_start_commands():
        for path in re.findall(r"assets/\S+", command):
            assert (ROOT / path).exists(), path
