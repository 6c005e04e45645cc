"""Packing plans for label-private schemes: strides, rotation keys and multiplicative depth.

Every kernel of a training step is a ROWS-layout matmul of a ciphertext by a plaintext
matrix; its stride decides the rotation keys it needs. The deployment agrees on these from
the (public) architecture, so the key holder generates exactly the Galois keys the step uses.
Batches are padded to the configured batch size so one set of strides serves every batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from securevfl.crypto import rotations


@dataclass(frozen=True)
class BottomPlan:
    """Homomorphic backpropagation through one passive party's Linear/ReLU stack.

    ``widths`` = [inputs, hidden..., outputs]; ``relu_after[l]`` says whether a ReLU follows
    linear layer ``l``. For layer ``l`` the passive computes ``G_l^T @ [A_{l-1} | 1]`` (weights
    and bias gradient in one product) from the gradient in *feature-major* form (``G^T`` packed
    as ROWS), and, below the top layer, ``G_l @ W_l`` from the *batch-major* form.
    """

    batch: int
    widths: tuple[int, ...]
    relu_after: tuple[bool, ...]

    @property
    def layers(self) -> int:
        return len(self.widths) - 1

    def feature_major_stride(self, layer: int) -> int:
        return rotations.matmul_stride(self.batch, self.widths[layer] + 1)

    def batch_major_stride(self, layer: int) -> int:
        return rotations.matmul_stride(self.widths[layer + 1], self.widths[layer])

    def rotation_steps(self) -> set[int]:
        steps: set[int] = set()
        for layer in range(self.layers):
            steps.update(
                rotations.matmul_steps(self.batch, self.widths[layer] + 1, stride=self.feature_major_stride(layer))
            )
            if layer > 0:
                steps.update(
                    rotations.matmul_steps(
                        self.widths[layer + 1], self.widths[layer], stride=self.batch_major_stride(layer)
                    )
                )
        return steps

    def depth(self) -> int:
        """Levels one segment (between refreshes) consumes: the ReLU mask, then one product."""
        return 1 + int(any(self.relu_after))


@dataclass(frozen=True)
class TopPlan:
    """The trainable top's first dense layer, computed by the active party under encryption."""

    batch: int
    part_width: int
    hidden: int

    def activation_stride(self) -> int:
        return rotations.matmul_stride(self.part_width, self.hidden)

    def transposed_activation_stride(self) -> int:
        return rotations.matmul_stride(self.batch, self.hidden)

    def rotation_steps(self) -> set[int]:
        return set(
            rotations.matmul_steps(self.part_width, self.hidden, stride=self.activation_stride())
        ) | set(rotations.matmul_steps(self.batch, self.hidden, stride=self.transposed_activation_stride()))


@dataclass(frozen=True)
class SealedPlan(BottomPlan):
    """A sealed source layer: ``Enc([W | b])`` (out x in+1) packed as ROWS with one shared ``stride``.

    Two products touch the sealed weights, and both keep the input's stride:

    - forward: ``Enc([W|b]) @ [X|1]^T`` (inner dimension in+1, output width = batch);
    - update: ``Enc(G^T) @ (-lr [X|1])`` (inner dimension = batch, output width in+1), added onto
      the weights, so ``Enc(G^T)`` must arrive in the weights' stride.

    ``stride`` is shared by every sealed passive (:func:`sealed_stride`) so that the active party
    can add their ``Enc(H_k^T)`` directly, whatever each passive's number of features.
    """

    stride: int

    def feature_major_stride(self, layer: int) -> int:
        return self.stride

    def rotation_steps(self) -> set[int]:
        inputs = self.widths[0] + 1
        return set(rotations.matmul_steps(inputs, self.batch, stride=self.stride)) | set(
            rotations.matmul_steps(self.batch, inputs, stride=self.stride)
        )

    def depth(self) -> int:
        """One product per kernel: the forward's and the update's (the weights are refreshed before they run out)."""
        return 1


