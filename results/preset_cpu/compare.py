"""Two values of one trainer setting, per variant and for the p2 − none gap, paired by seed (test accuracy).

    python results/preset_cpu/compare.py RESULTS_DIR [AXIS BEFORE AFTER]

Default: `trainer.channels_last` false (fp32 eager, as every earlier CPU study trained) against true (the preset
of a CPU without native bf16); `results/bf16_cpu` compares `trainer.precision` 32-true with bf16-mixed.
"""
import json
import sys
from pathlib import Path

import yaml

from attnplace.report import stats

MARGIN = 0.005
root = Path(sys.argv[1])
axis, *values = sys.argv[2:] or ["trainer.channels_last", "false", "true"]
before, after = (yaml.safe_load(v) for v in values)  # as a grid file would read them: false -> False
names = {False: "fp32 eager", True: "preset"} if axis == "trainer.channels_last" else {before: before, after: after}
section, key = axis.split(".")
acc = {}
for f in sorted(root.glob("runs/*/record.json")):
    r = json.loads(f.read_text())
    if r["status"] == "completed":
        setting = (r["config"]["model"]["pattern"], r["config"][section][key])
        acc.setdefault(setting, {})[r["config"]["seed"]] = r["metrics"]["test_acc"]
lines = ["| comparison (test accuracy, pp) | pairs | Δ | 95% CI | p | TOST p (±0.5 pp) | detectable Δ (80 %) |",
         "|---|---:|---:|---:|---:|---:|---:|"]


def row(name, a, b):
    c = stats.compare(a, b)
    low, high = c.ci
    lines.append(f"| {name} | {c.n_pairs} | {100 * c.diff:+.2f} | [{100 * low:+.2f}, {100 * high:+.2f}] | {c.p_value:.3f} "
                 f"| {c.tost_p(MARGIN):.3f} | {100 * stats.detectable_difference(c.sd_diff, c.n_pairs):.2f} |")


change = f"{names[after]} − {names[before]}"
for pattern in ("none", "p2"):
    row(f"{pattern}: {change}", acc[(pattern, after)], acc[(pattern, before)])
gaps = {}
for value in (before, after):
    row(f"p2 − none, {names[value]}", acc[("p2", value)], acc[("none", value)])
    gaps[value] = {s: acc[("p2", value)][s] - acc[("none", value)][s] for s in acc[("p2", value)]
                   if s in acc[("none", value)]}
row(f"(p2 − none): {change}", gaps[after], gaps[before])
print("\n".join(lines))
