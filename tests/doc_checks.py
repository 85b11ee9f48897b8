"""The checks test_docs.py runs on the docs, and the markdown reading they share: each check takes a document's
text and returns its problems (an empty list when the document is true to the code and the files), so that a test
asserts it returns none and another plants a stale line to see it found. What each check holds is told in
test_docs.py's docstring."""

import dataclasses
import glob
import io
import itertools
import re
import shlex
import typing
from contextlib import redirect_stderr
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A placeholder of a usage line -> a value the parser accepts as a user would type it.
PLACEHOLDERS = {
    "GRID.yaml": "experiments/smoke.yaml", "CONFIG.yaml": "configs/quickstart.yaml", "RESULTS_DIR": "results/smoke",
    "RESULTS_ROOT": "results", "STUDY_A": "results/where_and_how_cpu", "STUDY_B": "results/length_cpu",
    "VARIANT": "p1/se", "N": "2", "PP": "0.5", "SEEDS": "0,1,2", "AXIS": "model.gate", "F": "0.25",
    "HOST:PORT": "10.0.0.1:6379",
}
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(:[A-Z]+)?(\.ya?ml)?")
# Folders the docs name as what a script writes on a GPU machine; none is committed yet.
NOT_COMMITTED = {"results/cifar10_placement/": "benchmarks/gpu_study.sh writes it (docs/gpu.md)"}
CONFIG_SECTIONS = ("model", "data", "optim", "trainer", "wandb")
FILE_SUFFIXES = ("py", "md", "csv", "json", "jsonl", "yaml", "yml", "png", "tex", "txt", "ckpt")


# ---------------------------------------------------------------- reading markdown


