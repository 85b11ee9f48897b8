"""Seed blocks in the report: the tables pair within the counted blocks only, each block's hardware is listed,
hardware may differ between blocks but not within one, whether the hardware changes the paired differences, and
data fingerprints that never pool two datasets. Hand-written records with known answers."""

import json

import numpy as np
import pytest
from record_fixtures import environment, record, row, write_runs
from scipy import stats

from attnplace.cli import main
from attnplace.errors import UserError
from attnplace.report.build import write_report
from attnplace.report.hardware import hardware_tests
from attnplace.report.records import load, load_records

AMD = "AMD EPYC, torch kernels AVX2"
XEON = "Intel Xeon, torch kernels AVX512"
GAIN = {"none": 0.0, "p1": 0.02, "p2": 0.01}


def study(patterns=("none", "p1", "p2"), seeds=range(3), kinds=None, suffix="") -> list[dict]:
    """Every pattern on every seed, accuracy 0.80 + 0.01·seed + its gain; seed s on hardware kinds[s] (AMD by
    default). `suffix` ends each run id, as the grid's 8 hex digits do."""
    recs = []
    for pattern in patterns:
        for seed in seeds:
            rec = record(pattern, seed, 0.80 + 0.01 * seed + GAIN[pattern],
                         environment=environment(cpu=(kinds or {}).get(seed, AMD)))
            rec["id"] += suffix
            recs.append(rec)
    return recs


def without(recs: list[dict], *ids: str) -> list[dict]:
    return [r for r in recs if r["id"] not in ids]


# ---------------------------------------------------------------- which blocks the tables hold


def test_a_partial_block_is_left_out_of_every_table_and_named(tmp_path, capsys):
    """Seed 2 lacks p2: it is gone from every variant's n, not only from p2's."""
    report = write_report(write_runs(tmp_path, without(study(), "resnet20-p2-se-s2")))
    assert report.summary["n"].tolist() == [2, 2, 2] and report.summary["n_pairs"].tolist()[1:] == [2, 2]
    assert sorted(set(report.runs["seed"])) == [0, 1] and report.pairs["n_pairs"].eq(2).all()
    assert report.omnibus["n_seeds"].tolist() == [2]
    assert row(report.summary, "p1/se")["acc_mean"] == pytest.approx(0.825)
    left_out = f"block seed 2: partial (2 of 3 runs ended), on {AMD}; not in the tables"
    assert left_out in report.notes
    md = (tmp_path / "summary.md").read_text()
    section = md[md.index("## Seed blocks"):md.index("## Every variant")]
    assert section.splitlines()[2:5] == [f"- block seed 0: counted (3 of 3 runs ended), on {AMD}",
                                         f"- block seed 1: counted (3 of 3 runs ended), on {AMD}", f"- {left_out}"]
    assert md.count(left_out) == 1  # in its section, not again under the table
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"seed blocks in the tables: 2 (seed 0, 1: 2 on {AMD})\n{left_out}\n" in out


def test_a_run_grid_json_lists_but_that_never_started_keeps_its_block_partial(tmp_path):
    """An older grid.json (run ids, no blocks): the run not started belongs to the seed its id names."""
    recs = study(patterns=("none", "p1"), suffix="-0123abcd")
    write_runs(tmp_path, recs)
    (tmp_path / "grid.json").write_text(json.dumps({"name": "g", "axes": {"model.pattern": ["none", "p1", "p2"]},
                                                     "runs": [r["id"] for r in recs] + ["resnet20-p2-se-s1-89abcdef"]}))
    loaded = load(tmp_path)
    assert loaded.blocks[["seed", "status", "ended", "total"]].values.tolist() == \
        [[0, "counted", 2, 2], [1, "partial", 2, 3], [2, "counted", 2, 2]]
    assert sorted(set(loaded.runs["seed"])) == [0, 2] and len(loaded.records) == 4


