"""Bottom models (passive parties) and top models (active party).

Bottom models are deliberately restricted to Linear and ReLU layers: that is the family
whose backpropagation can later run as ciphertext-by-plaintext products when the passive
party may not see its own gradients in plaintext.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

__all__ = ["SumTop", "TrainableTop", "build_bottom_model", "build_top_model", "linear_stack"]


def linear_stack(model: nn.Module) -> list[tuple[nn.Linear, bool]]:
    """The model as (Linear, followed-by-ReLU) pairs; any other layer is refused by name."""
    modules = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    stack: list[tuple[nn.Linear, bool]] = []
    for module in modules:
        if isinstance(module, nn.Linear):
            stack.append((module, False))
        elif isinstance(module, nn.ReLU) and stack and not stack[-1][1]:
            stack[-1] = (stack[-1][0], True)
        else:
            raise ValueError(
                f"layer {module.__class__.__name__} cannot be backpropagated under encryption "
                "(supported: Linear, each optionally followed by one ReLU)"
            )
    if not stack:
        raise ValueError("the bottom model has no Linear layer")
    return stack


def build_bottom_model(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    out_activation: Literal["none", "relu"],
) -> nn.Sequential:
    """Linear+ReLU stack ``in -> hidden... -> out`` with an optional ReLU on the output."""
    layers = _dense_layers(in_features, hidden, out_features)
    if out_activation == "relu":
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _dense_layers(in_features: int, hidden: Sequence[int], out_features: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    width = in_features
    for next_width in hidden:
        layers += [nn.Linear(width, next_width), nn.ReLU()]
        width = next_width
    layers.append(nn.Linear(width, out_features))
    return layers


class SumTop(nn.Module):
    """The paper's non-trainable top: logits are the sum of the bottom outputs.

    Softmax is applied inside the cross-entropy loss. It has no parameters, so the gradient
    each passive party receives is the same dL/d(sum) for every party.
    """

    def forward(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total


class TrainableTop(nn.Module):
    """Concatenate the bottom outputs, then dense layers with ReLU, then the class logits."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*_dense_layers(in_features, hidden, num_classes))

    def forward(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.layers(torch.cat(list(parts), dim=1))


def build_top_model(
    kind: Literal["sum", "trainable"],
    part_widths: Sequence[int],
    hidden: Sequence[int],
    num_classes: int,
) -> nn.Module:
    if kind == "sum":
        if any(width != num_classes for width in part_widths):
            raise ValueError(
                f"the sum top needs every bottom output to have {num_classes} units, got {list(part_widths)}"
            )
        return SumTop()
    return TrainableTop(sum(part_widths), hidden, num_classes)
