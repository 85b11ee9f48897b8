"""Docs that cannot go stale: README.md, docs/*.md and results/README.md checked against the code and the files.

A reader copies commands, keys and paths from the docs; each check here fails the day one of them stops being
true, instead of the day a newcomer trips on it.

- Command lines. Every `attnplace …` line of a fenced code block (continued over `\\` line ends, `#` comments
  dropped) and every inline code span that starts with `attnplace ` is parsed by the CLI's own parser
  (`attnplace.cli.build_parser`), the way `main()` parses it: `parse_known_args`, and the extras are overrides,
  each holding `=` and not starting with `-`. An inline span of one word after `attnplace` (`attnplace grid`)
  names a command in prose: only the command's name is checked. Usage lines (the commands tables) are made
  concrete first: `[`, `]` and `...` are dropped, a word with alternatives (`N|auto`, written `N\\|auto` in a
  table) yields one command line per alternative, and an all-capitals placeholder (`GRID.yaml`, `RESULTS_DIR`,
  `N`) is replaced by a real value (`PLACEHOLDERS`) before parsing. Every `.yaml`/`.yml` file a line names must
  exist, relative to the repository root; placeholders name no file and are skipped.
- Config keys. Every key of the schema (the `Config` dataclasses, walked recursively, dotted) has a row in a
  `config key` table of docs/configuration.md, and every row names a key of the schema; the `grid-file key`
  table holds exactly the grid-file keys (`grid.spec.GRID_KEYS`) and the `report.` settings. Every dotted key the
  docs name elsewhere (an inline span such as `model.gate`, an override such as `optim.lr=0.05`) exists too.
- Paths. Every `results/…` path the docs name exists (globs match something); a path holding a placeholder
  (`<name>`, `RESULTS_DIR`) is skipped, and so are the few folders the docs name as what a GPU script will write
  (`NOT_COMMITTED`). Every relative link resolves to a file, and its `#anchor` to a heading there.

`test_each_check_reports_a_planted_stale_line` shows each check failing once. The checks themselves, and the
values they fill in or skip (`PLACEHOLDERS`, `NOT_COMMITTED`), are in doc_checks.py.
"""

from pathlib import Path

import pytest

from doc_checks import (ROOT, broken_links, command_lines, command_names, command_problems, missing_results_paths,
                        undocumented_keys, unknown_keys, words)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "results" / "README.md"]
CONFIGURATION = ROOT / "docs" / "configuration.md"
README_MOST_LINES = 200


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_readme_is_a_front_door():
    """The README is read in ten minutes: at most 200 lines; the rest lives in docs/ and results/README.md."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MOST_LINES, f"README.md has {len(lines)} lines, more than {README_MOST_LINES}"


def test_readme_keeps_the_two_install_commands():
    """The first installs and runs the main job; the second runs the tests, as `.ci/run` does."""
    readme = (ROOT / "README.md").read_text()
    assert ('python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[ray]" && '
            "attnplace grid experiments/smoke.yaml") in readme
    assert 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python -m pytest' in readme


def test_the_docs_hold_command_lines():
    """The checks below would pass on docs they failed to read: the README's commands table must be found."""
    found = {words(line)[1] for line, _ in command_lines((ROOT / "README.md").read_text())}
    assert command_names() <= found


@pytest.mark.parametrize("document", DOCS, ids=doc_id)
def test_every_command_line_parses_and_names_files_that_exist(document):
    """A command copied from the docs runs: the CLI parses it, and the config or grid file it names is there."""
    assert command_problems(document.read_text()) == []


def test_every_config_key_is_documented():
    """A key added to the schema gets its row in docs/configuration.md, with its default and valid values."""
    assert undocumented_keys(CONFIGURATION.read_text()) == []


@pytest.mark.parametrize("document", DOCS, ids=doc_id)
def test_every_key_the_docs_name_exists(document):
    """A renamed or removed key leaves no row or mention behind: every key the docs name is in the schema."""
    assert unknown_keys(document.read_text()) == []


@pytest.mark.parametrize("document", DOCS, ids=doc_id)
def test_every_results_path_exists(document):
    """A study or file the docs point at is committed where they say."""
    assert missing_results_paths(document.read_text()) == []


@pytest.mark.parametrize("document", DOCS, ids=doc_id)
def test_every_relative_link_resolves(document):
    """Links between the pages, and their #anchors, survive a renamed page or heading."""
    assert broken_links(document, document.read_text()) == []


STALE = """
```bash
attnplace fitt x.yaml
attnplace grid experiments/nope.yaml --workers 2
```

Set `optim.nope=1`, then read `results/nope/summary.md`; see [the manual](docs/nope.md).

| config key | default | valid values | what it does |
|---|---|---|---|
| `optim.lr` | `0.1` | a number > 0 | the peak learning rate |
| `optim.nope` | `1` | | |
"""


def test_each_check_reports_a_planted_stale_line():
    """Each check fails on a stale command, key or path: a passing run above means the docs are true."""
    commands = command_problems(STALE)
    assert any("fitt" in p and "invalid choice" in p for p in commands)
    assert any("no file experiments/nope.yaml" in p for p in commands)
    assert unknown_keys(STALE) == ["optim.nope"]
    assert "optim.name" in undocumented_keys(STALE) and "optim.lr" not in undocumented_keys(STALE)
    assert missing_results_paths(STALE) == ["results/nope/summary.md"]
    assert broken_links(ROOT / "README.md", STALE) == [f"docs/nope.md: no file {ROOT / 'docs' / 'nope.md'}"]
