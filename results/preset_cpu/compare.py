"""fp32 eager against the CPU preset, per variant and for the p2 − none gap, paired by seed (test accuracy)."""
import json
import sys
from pathlib import Path

from attnplace.report import stats

MARGIN = 0.005
root = Path(sys.argv[1])
acc = {}
for f in sorted(root.glob("runs/*/record.json")):
    r = json.loads(f.read_text())
    if r["status"] == "completed":
        key = (r["config"]["model"]["pattern"], r["config"]["trainer"]["channels_last"])
        acc.setdefault(key, {})[r["config"]["seed"]] = r["metrics"]["test_acc"]
lines = ["| comparison (test accuracy, pp) | pairs | Δ | 95% CI | p | TOST p (±0.5 pp) | detectable Δ (80 %) |",
         "|---|---:|---:|---:|---:|---:|---:|"]


def row(name, a, b):
    c = stats.compare(a, b)
    low, high = c.ci
    lines.append(f"| {name} | {c.n_pairs} | {100 * c.diff:+.2f} | [{100 * low:+.2f}, {100 * high:+.2f}] | {c.p_value:.3f} "
                 f"| {c.tost_p(MARGIN):.3f} | {100 * stats.detectable_difference(c.sd_diff, c.n_pairs):.2f} |")


for pattern in ("none", "p2"):
    row(f"{pattern}: preset − fp32 eager", acc[(pattern, True)], acc[(pattern, False)])
gaps = {}
for cl, name in ((False, "fp32 eager"), (True, "preset")):
    row(f"p2 − none, {name}", acc[("p2", cl)], acc[("none", cl)])
    gaps[cl] = {s: acc[("p2", cl)][s] - acc[("none", cl)][s] for s in acc[("p2", cl)] if s in acc[("none", cl)]}
row("(p2 − none): preset − fp32 eager", gaps[True], gaps[False])
print("\n".join(lines))
