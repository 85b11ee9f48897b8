"""What the command line prints fits 120 columns: prose is wrapped at word boundaries, tables are laid out to fit."""

import shutil
from pathlib import Path

from attnplace.cli import main
from attnplace.terminal import WIDTH, wrap_line

ROOT = Path(__file__).resolve().parents[1]


def test_a_long_prose_line_wraps_at_spaces_and_keeps_a_long_word_whole():
    words = ["omnibus:"] + ["Friedman χ²(5) = 15.57, p = 0.008;"] * 6 + ["results/" + "x" * 130]
    lines = wrap_line(" ".join(words)).splitlines()
    assert len(lines) > 1 and all(line.startswith("  ") for line in lines[1:])
    assert " ".join(" ".join(lines).split()) == " ".join(words)  # nothing lost, nothing cut inside a word
    assert all(len(line) <= WIDTH for line in lines if "xxx" not in line)
    assert wrap_line("short") == "short"


def committed_study(name: str, into: Path) -> Path:
    """A copy of a committed study's records (the report writes its tables beside them)."""
    source, study = ROOT / "results" / name, into / name
    for path in [*source.glob("runs/*/record.json"), source / "grid.json", source / "calls.jsonl"]:
        (study / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, study / path.relative_to(source))
    return study


def test_report_of_a_committed_study_fits_120_columns(tmp_path, capsys):
    assert main(["report", str(committed_study("cbam_cpu", tmp_path))]) == 0
    out = capsys.readouterr()
    assert max(map(len, (out.out + out.err).splitlines())) <= WIDTH
    assert "tables and plots: " in out.out and "Friedman" in out.out


def test_the_smoke_grid_fits_120_columns(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["grid", "experiments/smoke.yaml", f"output_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= WIDTH and "grid smoke: 6/6 runs completed" in out