def test_a_block_holding_a_diverged_run_is_complete_one_that_never_trained_is_not(tmp_path):
    recs = study(patterns=("none", "p1"))
    recs[4] = record("p1", 1, None, status="failed", environment=environment())  # diverged in epoch 3
    recs[5] = record("p1", 2, None, status="failed")  # its data could not be read: no result yet
    recs[5]["failed_epoch"] = None
    report = write_report(write_runs(tmp_path, recs))
    p1 = row(report.summary, "p1/se")
    assert (p1["n"], p1["failures"], row(report.summary, "none")["n"]) == (1, 1, 2)
    assert report.blocks["status"].tolist() == ["counted", "counted", "partial"]
    assert f"block seed 2: partial (1 of 2 runs ended), on {AMD}; not in the tables" in report.notes


def _frozen(root, counted, wanted=2):
    """none and p1 on seeds 0-2, every block complete; grid.json's blocks as the grid writes them."""
    recs = study(patterns=("none", "p1"), suffix="-0123abcd")
    write_runs(root, recs)
    seeds = {str(s): [r["id"] for r in recs if r["config"]["seed"] == s] for s in range(3)}
    (root / "grid.json").write_text(json.dumps({"name": "g", "axes": {"model.pattern": ["none", "p1"]},
                                                 "runs": [r["id"] for r in recs],
                                                 "blocks": {"wanted": wanted, "seeds": seeds, "counted": counted}}))
    return root


def test_counted_blocks_frozen_in_grid_json_win_over_seed_order(tmp_path):
    report = write_report(_frozen(tmp_path, counted=[0, 2]))
    assert sorted(set(report.runs["seed"])) == [0, 2]
    assert row(report.summary, "p1/se")["acc_mean"] == pytest.approx((0.82 + 0.84) / 2)
    assert report.blocks["status"].tolist() == ["counted", "extra", "counted"]
    assert report.block_notes[:2] == [
        f"seed blocks in the tables: 2 (seed 0, 2: 2 on {AMD})",
        f"block seed 1: extra (2 of 2 runs ended), on {AMD}; complete after the first 2 counted: reported beside "
        f"them, not in the tables"]


@pytest.mark.parametrize("frozen", [[0, 1], [0, 2]])
def test_a_study_that_asks_for_more_blocks_adds_the_next_complete_ones_to_its_frozen_blocks(tmp_path, frozen):
    """`blocks: 2` became `blocks: 3` in the grid file: the frozen blocks stay, the next complete one joins."""
    report = write_report(_frozen(tmp_path, counted=frozen, wanted=3))
    assert sorted(set(report.runs["seed"])) == [0, 1, 2]
    assert report.blocks["status"].tolist() == ["counted"] * 3
    assert report.block_notes[0] == f"seed blocks in the tables: 3 (seed 0, 1, 2: 3 on {AMD})"


@pytest.mark.parametrize("wanted, seeds, first", [(2, [0, 1], "seed blocks in the tables: 2 (seed 0, 1:"),
                                                  (5, [0, 1, 2], "seed blocks in the tables: 3 of 5 wanted (seed 0,")])
def test_before_the_grid_froze_them_the_first_complete_blocks_count(tmp_path, wanted, seeds, first):
    report = write_report(_frozen(tmp_path, counted=None, wanted=wanted))
    assert sorted(set(report.runs["seed"])) == seeds and report.block_notes[0].startswith(first)


def test_no_complete_block_is_refused_in_one_line(tmp_path):
    recs = without(study(patterns=("none", "p1"), seeds=range(2)), "resnet20-p1-se-s0", "resnet20-none-se-s1")
    with pytest.raises(UserError) as err:
        load_records(write_runs(tmp_path, recs))
    assert str(err.value) == (f"{tmp_path}: no complete seed block yet (seed 0: 1 of 2 runs ended; seed 1: 1 of 2 "
                              f"runs ended): a table pairs its variants within blocks whose every run has ended; "
                              f"rerun the grid command to finish one")


# ---------------------------------------------------------------- hardware


