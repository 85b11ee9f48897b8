"""The atlas's regime figure: one where × how cell followed from regime to regime (here 10 and 30 epochs of the
same study design), its Δ against `none` in each, drawn to atlas_regimes.png and listed in atlas.md."""

import pytest
from record_fixtures import study_record, write_runs

from attnplace.report.atlas_page import write_atlas


# One cell, SE p2 × mask in fp32, in two regimes: 10 epochs (6 pp below none on every seed) and 30 (2 pp below).
REGIMES = {10: {"none": [0.66, 0.67, 0.65], "p2": [0.60, 0.61, 0.59]},
           30: {"none": [0.77, 0.78, 0.76], "p2": [0.75, 0.76, 0.74]}}


def test_the_regime_figure_follows_one_cell_from_regime_to_regime(tmp_path):
    from attnplace.report.regimes import regime_frame

    for epochs, table in REGIMES.items():
        recs = [study_record(p, s, a, epochs=epochs, attention="none" if p == "none" else "se")
                for p, accs in table.items() for s, a in enumerate(accs)]
        write_runs(tmp_path / f"e{epochs}", recs, {"seed": [0, 1, 2], "model.pattern": ["none", "p2"]})
    atlas, written = write_atlas(tmp_path)
    assert list(atlas.rows["study"]) == ["e30", "e10"]  # the converged rows first
    frame = regime_frame(atlas.rows, atlas.cells)
    assert list(frame["study"]) == ["e10", "e30"] and set(frame["cell"]) == {"p2 × mask"}
    assert list(frame["regime"]) == ["resnet20, 10,000 images × 10 epochs", "resnet20, 10,000 images × 30 epochs"]
    assert frame["delta_pp"].tolist() == pytest.approx([-6.0, -2.0])
    assert (frame["precision"] == "32-true").all() and (frame["attention"] == "se").all()
    assert [p.name for p in written] == ["atlas.md", "atlas.png", "atlas_regimes.png"]
    text = (tmp_path / "atlas.md").read_text()
    assert "| se | p2 × mask | 32-true | resnet20, 10,000 images × 30 epochs | e30 | 3 | −2.00 [" in text


def test_a_regime_on_one_seed_shows_its_delta_with_no_ci_and_no_verdict(tmp_path):
    """A study with one complete block so far (a long study under way): its Δ is a point, said as such."""
    for epochs, table in REGIMES.items():
        seeds = range(3) if epochs == 10 else range(1)
        recs = [study_record(p, s, accs[s], epochs=epochs, attention="none" if p == "none" else "se")
                for p, accs in table.items() for s in seeds]
        write_runs(tmp_path / f"e{epochs}", recs, {"seed": list(seeds), "model.pattern": ["none", "p2"]})
    write_atlas(tmp_path)
    text = (tmp_path / "atlas.md").read_text()
    assert "| e30 | 1 | −2.00 [CI undefined] untested |" in text and "nan" not in text
