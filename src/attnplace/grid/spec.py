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

    blocks: 5   # optional: how many complete seed blocks the study wants (default: one per listed seed)

For each seed, the product of the other axes, minus excluded combinations, is that seed's block of runs; the
grid lists them block by block. Runs are canonicalised (see `config.canonical`), so e.g. the `none` baseline
appears once per seed, not once per attention type. A seed block that cannot finish on this machine's hardware
is replaced by the next unused seed (grid/seed_blocks.py), whose block the grid.json of the results folder keeps
(run/ledger.py). The `report` section travels in grid.json, so `attnplace report` reads the table as the grid
file asks (its command-line flags override it).
"""

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..run.config import PRESENTATION_KEYS, Config, canonical
from ..run.config_io import from_dict, merge, parse_override, read_yaml
from ..run.ledger import PRESET_KEYS, Ledger, read_ledger
from ..run.report_settings import report_settings

GRID_KEYS = ("name", "base", "axes", "exclude", "report", "blocks")


@dataclass(frozen=True)
class GridRun:
    config: Config
    axes: dict  # this run's value of every axis key, read back from the resolved config

    @property
    def id(self) -> str:
        return self.config.run_id

    @property
    def seed(self) -> int:
        return self.config.seed


@dataclass(frozen=True)
class Grid:
    """A grid's runs, block-major: every run of one seed (a block) before any run of the next seed.

    `wanted` is how many complete seed blocks the grid asks for; `seeds` lists the grid file's seeds first, then
    any replacement seeds a call added (grid/seed_blocks.py). `preset` holds the trainer settings the grid file left
    to the machine's preset, as fixed at its first call; `ledger` is what grid.json said before this call.
    """

    name: str
    axes: dict[str, list]
    runs: list[GridRun]
    results_dir: Path
    report: dict = dataclasses.field(default_factory=dict)  # the grid file's `report:` section, as written
    wanted: int = 1
    preset: dict = dataclasses.field(default_factory=dict)
    definition: str = ""  # hash of what the grid computes, but its seeds (`definition_of`)
    ledger: Ledger = dataclasses.field(default_factory=Ledger)
    notes: tuple[str, ...] = ()  # what a user should know before it trains (a preset that differs here)
    base: dict = dataclasses.field(default_factory=dict, repr=False)  # to expand a replacement seed
    exclude: list = dataclasses.field(default_factory=list, repr=False)

    @property
    def seeds(self) -> list[int]:
        return list(dict.fromkeys(r.seed for r in self.runs))

    def block(self, seed: int) -> list[GridRun]:
        return [r for r in self.runs if r.seed == seed]

    def with_seeds(self, seeds: list[int]) -> "Grid":
        """This grid with a block for each new seed (replacement blocks), after the blocks it has."""
        added = [r for seed in seeds for r in expand_seed(self.name, self.base, self.axes, self.exclude, seed,
                                                           self.results_dir)]
        return dataclasses.replace(self, runs=[*self.runs, *added])

    def describe(self, counted: list[int] | None = None) -> Ledger:
        """What grid.json is to say now (`write_ledger`): the run list and the blocks only grow (runs and
        replacement seeds an earlier call listed stay, in their order); `counted`, the seeds of the blocks the
        tables pair on (`blocks.counted_blocks`)."""
        runs = tuple(dict.fromkeys([*(self.ledger.runs or ()), *(r.id for r in self.runs)]))
        seeds = {seed: tuple(r.id for r in self.block(seed)) for seed in self.seeds}
        seeds |= {seed: ids for seed, ids in self.ledger.seeds.items() if seed not in seeds}  # another call's
        return Ledger(name=self.name, axes=self.axes, runs=runs, report=self.report, wanted=self.wanted, seeds=seeds,
                      counted=None if counted is None else tuple(counted), preset=self.preset,
                      definition=self.definition)


def load_grid(path: str | Path, overrides: list[str] = ()) -> Grid:
    spec = read_yaml(path)
    unknown = sorted(set(spec) - set(GRID_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; valid: {', '.join(GRID_KEYS)}")
    name, base = spec.get("name") or Path(path).stem, spec.get("base") or {}
    if not isinstance(name, str):
        raise UserError(f"{path}: name={name!r}: expected text, the results folder's name (default: the file's name)")
    if not isinstance(base, dict):
        raise UserError(f"{path}: base must be a mapping of config sections (model:, data:, optim:, trainer:)")
    axes = spec.get("axes") or {}
    if not isinstance(axes, dict) or not all(isinstance(v, list) and v for v in axes.values()):
        raise UserError(f"{path}: axes must map config keys to non-empty lists of values")
    exclude = spec.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(rule, dict) for rule in exclude):
        raise UserError(f"{path}: exclude must be a list of mappings (key: value or list of values)")
    report = spec.get("report") or {}
    report_settings(report, str(path))  # a mistake here must stop the grid before it trains, not after
    base = merge(base, dict(parse_override(o) for o in overrides))
    base["name"] = name
    first = from_dict(Config, base)
    first.data.check_files_here()  # every run reads the base's data: said once, before anything trains
    seeds = axes.get("seed") or [first.seed]
    wanted = spec.get("blocks", len(seeds))
    if not isinstance(wanted, int) or isinstance(wanted, bool) or wanted < 1:
        raise UserError(f"{path}: blocks={wanted!r}: expected the number of complete seed blocks wanted, >= 1 "
                        f"(default: as many as the seeds listed)")
    return expand(name, base, axes, exclude, wanted, report)


def expand(name: str, base: dict, axes: dict[str, list], exclude: list[dict], wanted: int = 1,
           report: dict | None = None) -> Grid:
    """The grid's runs, block by block, over its own seeds and the replacement seeds its grid.json lists, with
    the trainer preset fixed at its first call (`fixed_preset`)."""
    results_dir = Path(from_dict(Config, base).output_dir) / name
    definition = definition_of(base, axes, exclude)
    ledger, notes = read_ledger(results_dir), []
    if ledger.definition not in (None, definition):  # another grid under this name: its runs are not ours
        ledger, notes = Ledger(), [f"grid.json describes another grid under the name {name!r} (the grid file now "
                                   f"computes something else): its run list, replacement seeds and counted blocks "
                                   f"start afresh from this file"]
    preset, preset_notes = fixed_preset(base, axes, ledger, results_dir)
    notes += preset_notes
    base = merge(base, {key: value for key, value in preset.items() if _unset(base, key) and key not in axes})
    seeds = list(dict.fromkeys([*(axes.get("seed") or [from_dict(Config, base).seed]), *ledger.seeds]))
    runs = [r for seed in seeds for r in expand_seed(name, base, axes, exclude, seed, results_dir)]
    if not runs:
        raise UserError(f"grid {name!r} has no runs left after its exclude rules")
    return Grid(name, axes, runs, results_dir, report or {}, wanted, preset, definition, ledger, tuple(notes), base,
                exclude)


def expand_seed(name: str, base: dict, axes: dict[str, list], exclude: list[dict], seed: int,
                results_dir: Path) -> list[GridRun]:
    """One seed's block: the product of the other axes in the grid's order, minus excluded combinations, each
    run canonical (so e.g. the `none` baseline appears once, not once per attention type) and placed in
    results_dir/runs/<id>, whatever run_dir the base config named."""
    others = {key: values for key, values in axes.items() if key != "seed"}
    runs: dict[str, GridRun] = {}
    for values in itertools.product(*others.values()):
        point = {**dict(zip(others, values)), **({"seed": seed} if "seed" in axes else {})}
        if any(_matches(rule, point) for rule in exclude):
            continue
        config = canonical(from_dict(Config, merge(base, {**point, "seed": seed})))
        config = dataclasses.replace(config, run_dir=str(results_dir / "runs" / config.run_id))
        runs.setdefault(config.run_id, GridRun(config, {key: _get_dotted(config, key) for key in axes}))
    return list(runs.values())


def definition_of(base: dict, axes: dict[str, list], exclude: list[dict]) -> str:
    """What the grid computes, but its seeds and the keys that only say where runs are shown: a grid.json of
    another definition under the same name belongs to another grid (its runs are left out, as before)."""
    flat = {k: v for k, v in _flatten(base).items()
            if k != "seed" and not {k, k.split(".")[0]} & set(PRESENTATION_KEYS)}
    what = {"base": flat, "axes": {k: v for k, v in axes.items() if k != "seed"}, "exclude": exclude}
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]


def fixed_preset(base: dict, axes: dict, ledger: Ledger, results_dir: Path) -> tuple[dict, list[str]]:
    """The trainer settings (`PRESET_KEYS`) this grid's runs use: the grid file's where it names them, else
    those fixed at its first call (grid.json; for a grid.json older than that, what its first recorded run
    resolved to), else this machine's preset. A study keeps one precision and compile mode wherever it resumes.
    The notes name each fixed value that differs from this machine's preset."""
    config = from_dict(Config, base)
    here = config.trainer.resolved(train_images=config.data.train_images())
    here = {key: getattr(here, key.split(".")[1]) for key in PRESET_KEYS}
    fixed = ledger.preset or ledger.preset_of_records(results_dir) or here
    notes = [f"{key}={fixed[key]} as fixed at this grid's first call (grid.json); this machine's preset is "
             f"{here[key]}" for key in PRESET_KEYS
             if _unset(base, key) and key not in axes and fixed.get(key) != here[key]]
    return {**here, **fixed}, notes


def _unset(base: dict, dotted: str) -> bool:
    """Whether the grid file leaves a trainer setting to the machine's preset (absent, null or auto)."""
    return _flatten(base).get(dotted) in (None, "auto")


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


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
