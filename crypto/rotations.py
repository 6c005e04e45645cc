"""Which slot rotations each kernel needs, so a key holder can generate exactly those Galois keys.

Every function returns left-rotation steps (negative = right) for
:meth:`crypto.SecretKeyring.generate` / :meth:`~crypto.SecretKeyring.with_rotation_steps`.
Kernels also accept any step they can compose from power-of-two keys
(:func:`power_of_two_steps`), at the price of one key switch per binary digit.
"""

from __future__ import annotations

import math

from .layout import Layout, Packing

__all__ = [
    "power_of_two_steps",
    "sum_steps",
    "matmul_steps",
    "bsgs_split",
    "reduction_plan",
    "rows_view",
    "row_gather_steps",
    "row_replace_steps",
]


def power_of_two_steps(slots: int, negative: bool = True) -> list[int]:
    """+-1, +-2, +-4, ... : enough to compose any rotation (2*log2(slots) keys)."""
    steps = [1 << k for k in range(int(math.log2(slots)))]
    return steps + ([-s for s in steps] if negative else [])


def _doubling(first: int, count: int) -> list[int]:
    """Steps of a rotate-and-add tree summing ``count`` (a power of two) blocks ``first`` apart."""
    steps, step = [], first
    while step < first * count:
        steps.append(step)
        step *= 2
    return steps


def next_power_of_two(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def reduction_plan(packing: Packing, axis: int | None) -> tuple[int, int]:
    """(first step, count) of the rotate-and-add tree that ``sum(axis)`` runs on each ciphertext.

    ``axis=None`` folds every used slot; an axis of a ROWS/COLUMNS tensor either folds the
    ``width`` slots inside each block or the occupied blocks of a ciphertext (after the
    ciphertexts themselves were added, which costs no rotation).
    """
    if axis is None:
        return 1, next_power_of_two(packing.used_slots)
    geometry = rows_view(packing)
    reduce_blocks = (axis == 0) == (geometry.layout is Layout.ROWS)
    if reduce_blocks:
        blocks = min(geometry.blocks_per_ciphertext, geometry.num_blocks)
        return geometry.stride, next_power_of_two(blocks)
    return 1, next_power_of_two(geometry.block_width)


def sum_steps(packing: Packing, axis: int | None = None) -> list[int]:
    """Steps for ``EncryptedTensor.sum(axis)`` on a tensor with this packing."""
    return _doubling(*reduction_plan(packing, axis))


def rows_view(packing: Packing) -> Packing:
    """A 2-D FLAT tensor whose width is a power of two has exactly the ROWS geometry."""
    if packing.layout is Layout.FLAT and len(packing.shape) == 2:
        width = packing.shape[1]
        if width & (width - 1) == 0:
            return Packing(Layout.ROWS, packing.shape, packing.slots, width)
    return packing


def bsgs_split(diagonals: int) -> tuple[int, int]:
    """(baby, giant) counts minimising rotations ``(baby - 1) + giant`` for ``diagonals`` diagonals."""
    best = (1, diagonals)
    for baby in range(1, diagonals + 1):
        giant = -(-diagonals // baby)
        if (baby - 1) + giant < (best[0] - 1) + best[1]:
            best = (baby, giant)
    return best


def matmul_steps(in_cols: int, out_cols: int) -> list[int]:
    """Steps for ``X @ W`` with ``X`` in ROWS layout (``in_cols`` = d, ``out_cols`` = k).

    For ``A @ X`` with ``X`` in COLUMNS layout (B x d) pass ``in_cols=B`` (rows of ``X``) and
    ``out_cols`` = rows of ``A``.
    """
    t_min = -(out_cols - 1)
    diagonals = in_cols + out_cols - 1
    baby, giant = bsgs_split(diagonals)
    steps = list(range(1, baby))
    steps += [t_min + baby * j for j in range(giant) if t_min + baby * j != 0]
    return steps


def row_gather_steps(packing: Packing, row: int) -> list[int]:
    local = row % packing.blocks_per_ciphertext
    return [local * packing.stride] if local else []


def row_replace_steps(packing: Packing, rows: list[int]) -> list[int]:
    per = packing.blocks_per_ciphertext
    return sorted({-(r % per) * packing.stride for r in rows if r % per})
