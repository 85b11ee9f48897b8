"""Mask telemetry during training: `models/masks.py`'s statistics at every validation end, logged as
`mask/<block>.<attn>.<stat>` (CSV, W&B) and kept in the run record's history (`recorder.py`).

The batch is the first `MASK_IMAGES` validation images: the validation split depends on the seed and the data
only, so every variant of a seed is read on the same images. It runs after validation, not inside a training
step, so it adds no host sync to the step, and it draws no random numbers and changes no state.
"""

import lightning as L
import torch

from ..models.masks import mask_statistics

MASK_IMAGES = 256


class MaskTelemetry(L.Callback):
    def __init__(self):
        self._images: torch.Tensor | None = None

    def on_validation_epoch_end(self, trainer, module):
        if trainer.sanity_checking or not trainer.val_dataloaders:
            return
        if self._images is None:
            self._images = fixed_batch(trainer.val_dataloaders, MASK_IMAGES)
        # Eager even when the model is compiled: the hooks would otherwise make torch.compile retrace it.
        with trainer.precision_plugin.forward_context(), torch.compiler.set_stance("force_eager"):
            stats = mask_statistics(module.model, self._images.to(module.device))
        if stats:
            module.log_dict({f"mask/{k}": v for k, v in stats.items()}, on_step=False, on_epoch=True)


def fixed_batch(loader, n: int) -> torch.Tensor:
    """The first `n` images of an evaluation loader (fixed order, no augmentation)."""
    images, count = [], 0
    for x, _ in loader:
        images.append(x[: n - count])
        count += len(images[-1])
        if count >= n:
            break
    return torch.cat(images)