def test_hardware_may_differ_between_blocks_but_not_within_one(tmp_path, capsys):
    report = write_report(write_runs(tmp_path / "ok", study(kinds={2: XEON})))
    assert not any("differ in" in line for line in report.caveats)
    assert report.blocks["hardware"].tolist() == [AMD, AMD, XEON]
    mixed = study(patterns=("none", "p1"), seeds=range(2))
    mixed[3]["environment"] = environment(cpu=XEON)  # p1 on seed 1
    folder = write_runs(tmp_path / "mixed", mixed)
    with pytest.raises(UserError) as err:
        load_records(folder)
    assert str(err.value).startswith(f"{folder}: runs differ in hardware within seed block 1 ({AMD}: 1 run(s), "
                                     f"{XEON}: 1 run(s)); a table never mixes")
    assert main(["report", str(folder)]) == 2 and capsys.readouterr().err.count("\n") == 1
    allowed = write_report(folder, allow_mixed_environments=True)
    assert any(line.startswith("warning: runs differ in hardware within seed block 1") for line in allowed.caveats)
    assert f"block seed 1: counted (2 of 2 runs ended), on {AMD} and {XEON}" in \
        (folder / "summary.md").read_text()


DELTAS = {"p1": {AMD: [1.0, 2.0], XEON: [3.0, 5.0]}, "p2": {AMD: [0.5, -0.5], XEON: [0.2, 0.4]}}  # pp per block
BASE = [0.80, 0.82, 0.81, 0.83]
KINDS = [AMD, AMD, XEON, XEON]


def _known_deltas(root):
    """Seeds 0, 1 on AMD and 2, 3 on Xeon; each variant's Δ against none on each block is DELTAS'."""
    recs = [record("none", s, BASE[s], environment=environment(cpu=KINDS[s])) for s in range(4)]
    for pattern, by_kind in DELTAS.items():
        deltas = by_kind[AMD] + by_kind[XEON]
        recs += [record(pattern, s, BASE[s] + deltas[s] / 100, environment=environment(cpu=KINDS[s]))
                 for s in range(4)]
    return write_runs(root, recs)


def test_hardware_by_variant_compares_the_paired_differences_between_kinds(tmp_path, capsys):
    report = write_report(_known_deltas(tmp_path))
    tests = report.hardware.set_index("variant")
    welch = {v: stats.ttest_ind(d[AMD], d[XEON], equal_var=False) for v, d in DELTAS.items()}
    for variant, result in welch.items():
        got = tests.loc[f"{variant}/se"]
        assert (got["kind_a"], got["n_a"], got["kind_b"], got["n_b"]) == (AMD, 2, XEON, 2)
        assert (got["diff_a"], got["diff_b"]) == pytest.approx((sum(DELTAS[variant][AMD]) / 2,
                                                                sum(DELTAS[variant][XEON]) / 2))
        assert (got["t"], got["p_value"]) == pytest.approx((result.statistic, result.pvalue), rel=1e-6)
    low, high = sorted(r.pvalue for r in welch.values())  # Holm over the 2 tests, by hand
    assert sorted(tests["p_holm"]) == pytest.approx([2 * low, max(2 * low, high)], rel=1e-6)
    assert welch["p1"].pvalue == low
    line = (f"hardware × variant: smallest Holm p = {2 * low:.3f} over 2 test(s) (p1/se: Δ +1.50 pp on {AMD} "
            f"(2 blocks) vs +4.00 pp on {XEON} (2 blocks)); the paired differences do not depend on the hardware "
            f"detectably")
    assert report.notes[-1] == line
    md = (tmp_path / "summary.md").read_text()
    assert f"- block seed 2: counted (3 of 3 runs ended), on {XEON}" in md and f"- {line}" in md
    assert main(["report", str(tmp_path)]) == 0
    assert f"seed blocks in the tables: 4 (seed 0, 1, 2, 3: 2 on {AMD}; 2 on {XEON})" in capsys.readouterr().out


