"""What the attention masks do: statistics of every mask `m(t)` and every gate's gain on one batch.

For each attention module in the network (`<stage>.<block>.attn`, p4's `attn_s` / `attn_r`):

    <kind>_mean, <kind>_std      of the mask values m(t) ∈ [0, 1] over the batch, kind = channel | spatial | mask
    <kind>_low, <kind>_high      the fraction of them below 0.1 (nearly shut) and above 0.9 (nearly open)
    gain                         ‖g(t)‖ / ‖t‖ of the gate that applies it (1 = passes the signal unchanged)

A mask is the output of a sigmoid-like activation inside the attention module (timm's `gate` modules, and the
seeds' CBAM's); its kind follows from its shape: N×C×1×1 is a channel mask, N×1×H×W a spatial one, anything
else (e.g. coordinate attention's N×C×H×1) plain `mask`. The statistics are read through forward hooks that
exist only during `mask_statistics`, which runs the model in eval mode without gradients: it draws no random
numbers and changes no state, so a run with telemetry trains exactly as one without.
"""

import torch
from torch import nn

from .gates import Gate

LOW, HIGH = 0.1, 0.9
MASK_ACTIVATIONS = (nn.Sigmoid, nn.Hardsigmoid)


def mask_kind(mask: torch.Tensor) -> str:
    if mask.dim() == 4 and mask.shape[2:] == (1, 1):
        return "channel"
    if mask.dim() == 4 and mask.shape[1] == 1:
        return "spatial"
    return "mask"


def is_mask_activation(module: nn.Module) -> bool:
    return isinstance(module, MASK_ACTIVATIONS) or "sigmoid" in type(module).__name__.lower()


def attention_modules(model: nn.Module) -> dict[str, tuple[nn.Module, Gate]]:
    """`<block>.<attn name>` -> (the attention module, the gate applying it). A block names its gates after
    its attentions: `gate` applies `attn`, `gate_s` applies `attn_s`, `gate_r` applies `attn_r`."""
    found = {}
    for prefix, block in model.named_modules():
        for name, child in block.named_children():
            gate = getattr(block, name.replace("attn", "gate", 1), None) if name.startswith("attn") else None
            if isinstance(gate, Gate):
                found[f"{prefix}.{name}" if prefix else name] = (child, gate)
    return found


def summarize_masks(masks: list[torch.Tensor]) -> dict[str, float]:
    stats = {}
    by_kind: dict[str, list[torch.Tensor]] = {}
    for mask in masks:
        by_kind.setdefault(mask_kind(mask), []).append(mask.detach().float().flatten())
    for kind, values in by_kind.items():
        v = torch.cat(values)
        stats.update({f"{kind}_mean": v.mean().item(), f"{kind}_std": v.std().item() if len(v) > 1 else 0.0,
                      f"{kind}_low": (v < LOW).float().mean().item(), f"{kind}_high": (v > HIGH).float().mean().item()})
    return stats


@torch.no_grad()
def mask_statistics(model: nn.Module, images: torch.Tensor, forward=None) -> dict[str, float]:
    """`<block>.<attn>.<stat>` -> value, for `images` through `forward` (default `model`) in eval mode."""
    modules = attention_modules(model)
    masks = {name: [] for name in modules}
    norms = {name: [0.0, 0.0] for name in modules}  # ‖g(t)‖², ‖t‖²
    hooks = []
    for name, (attention, gate) in modules.items():
        for sub in attention.modules():
            if is_mask_activation(sub):
                hooks.append(sub.register_forward_hook(lambda m, i, out, n=name: masks[n].append(out)))

        def record_gain(module, inputs, out, n=name):
            norms[n][0] += out.float().square().sum().item()
            norms[n][1] += inputs[0].float().square().sum().item()

        hooks.append(gate.register_forward_hook(record_gain))
    was_training = model.training
    model.eval()
    try:
        (forward or model)(images)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    stats = {}
    for name in modules:
        values = {**summarize_masks(masks[name]), "gain": (norms[name][0] / norms[name][1]) ** 0.5
                  if norms[name][1] else float("nan")}
        stats.update({f"{name}.{stat}": value for stat, value in values.items()})
    return stats
