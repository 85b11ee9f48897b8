"""attnplace: where should an attention module sit inside a residual block?"""

from .errors import UserError
from .models import (ATTENTION, BACKBONES, PATTERNS, build_model, count_flops, count_params, gate_values,
                     register_attention)

__all__ = ["ATTENTION", "BACKBONES", "PATTERNS", "UserError", "build_model", "count_flops", "count_params",
           "gate_values", "register_attention"]
