"""CBAM as the seed notebooks define it (Woo et al., 2018), which is not timm's `CbamModule`.

    channel:  m_c(t) = sigmoid(MLP(avgpool(t)) + MLP(maxpool(t)))       one shared MLP, no biases,
              MLP = conv1×1 C→h, ReLU, conv1×1 h→C,  h = max(C//16, 4)
    spatial:  m_s(t) = sigmoid(conv7×7([mean_c(t), max_c(t)]))            2→1 channels, no bias, no norm
    CBAM(t) = m_s(t') ⊙ t',  t' = m_c(t) ⊙ t                              channel mask first

timm's version (registered as `cbam_timm`) rounds C/16 for h (1/2/4 units on ResNet-20's 16/32/64
channels, where this gives 4/4/4) and puts a BatchNorm between the 7×7 conv and the sigmoid.
Parameters: 2·C·h + 2·7·7.
"""

import torch
from torch import nn


def hidden_width(channels: int) -> int:
    """The seeds' bottleneck for channel attention (SE and CBAM): max(C//16, 4)."""
    return max(channels // 16, 4)


class ChannelAttention(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        hidden = hidden_width(channels)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1, bias=False))
        self.gate = nn.Sigmoid()  # a module, not torch.sigmoid, so mask telemetry can read m_c (masks.py)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.gate(self.mlp(t.mean((2, 3), keepdim=True)) + self.mlp(t.amax((2, 3), keepdim=True)))


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([t.mean(1, keepdim=True), t.amax(1, keepdim=True)], dim=1)
        return t * self.gate(self.conv(pooled))


class CBAM(nn.Sequential):
    """CBAM(t) = m_s(t') ⊙ t', t' = m_c(t) ⊙ t: the channel mask, then the spatial mask."""

    def __init__(self, channels: int, kernel_size: int = 7):
        super().__init__()
        self.channel = ChannelAttention(channels)
        self.spatial = SpatialAttention(kernel_size)
