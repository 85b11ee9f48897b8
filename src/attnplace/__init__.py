"""attnplace: where should an attention module sit inside a residual block?"""

from .errors import UserError
from .models import (ATTENTION, BACKBONES, FAMILIES, PATTERNS, build_model, convert, count_flops, count_params,
                     gate_values, register_attention)

__all__ = ["ATTENTION", "BACKBONES", "FAMILIES", "PATTERNS", "UserError", "build_model", "convert", "count_flops",
           "count_params", "gate_values", "register_attention"]