def fenced_and_prose(markdown: str) -> tuple[list[str], str]:
    """The lines inside fenced code blocks, and the rest (prose, where inline code spans live)."""
    code, prose, fenced = [], [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            code.append(line)
        else:
            prose.append(line)
    return code, "\n".join(prose)


def inline_spans(markdown: str) -> list[str]:
    """The inline code spans of the prose, a line break inside one read as a space."""
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", fenced_and_prose(markdown)[1])]


def command_lines(markdown: str) -> list[tuple[str, bool]]:
    """Every `attnplace …` command: (the line, whether it is an inline span)."""
    code, lines, pending = fenced_and_prose(markdown)[0], [], ""
    for line in code:
        line = pending + line.strip()
        pending = line[:-1] + " " if line.endswith("\\") else ""
        if not pending and line.startswith("attnplace "):
            lines.append((line, False))
    return lines + [(span, True) for span in inline_spans(markdown) if span.startswith("attnplace ")]


def headings(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces as hyphens."""
    titles = [line.lstrip("#").strip() for line in fenced_and_prose(markdown)[1].splitlines() if line.startswith("#")]
    return {re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-") for title in titles}


# ---------------------------------------------------------------- the checks: each returns its problems


def words(line: str) -> list[str]:
    """A command line's words, `#` comments and usage brackets dropped; `\\|` (a pipe inside a table) is `|`."""
    tokens = shlex.split(line.replace("\\|", "|"), comments=True)
    return [t for t in (token.strip("[]") for token in tokens) if t and t.strip(".…")]


def is_placeholder(word: str) -> bool:
    """`GRID.yaml`, `N`, `<name>`, `…`: a word the reader fills in."""
    return bool(PLACEHOLDER.fullmatch(word)) or "<" in word or "…" in word


def concrete(line: str) -> list[list[str]]:
    """The argv lists a (usage) line stands for: one per choice among its alternatives, placeholders filled."""
    choices = [word.split("|") if "|" in word else [word] for word in words(line)[1:]]
    return [[PLACEHOLDERS.get(w, w) for w in argv] for argv in itertools.product(*choices)]


def parse(argv: list[str]) -> tuple[object | None, str | None]:
    """`attnplace argv` parsed as `main()` parses it: (the arguments, with trailing overrides joined to
    `overrides`, and None), or (None, why it does not parse)."""
    from attnplace.cli import build_parser

    parser, stderr = build_parser(), io.StringIO()
    try:
        with redirect_stderr(stderr):
            args, extra = parser.parse_known_args(argv)
    except SystemExit:
        return None, stderr.getvalue().strip().splitlines()[-1]
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        return None, f"unrecognized arguments: {' '.join(stray)}"
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args, None


def parse_problem(argv: list[str]) -> str | None:
    """Why `attnplace argv` would not parse; None when it parses."""
    return parse(argv)[1]


def command_names() -> set[str]:
    from attnplace.cli import build_parser

    actions = [a for a in build_parser()._actions if a.choices and a.dest == "command"]
    return set(actions[0].choices)


def command_problems(markdown: str) -> list[str]:
    """Command lines that the CLI would refuse, or that name a config or grid file that is not there."""
    problems = []
    for line, inline in command_lines(markdown):
        argv = words(line)[1:]
        if inline and len(argv) == 1 and argv[0] in command_names():  # `attnplace grid` named in prose
            continue
        problems += [f"{line!r}: {problem}" for problem in map(parse_problem, concrete(line)) if problem]
        problems += [f"{line!r}: no file {word}" for word in argv
                     if word.endswith((".yaml", ".yml")) and not is_placeholder(word) and not (ROOT / word).exists()]
    return problems


def schema_keys(cls: type | None = None, prefix: str = "") -> set[str]:
    """Every key of the config schema, dotted: the fields of `Config` and, recursively, of its sections."""
    from attnplace.run.config import Config

    cls = cls or Config
    hints, keys = typing.get_type_hints(cls), set()
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            keys |= schema_keys(kind, f"{prefix}{field.name}.")
        else:
            keys.add(prefix + field.name)
    return keys


def grid_file_keys() -> set[str]:
    """The keys a grid file may hold, and the settings of its `report:` section."""
    from attnplace.grid.spec import GRID_KEYS
    from attnplace.run.report_settings import ReportSettings

    return set(GRID_KEYS) | {f"report.{f.name}" for f in dataclasses.fields(ReportSettings)}


def table_keys(markdown: str, header: str) -> set[str]:
    """The backticked first cells of the rows of the tables whose first header cell is `header`."""
    keys, inside = set(), False
    for line in fenced_and_prose(markdown)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if not cells:
            inside = False
        elif cells[0] == header:
            inside = True
        elif inside and (key := re.fullmatch(r"`([^`]+)`", cells[0])):
            keys.add(key.group(1))
    return keys


def named_keys(markdown: str) -> set[str]:
    """The config keys the docs name: inline spans that are a dotted key or `key=value` (a grid file's `report.`
    settings count as keys too), and every override of a command line but the usage lines' `key=value`."""
    sections = "|".join((*CONFIG_SECTIONS, "report"))
    spans = {span.split("=")[0] for span in inline_spans(markdown)}
    parsed = [parse(argv)[0] for line, _ in command_lines(markdown) for argv in concrete(line)]
    given = [[*getattr(args, "overrides", ()), getattr(args, "config", None) or ""] for args in parsed if args]
    overrides = {o.split("=")[0] for args in given for o in args if "=" in o}  # `fit key=value`: no config file
    return {key for key in spans
            if re.fullmatch(rf"({sections})\.[a-z_0-9]+", key) and key.rsplit(".", 1)[1] not in FILE_SUFFIXES} \
        | (overrides - {"key"})


def unknown_keys(markdown: str) -> list[str]:
    """Keys the docs name, in key tables or anywhere else, that neither the schema nor a grid file has."""
    known = schema_keys() | grid_file_keys()
    named = table_keys(markdown, "config key") | table_keys(markdown, "grid-file key") | named_keys(markdown)
    return sorted(named - known)


def undocumented_keys(configuration: str) -> list[str]:
    """Schema keys without a row in a `config key` table, and grid-file keys without one in the `grid-file key`
    table."""
    return sorted((schema_keys() - table_keys(configuration, "config key"))
                  | (grid_file_keys() - table_keys(configuration, "grid-file key")))


def results_paths(markdown: str) -> set[str]:
    """The `results/…` paths the text names (not `…/results`, nor a link's `../results/…`, which links check)."""
    found = re.findall(r"(?<![\w./-])results/[^\s`'\")\]|,;]*", markdown)
    return {path.rstrip(".:") for path in found}


def missing_results_paths(markdown: str) -> list[str]:
    """Named `results/…` paths that are not in the repository (placeholders and `NOT_COMMITTED` aside)."""
    missing = []
    for path in sorted(results_paths(markdown)):
        if path in NOT_COMMITTED or any(is_placeholder(part) for part in path.split("/") if part):
            continue
        if not (glob.glob(str(ROOT / path)) if "*" in path else (ROOT / path).exists()):
            missing.append(path)
    return missing


def broken_links(document: Path, markdown: str) -> list[str]:
    """Relative links whose file is missing, or whose `#anchor` is no heading of the markdown file they name."""
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", fenced_and_prose(markdown)[1]):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        if not file.exists():
            problems.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in headings(file.read_text()):
            problems.append(f"{target}: no heading #{anchor} in {file.name}")
    return problems
