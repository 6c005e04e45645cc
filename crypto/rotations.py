"""Which slot rotations each kernel needs, so a key holder can generate exactly those Galois keys.

Every function returns left-rotation steps (negative = right) for
:meth:`crypto.SecretKeyring.generate` / :meth:`~securevfl.crypto.SecretKeyring.with_rotation_steps`.
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
    "matmul_stride",
    "replicated_copies",
    "replicates",
    "replicated_split",
    "replicated_matmul_steps",
    "diagonal_matmul_steps",
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


def replicated_copies(in_cols: int, out_cols: int) -> int:
    """Copies of each row (period ``in_cols``) the replicated matmul reads.

    Output slot ``c < out_cols`` reads the row at offsets ``c + t`` for ``t < in_cols``, i.e. up
    to ``in_cols + out_cols - 2``; the copies are made by doubling, so their count is a power of two.
    """
    return next_power_of_two(-(-(in_cols + out_cols - 1) // in_cols))


def matmul_stride(in_cols: int, out_cols: int) -> int:
    """Smallest ROWS stride with which ``X @ W`` (``X``: B x in_cols, ``W``: in_cols x out_cols) takes
    the replicated path (``in_cols`` diagonals instead of ``in_cols + out_cols - 1``).

    For a 64 x 32 batch and a 32 x 32 matrix this is 64: the 64 rows still fit one ciphertext
    at N=8192. Encrypt with ``EncryptedTensor.encrypt(keyring, x, ROWS, stride=matmul_stride(d, k))``.
    """
    return next_power_of_two(replicated_copies(in_cols, out_cols) * in_cols)


def replicates(in_cols: int, out_cols: int, stride: int) -> bool:
    """Whether a ROWS tensor with this stride has room for the replicated matmul."""
    return replicated_copies(in_cols, out_cols) * in_cols <= stride


# Relative costs at the 2-prime level (an input rotation = 1): a rescale and a rotation one level
# lower are paid per output group (measured 0.36 ms and 0.66 ms against 1.3 ms on 2 cores).
_RESCALE_COST, _LOWER_ROTATION_COST = 0.27, 0.51


def replicated_split(diagonals: int) -> tuple[int, int]:
    """(input rotations, output groups) for the replicated matmul: ``t = group * inputs + i``.

    ``inputs - 1`` rotations of the input, then per group one rescale and (except group 0) one
    rotation one level lower; minimises the cost model above (4 x 8 for 32 diagonals).
    """
    best, best_cost = (1, diagonals), math.inf
    for inputs in range(1, diagonals + 1):
        groups = -(-diagonals // inputs)
        cost = (inputs - 1) + _RESCALE_COST * groups + _LOWER_ROTATION_COST * (groups - 1)
        if cost < best_cost - 1e-9:
            best, best_cost = (inputs, groups), cost
    return best


def replicated_matmul_steps(in_cols: int, out_cols: int) -> list[int]:
    """Steps of the replicated path: row copies (``-d, -2d, ...``), ``1`` for the input rotations and
    ``n_in`` for the output groups (both applied repeatedly: three Galois keys for d = k = 32)."""
    copies = replicated_copies(in_cols, out_cols)
    steps = [-(in_cols << i) for i in range(copies.bit_length() - 1)]
    inputs, groups = replicated_split(in_cols)
    if inputs > 1:
        steps.append(1)  # input rotations rot_1, rot_1^2, ...
    if groups > 1:
        steps.append(inputs)  # output groups by Horner: rot_inputs, repeatedly
    return steps


def diagonal_matmul_steps(in_cols: int, out_cols: int) -> list[int]:
    """Steps of the general path: ``d + k - 1`` diagonals, baby-step/giant-step."""
    t_min = -(out_cols - 1)
    diagonals = in_cols + out_cols - 1
    baby, giant = bsgs_split(diagonals)
    steps = list(range(1, baby))
    steps += [t_min + baby * j for j in range(giant) if t_min + baby * j != 0]
    return steps


def matmul_steps(in_cols: int, out_cols: int, stride: int | None = None) -> list[int]:
    """Steps for ``X @ W`` with ``X`` in ROWS layout (``in_cols`` = d, ``out_cols`` = k).

    ``stride`` is the row stride ``X`` is encrypted with. When it leaves room for the row copies
    (``stride >= matmul_stride(d, k)``) the replicated path runs and these are its steps;
    otherwise (and when ``stride`` is omitted, as before) the general diagonal path's.

    For ``A @ X`` with ``X`` in COLUMNS layout (B x d) pass ``in_cols=B`` (rows of ``X``),
    ``out_cols`` = rows of ``A`` and ``X``'s column stride.
    """
    if stride is not None and replicates(in_cols, out_cols, stride):
        return replicated_matmul_steps(in_cols, out_cols)
    return diagonal_matmul_steps(in_cols, out_cols)


def row_gather_steps(packing: Packing, row: int) -> list[int]:
    local = row % packing.blocks_per_ciphertext
    return [local * packing.stride] if local else []


def row_replace_steps(packing: Packing, rows: list[int]) -> list[int]:
    per = packing.blocks_per_ciphertext
    return sorted({-(r % per) * packing.stride for r in rows if r % per})
