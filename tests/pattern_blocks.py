"""One pattern block on its own, for the tests that check blocks one at a time: built under a fixed seed, with SE
attention unless the options say otherwise."""

import torch

from attnplace.models.blocks import PATTERNS, BlockOptions


def make_block(pattern, in_ch=16, out_ch=32, stride=2, **options):
    torch.manual_seed(0)
    return PATTERNS.get(pattern)(in_ch, out_ch, stride, BlockOptions(**{"attention": "se", **options}))
