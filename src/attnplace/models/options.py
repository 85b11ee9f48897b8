"""A model's options: `BlockOptions` (blocks.py: attention, gates, norm, family) plus the network around the
blocks (backbone, pattern, stages, weights), each checked here, where it is defined, and nowhere else. A config's
`model` section is this class, and `build_model` builds through it."""

from dataclasses import dataclass
from pathlib import Path

from ..errors import choose, require
from .backbones import backbone_block, stage_count
from .blocks import PATTERNS, BlockOptions
from .external import is_external
from .stages import check_stages


@dataclass(frozen=True)
class ModelOptions(BlockOptions):
    """`BlockOptions` plus the network around the blocks. `pattern`'s class checks the options that contradict
    each other in it (`ResidualBlock.check`) and resolves its gate forms and presets (`resolved`)."""

    backbone: str = "resnet20"  # or torchvision:NAME / timm:NAME, a library ResNet (models/external.py)
    pattern: str = "p1"
    stages: tuple[int, ...] | None = None  # 1-based stages that get the pattern; None = all
    weights: str | None = None  # a library backbone's starting state_dict (a local file); its fc is reset

    def __post_init__(self):
        super().__post_init__()
        backbone_block(self.backbone, self.block)  # a backbone it cannot build, or a block family it is not made of
        external = is_external(self.backbone)
        require(self.norm == "batch" or not external, "norm", self.norm, f"batch ({self.backbone} keeps its own norms)",
                f"norm={self.norm!r} cannot change {self.backbone}'s own norms; valid: batch")
        if self.weights is not None:
            require(external, "weights", self.weights,
                    "null for a built-in backbone (a state_dict is for torchvision:NAME / timm:NAME)",
                    f"weights={self.weights!r} is for torchvision:/timm: backbones, not {self.backbone}; valid: null")
            require(Path(self.weights).is_file(), "weights", self.weights, "an existing state_dict file")
        choose("pattern", self.pattern, PATTERNS.names())
        if self.stages is not None:
            check_stages(self.stages, stage_count(self.backbone), self.backbone)
        PATTERNS.get(self.pattern).check(self)

    def resolved(self) -> "ModelOptions":
        """These options as the pattern's class makes them concrete (`ResidualBlock.resolve`)."""
        return PATTERNS.get(self.pattern).resolve(self)
