"""Grid files: a name, a base config, axes (config keys × value lists) and exclude rules.

    name: cifar10_placement
    base: {model: {backbone: resnet20}, data: {...}, trainer: {max_epochs: 30}}
    axes:
      model.pattern: [none, p1, p2, p3, p3c, p4]
      model.attention: [se, eca, cbam, coord]
      seed: [0, 1, 2]
    exclude:
      - {model.pattern: p3, model.attention: coord}   # all keys must match; a list matches any of its values
    report: {baseline: p1/se, metric: val_acc, equivalence_margin: 0.5,   # optional: how the table reads
             within: [model.gate], factorial: [model.pattern, model.gate]}

The product of the axes, minus excluded combinations, is the run list. Runs are canonicalised (see
`config.canonical`), so e.g. the `none` baseline appears once per seed, not once per attention type.
The `report` section travels in the grid's `grid.json`, so `attnplace report` reads the table as the grid
file asks (its command-line flags override it).
"""

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..report.settings import report_settings
from ..train.config import Config, canonical
from ..train.config_io import from_dict, merge, parse_override, read_yaml

GRID_KEYS = ("name", "base", "axes", "exclude", "report")
@dataclass(frozen=True)
class GridRun:
    config: Config
    axes: dict  # this run's value of every axis key, read back from the resolved config

    @property
    def id(self) -> str:
        return self.config.run_id


@dataclass(frozen=True)
class Grid:
    name: str
    axes: dict[str, list]
    runs: list[GridRun]
    results_dir: Path
    report: dict = dataclasses.field(default_factory=dict)  # the grid file's `report:` section, as written

    def describe(self) -> dict:
        return {"name": self.name, "axes": self.axes, "runs": [r.id for r in self.runs], "report": self.report}


def load_grid(path: str | Path, overrides: list[str] = ()) -> Grid:
    spec = read_yaml(path)
    unknown = sorted(set(spec) - set(GRID_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; valid: {', '.join(GRID_KEYS)}")
    name = spec.get("name") or Path(path).stem
    axes = spec.get("axes") or {}
    if not isinstance(axes, dict) or not all(isinstance(v, list) and v for v in axes.values()):
        raise UserError(f"{path}: axes must map config keys to non-empty lists of values")
    exclude = spec.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(rule, dict) for rule in exclude):
        raise UserError(f"{path}: exclude must be a list of mappings (key: value or list of values)")
    report = spec.get("report") or {}
    report_settings(report, str(path))  # a mistake here must stop the grid before it trains, not after
    base = merge(spec.get("base") or {}, dict(parse_override(o) for o in overrides))
    base["name"] = name
    return dataclasses.replace(expand(name, base, axes, exclude), report=report)


def expand(name: str, base: dict, axes: dict[str, list], exclude: list[dict]) -> Grid:
    runs: dict[str, GridRun] = {}
    for values in itertools.product(*axes.values()):
        point = dict(zip(axes, values))
        if any(_matches(rule, point) for rule in exclude):
            continue
        config = canonical(from_dict(Config, merge(base, point)))
        resolved = {key: _get_dotted(config, key) for key in axes}
        runs.setdefault(config.run_id, GridRun(config, resolved))  # canonical duplicates collapse
    if not runs:
        raise UserError(f"grid {name!r} has no runs left after its exclude rules")
    results_dir = Path(from_dict(Config, base).output_dir) / name
    # Every run lives in results_dir/runs/<id>, whatever run_dir the base config named.
    placed = [dataclasses.replace(r, config=dataclasses.replace(r.config, run_dir=str(results_dir / "runs" / r.id)))
              for r in runs.values()]
    return Grid(name, axes, placed, results_dir)


def _matches(rule: dict, point: dict) -> bool:
    for key, wanted in rule.items():
        if key not in point:
            raise UserError(f"exclude rule key {key!r} is not an axis; valid: {', '.join(point)}")
        if point[key] not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


def _get_dotted(config: Config, key: str):
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return list(value) if isinstance(value, tuple) else value