def test_with_three_kinds_each_pair_of_kinds_is_tested(tmp_path):
    kinds = dict(enumerate([AMD, AMD, XEON, XEON, "NVIDIA H200", "NVIDIA H200"]))
    runs = load_records(write_runs(tmp_path, study(patterns=("none", "p1"), seeds=range(6), kinds=kinds)))[0]
    tests = hardware_tests(runs)
    assert list(zip(tests["kind_a"], tests["kind_b"])) == [(AMD, XEON), (AMD, "NVIDIA H200"), (XEON, "NVIDIA H200")]
    assert tests["p_value"].isna().all()  # Δ is 2 pp on every block: no spread, no test
    assert report_line(tmp_path).endswith("no variant has a paired Δ that varies, on ≥ 2 blocks of each of 2 "
                                          f"hardware kinds ({AMD}: 2, {XEON}: 2, NVIDIA H200: 2)")


def test_equal_differences_through_float32_are_no_spread_between_kinds(tmp_path):
    """p1 beats none by 37 of 10,000 test images on every block; records hold float32 accuracies, so each Δ
    differs from 0.37 pp in its last bits. That rounding is no spread: no t, no p."""
    kinds = dict(enumerate([AMD, AMD, XEON, XEON]))
    recs = [record(pattern, seed, float(np.float32((7000 + 113 * seed + gain) / 10_000)),
                   environment=environment(cpu=kinds[seed]))
            for pattern, gain in (("none", 0), ("p1", 37)) for seed in kinds]
    tests = hardware_tests(load_records(write_runs(tmp_path, recs))[0])
    assert (tests["diff_a"].tolist(), tests["diff_b"].tolist()) == (pytest.approx([0.37], abs=1e-4),) * 2
    assert tests["t"].isna().all() and tests["p_value"].isna().all()


def report_line(folder) -> str:
    return next(n for n in write_report(folder).notes if n.startswith("hardware × variant"))


@pytest.mark.parametrize("kinds, line", [
    ({4: XEON}, f"hardware × variant: not testable: needs ≥ 2 blocks on each of ≥ 2 hardware kinds ({AMD}: 4, "
                f"{XEON}: 1)"),
    ({}, f"hardware × variant: all 5 counted blocks ran on one hardware kind ({AMD})"),
])
def test_hardware_by_variant_says_why_it_could_not_test(tmp_path, kinds, line):
    folder = write_runs(tmp_path, study(seeds=range(5), kinds=kinds))
    assert report_line(folder) == line
    assert hardware_tests(load_records(folder)[0]).empty


# ---------------------------------------------------------------- data fingerprints

DATA = "../shared/data/cifar10-jpeg.tar.gz"


def _fingerprinted(*fingerprints):
    """none and p1 on seeds 0, 1, reading DATA, with these fingerprints in turn (None: an older record)."""
    recs = study(patterns=("none", "p1"), seeds=range(2))
    for rec, fingerprint in zip(recs, fingerprints):
        rec["config"]["data"] = {"name": "imagefolder", "path": DATA}
        rec["data_fingerprint"] = fingerprint
    return recs


def test_two_data_fingerprints_are_refused_in_one_line_whatever_the_flags(tmp_path, capsys):
    folder = write_runs(tmp_path, _fingerprinted("3f2a" * 16, "3f2a" * 16, "3f2a" * 16, "9b1c" * 16))
    message = (f"{folder}: runs read different data at {DATA}: data fingerprint 3f2a3f2a3f2a… (3 runs) vs "
               f"9b1c9b1c9b1c… (1 run); a table never pools two datasets")
    for allow in (False, True):
        with pytest.raises(UserError) as err:
            write_report(folder, allow_mixed_environments=allow)
        assert str(err.value) == message
    assert main(["report", str(folder), "--allow-mixed-environments"]) == 2
    assert capsys.readouterr().err == f"attnplace: error: {message}\n"


def test_runs_older_than_fingerprints_pool_with_the_others_and_say_so(tmp_path):
    report = write_report(write_runs(tmp_path, _fingerprinted("3f2a" * 16, None, "3f2a" * 16, None)))
    assert report.runs["data_fingerprint"].isna().tolist() == [False, True, False, True]
    assert f"2 runs predate data fingerprints: taken to have read the same data as the others at {DATA}" in \
        report.notes
    older = write_report(write_runs(tmp_path / "older", _fingerprinted(None, None, None, None)))
    assert not any("fingerprint" in line for line in older.notes)
