"""A run's config and the id it gives.

`attnplace fit [CONFIG.yaml] [key=value ...]` and every grid run resolve to a `Config`; `canonical` makes every
choice in it concrete (the pattern's class resolves its gate forms and presets), and the run id is a hash of the
canonical config once the keys that only say where a run is shown are dropped (`identity`).
"""

import dataclasses
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import choose, require
from ..models import PATTERNS, BlockOptions, ModelOptions, backbone_block
from .config_io import from_dict, merge, parse_override, read_yaml
from .later import later_defaults
from .sections import DataConfig, OptimConfig, TrainerConfig, WandbConfig


@dataclass(frozen=True)
class Config:
    name: str = "default"  # experiment name: the W&B group, and the folder under output_dir
    seed: int = 0
    model: ModelOptions = field(default_factory=ModelOptions)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: str = "csv"  # csv (always on) | wandb (csv + W&B)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    output_dir: str = "runs"
    run_dir: str | None = None  # default: <output_dir>/<name>/runs/<run id>

    def __post_init__(self):
        choose("logger", self.logger, ["csv", "wandb"])
        # imagefolder may ship its own val/ split; every other dataset carves validation from train.
        require(self.trainer.test_on == "final" or self.data.val_size > 0 or self.data.name == "imagefolder",
                "trainer.test_on", self.trainer.test_on, "final when data.val_size=0 (best_val needs validation)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @functools.cached_property
    def run_id(self) -> str:
        """Readable and stable: the same settings give the same id, whoever runs them and wherever. Any config
        gives the id of the run it describes: the id is made of its canonical form (`canonical`)."""
        config = canonical(self)
        m, data = config.model, identity(config)
        digest = hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]
        gates = "".join(f"-{data['model'][k]}" for k in LATER_KEYS if k in data["model"])  # a gate not the seeds'
        return f"{m.backbone.replace(':', '-')}-{m.pattern}-{m.attention}{gates}-s{config.seed}-{digest}"

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path(self.output_dir) / self.name / "runs" / self.run_id


# Keys that change where or how a run is shown, not what it computes: left out of the run id. (How often a
# NaN is looked for changes only how soon a diverging run stops; it fails either way. Mask telemetry reads
# the network at epoch ends and changes nothing it computes.)
PRESENTATION_KEYS = ("name", "logger", "wandb", "output_dir", "run_dir", "trainer.progress_bar", "trainer.threads",
                     "trainer.nan_check_every_n_steps", "trainer.mask_telemetry")
# `model` keys that say where and how attention sits (what a placement comparison varies); norm is not one.
PLACEMENT_KEYS = tuple(sorted({f.name for f in dataclasses.fields(BlockOptions)} - {"norm", "block"} | {"stages"}))
# The same as dotted axes, with how the gates train: what the report's grouping treats as the placement.
PLACEMENT_AXES = frozenset({f"model.{k}" for k in PLACEMENT_KEYS} | {"optim.gate_lr_scale"})
# Keys added after run ids were first computed: left out of the id while they hold the value that the older
# keys imply, so every earlier run keeps its id (`model.gate` of a p4 with p4_gate=direct is mask, say).
LATER_KEYS = ("gate", "skip_gate")
# Later still, and never named in the id: they are left out while they say what the backbone alone says (its
# own block family, the only one it accepts; no weights file).
IMPLIED_BY_BACKBONE = ("block", "weights")


def identity(config: Config) -> dict:
    """What a canonical config computes: its dict less `PRESENTATION_KEYS`, less the later keys where they
    hold what the older ones imply, and less the keys declared `later` (run/later.py) at their defaults."""
    data = config.to_dict()
    for key in PRESENTATION_KEYS:
        section, _, leaf = key.rpartition(".")
        (data[section] if section else data).pop(leaf)
    implied = dataclasses.replace(config.model, gate=None, skip_gate=None).resolved()
    for key in LATER_KEYS:
        if data["model"][key] == getattr(implied, key):
            data["model"].pop(key)
    for section in dataclasses.fields(Config):
        if dataclasses.is_dataclass(section.type):
            for key, default in later_defaults(section.type).items():
                if getattr(getattr(config, section.name), key) == default:
                    data[section.name].pop(key)
    implied_by_backbone = {"block": backbone_block(config.model.backbone), "weights": None}
    for key in IMPLIED_BY_BACKBONE:
        if data["model"][key] in (None, implied_by_backbone[key]):
            data["model"].pop(key)
    return data


@dataclass(frozen=True)
class CanonicalConfig(Config):
    """A config with every choice made concrete: what `canonical` returns, and the only kind `fit`, the
    LightningModule and a grid take, as they are. Made where a config is loaded (`load_config`), where a grid
    expands one (`grid.spec`) and where a saved config's dict is read (a checkpoint's, a worker's payload);
    `dataclasses.replace` on it may change only the keys that say where a run is shown (`PRESENTATION_KEYS`)."""


RUN_ID_SEED = re.compile(r"-s(\d+)-[0-9a-f]{8}$")  # how `Config.run_id` ends: the seed, then the digest


def seed_of_run_id(run_id: str) -> int | None:
    """The seed a run id names (`Config.run_id`), or None for a name that is no run id."""
    found = RUN_ID_SEED.search(run_id)
    return int(found.group(1)) if found else None


def canonical(config: Config) -> CanonicalConfig:
    """The config with every choice made concrete and every ignored option reset, so equal networks get equal
    configs (and ids), and a run's id says how it computes:
    - gate forms left unset take the pattern's seeds' form, and a pattern that is another's preset is named so
      (p3 × mix is p3c; p3c × mask is p3);
    - options the block does not read (its class's `uses`) are reset: `none × se` and `none × cbam` are one
      run, and a network without learned gates ignores `optim.gate_lr_scale`;
    - optimiser options the schedule does not read are reset (`OptimConfig.canonical`);
    - trainer settings left at auto take this machine's preset (`TrainerConfig.resolved`), so runs in
      different precisions or memory formats never share an id.
    A config that is canonical already is returned as it is.
    """
    if isinstance(config, CanonicalConfig):
        return config
    m = config.model.resolved()
    block = PATTERNS.get(m.pattern)
    trainer = config.trainer.resolved(train_images=config.data.train_images())
    uses = block.uses(m)
    uses = uses | {"stages"} if uses else uses
    defaults = ModelOptions()
    reset = {k: (getattr(defaults, k) if k != "attention" else "none") for k in set(PLACEMENT_KEYS) - uses}
    if m.skip_attention == m.attention:
        reset["skip_attention"] = None
    m = dataclasses.replace(m, **reset)
    optim = config.optim.canonical()
    if not any(getattr(m, k) for k in uses if k.startswith("learn_")):  # no learned gate
        optim = dataclasses.replace(optim, gate_lr_scale=OptimConfig.gate_lr_scale)
    return CanonicalConfig(**{**{f.name: getattr(config, f.name) for f in dataclasses.fields(Config)},
                              "model": m, "optim": optim, "trainer": trainer})


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> CanonicalConfig:
    """The canonical config of a run to train here: a YAML file and `key=value` overrides, its data on disk."""
    data = read_yaml(path) if path else {}
    data = merge(data, dict(parse_override(o) for o in overrides))
    config = canonical(from_dict(Config, data))
    config.data.check_files_here()
    return config
