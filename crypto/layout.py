"""Packing layouts: where each element of a tensor lives among the slots of its ciphertexts.

Three layouts, all spilling into as many ciphertexts as needed:

* ``FLAT`` -- row-major over all elements, ``slots`` values per ciphertext. The fewest
  ciphertexts (so the fewest bytes); supports elementwise operations and total sums.
* ``ROWS`` -- row-major with a power-of-two *row stride*: row ``r`` occupies slots
  ``[r*stride, r*stride + width)`` of ciphertext ``r // (slots/stride)``, the rest of its block is
  zero. A row never straddles two ciphertexts, so a plaintext matmul ``X @ W`` is block-diagonal
  on the slot vector (one baby-step/giant-step pass per ciphertext), a row is addressable by one
  mask and one rotation, and row sums are ``log2(stride)`` rotations.
* ``COLUMNS`` -- feature-major (2-D only): column ``j`` over the batch occupies its own block of
  ``stride >= batch`` slots. It is exactly the ``ROWS`` packing of the transpose, so
  ``tensor.T`` switches between the two for free and ``A @ X`` with a plaintext ``A`` runs the
  same kernel as ``X.T @ A.T``.

The stride is a power of two so that in-block reductions are rotate-and-add trees; the padding
this leaves is what makes the kernels cheap. With a 64x32 batch the stride is 32 and ``ROWS``
costs nothing over ``FLAT``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from .errors import LayoutError

__all__ = ["Layout", "Packing"]


class Layout(str, Enum):
    FLAT = "flat"
    ROWS = "rows"
    COLUMNS = "columns"


_LAYOUT_CODES = {Layout.FLAT: 0, Layout.ROWS: 1, Layout.COLUMNS: 2}


def _next_power_of_two(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


@dataclass(frozen=True)
class Packing:
    """Shape + layout + slot geometry of an encrypted tensor. Pure bookkeeping, no crypto."""

    layout: Layout
    shape: tuple[int, ...]
    slots: int
    stride: int = 1

    @classmethod
    def create(
        cls, shape: tuple[int, ...], layout: Layout | str, slots: int, stride: int | None = None
    ) -> Packing:
        """Validate and build a packing; ``stride`` defaults to the smallest power of two that fits a row."""
        try:
            layout = Layout(layout)
        except ValueError:
            raise LayoutError(f"unknown layout {layout!r}; choose one of {[m.value for m in Layout]}") from None
        shape = tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise LayoutError(f"negative dimension in shape {shape}")
        if math.prod(shape) == 0:
            raise LayoutError(f"cannot encrypt an empty tensor of shape {shape}")
        if layout is Layout.FLAT:
            if stride not in (None, 1):
                raise LayoutError("the FLAT layout has no stride")
            return cls(layout, shape, slots, 1)
        if layout is Layout.ROWS and len(shape) < 1:
            raise LayoutError("the ROWS layout needs at least one dimension")
        if layout is Layout.COLUMNS and len(shape) != 2:
            raise LayoutError(f"the COLUMNS layout is for 2-D tensors, got shape {shape}")
        width = cls._block_width(layout, shape)
        if width > slots:
            raise LayoutError(
                f"a {layout.value} block of {width} values does not fit one ciphertext ({slots} slots); "
                "use the FLAT layout or a larger ring"
            )
        if stride is None:
            stride = _next_power_of_two(width)
        if stride < width or stride & (stride - 1) or stride > slots:
            raise LayoutError(
                f"stride {stride} must be a power of two between the block width {width} and slots {slots}"
            )
        return cls(layout, shape, slots, int(stride))

    @staticmethod
    def _block_width(layout: Layout, shape: tuple[int, ...]) -> int:
        if layout is Layout.COLUMNS:
            return shape[0]
        return math.prod(shape[1:])

    # ----------------------------------------------------------------- geometry
    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def code(self) -> int:
        return _LAYOUT_CODES[self.layout]

    @property
    def num_blocks(self) -> int:
        """Rows (ROWS) or columns (COLUMNS) -- the units that each get one stride-wide block."""
        if self.layout is Layout.COLUMNS:
            return self.shape[1]
        if self.layout is Layout.ROWS:
            return self.shape[0]
        return self.size

    @property
    def block_width(self) -> int:
        if self.layout is Layout.FLAT:
            return 1
        return self._block_width(self.layout, self.shape)

    @property
    def blocks_per_ciphertext(self) -> int:
        return self.slots // self.stride

    @property
    def num_ciphertexts(self) -> int:
        if self.layout is Layout.FLAT:
            return -(-self.size // self.slots)
        return -(-self.num_blocks // self.blocks_per_ciphertext)

    @property
    def used_slots(self) -> int:
        """Slots up to and including the last data slot of the fullest ciphertext."""
        if self.num_ciphertexts > 1:
            return self.slots
        if self.layout is Layout.FLAT:
            return self.size
        return (self.num_blocks - 1) * self.stride + self.block_width

    def blocks_in(self, index: int) -> int:
        """Number of occupied blocks in ciphertext ``index``."""
        per = self.blocks_per_ciphertext
        return min(per, self.num_blocks - index * per)

    def with_shape(self, shape: tuple[int, ...], layout: Layout | None = None) -> Packing:
        """Same stride and slots, new shape (used by kernels that keep the block geometry)."""
        return Packing(layout or self.layout, tuple(shape), self.slots, self.stride)

    def transposed(self) -> Packing:
        """ROWS (B x d) <-> COLUMNS (d x B) over the very same slots."""
        if len(self.shape) != 2 or self.layout is Layout.FLAT:
            raise LayoutError("only 2-D ROWS/COLUMNS tensors can be transposed without re-encryption")
        other = Layout.COLUMNS if self.layout is Layout.ROWS else Layout.ROWS
        return Packing(other, (self.shape[1], self.shape[0]), self.slots, self.stride)

    # ----------------------------------------------------------------- data movement
    def _block_matrix(self, values: np.ndarray) -> np.ndarray:
        """The (blocks x width) view: each row of it fills one stride-wide block."""
        if self.layout is Layout.COLUMNS:
            return values.T
        return values.reshape(self.num_blocks, self.block_width)

    def pack(self, values: np.ndarray) -> np.ndarray:
        """Slot vectors (num_ciphertexts x slots, zero padded) holding ``values``."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != self.shape:
            raise LayoutError(f"values of shape {values.shape} do not match packing shape {self.shape}")
        out = np.zeros(self.num_ciphertexts * self.slots)
        if self.layout is Layout.FLAT:
            out[: self.size] = values.ravel()
        else:
            blocks = out.reshape(-1, self.stride)
            blocks[: self.num_blocks, : self.block_width] = self._block_matrix(values)
        return out.reshape(self.num_ciphertexts, self.slots)

    def unpack(self, slot_vectors: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`pack` (padding slots are ignored)."""
        flat = np.asarray(slot_vectors, dtype=np.float64).reshape(-1)
        if self.layout is Layout.FLAT:
            return flat[: self.size].reshape(self.shape).copy()
        blocks = flat.reshape(-1, self.stride)[: self.num_blocks, : self.block_width]
        if self.layout is Layout.COLUMNS:
            return np.ascontiguousarray(blocks.T).reshape(self.shape)
        return blocks.reshape(self.shape).copy()