@dataclass(frozen=True)
class SharedGradientPlan(BottomPlan):
    """A one-layer open bottom whose gradient ``Enc(G^T)`` travels in a row ``stride`` shared by every passive.

    Under pairwise activation masks every passive must receive the very same gradient ciphertext (the
    coordinator compares their digests: :mod:`securevfl.protocols.gradient_agreement`). A one-layer bottom's
    gradient is packed in the stride of its product ``G^T @ [X | 1]``, which depends on the passive's number of
    features; this plan gives every passive the widest of those strides (the product only needs at least its
    own), so one packing serves all of them. Used only where the strides would differ, so every other run packs
    as before.
    """

    stride: int

    def feature_major_stride(self, layer: int) -> int:
        return self.stride


def shared_gradient_stride(batch: int, in_features: Sequence[int]) -> int:
    """The widest one-layer gradient stride of these feature counts: one that fits every passive's product."""
    return max(rotations.matmul_stride(batch, features + 1) for features in in_features)


def sealed_stride(batch: int, in_features: Sequence[int], out_features: int, slots: int) -> int:
    """The one row stride every sealed passive's weights, activations and gradients use.

    The update product needs at least ``matmul_stride(batch, in+1)`` (its fast replicated path;
    a narrower row could not hold the in+1 outputs). The forward product runs replicated from
    ``matmul_stride(in+1, batch)`` on, or on the diagonal path (in + batch diagonals instead of
    in+1) below it. A wider stride means more ciphertexts per tensor, so of the two candidates
    the one with fewer encoded diagonals over both products wins (for MNIST halves at batch 64:
    512, the diagonal forward on 2 ciphertexts, over 1024 and 3 ciphertexts).
    """

    def cost(stride: int) -> int:
        total = 0
        for d in in_features:
            ciphertexts = -(-out_features * stride // slots)
            forward = d + 1 if stride >= rotations.matmul_stride(d + 1, batch) else d + batch
            total += ciphertexts * (forward + batch)
        return total

    narrow = max(rotations.matmul_stride(batch, d + 1) for d in in_features)
    wide = max(narrow, *(rotations.matmul_stride(d + 1, batch) for d in in_features))
    return min((narrow, wide), key=cost)


def bottom_plan(
    batch: int, in_features: int, hidden: Sequence[int], out_features: int, output_relu: bool
) -> BottomPlan:
    widths = (in_features, *hidden, out_features)
    relu_after = tuple([True] * len(hidden) + [output_relu])
    return BottomPlan(batch=batch, widths=widths, relu_after=relu_after)


def required_depth(hidden: Sequence[int], output_relu: bool, trainable_top: bool) -> int:
    """Multiplicative depth a preset must offer for a bottom model of this shape."""
    segment = 1 + int(bool(hidden) or output_relu)
    return max(segment, 1 if trainable_top else 0)


def plan_for_stack(batch: int, stack: Sequence[tuple[nn.Linear, bool]]) -> BottomPlan:
    """The plan of an actual Linear/ReLU stack (see :func:`securevfl.models.linear_stack`)."""
    widths = (stack[0][0].in_features, *(linear.out_features for linear, _ in stack))
    return BottomPlan(batch=batch, widths=widths, relu_after=tuple(relu for _, relu in stack))


def same_gradient_packing(plans: Mapping[str, BottomPlan]) -> bool:
    """Whether every passive's gradient travels in the same packing, so that one ciphertext can go to all of them.

    A gradient is ``batch x outputs`` in the strides of each bottom's top layer: open bottoms with hidden
    layers agree (the top layer's input is the last hidden width), one-layer open bottoms agree when their
    feature counts give the same stride, sealed ones always (one stride for all)
    (:mod:`securevfl.protocols.gradient_agreement`).
    """
    def packing(plan: BottomPlan) -> tuple[int, ...]:
        top = plan.layers - 1
        batch_major = plan.batch_major_stride(top) if plan.layers > 1 and not isinstance(plan, SealedPlan) else 0
        return (plan.batch, plan.widths[top + 1], plan.feature_major_stride(top), batch_major)

    return len({packing(plan) for plan in plans.values()}) == 1
