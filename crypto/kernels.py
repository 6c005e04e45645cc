"""Homomorphic kernels on SEAL ciphertexts, through ``tenseal.sealapi``.

TenSEAL's ``CKKSVector`` exposes no rotation and its matmul paths are slow (0.2-9.6 s for a
64x32 @ 32x32 product); these kernels call SEAL's Evaluator directly. They work on lists of
ciphertexts plus a :class:`~crypto.layout.Packing` and know nothing about tensors' semantics
beyond that; :class:`crypto.tensor.EncryptedTensor` wraps them.

Scale discipline: every ciphertext is kept at *exactly* ``params.scale``. A plaintext factor is
encoded at the scale of the very prime the following rescale divides by, so
``scale * prime / prime == scale`` and ciphertexts produced along different paths can be added
after a plain modulus switch.

Costs at the ``compute`` preset (N=8192, three data primes; a rotation is a key switch):

=====================  ==================================================================
rotation               ~2.2 ms at 3 primes, ~1.3 ms at 2, ~0.7 ms at 1
plaintext multiply     ~0.2 ms + ~0.5 ms to encode the plaintext + ~0.55 ms rescale
matmul (B x d)@(d x k)  ``d+k-1`` encoded diagonals, about ``2*sqrt(d+k-1)`` rotations
row gather / replace    one mask multiply + one rotation per row moved
sum                     ``log2`` of the reduced extent rotations
=====================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tenseal.sealapi as sealapi

from .errors import DepthError, LayoutError, MissingRotationKeyError
from .keys import Keyring
from .layout import Layout, Packing
from .rotations import bsgs_split

__all__ = [
    "copy",
    "rotate",
    "add",
    "subtract",
    "negate",
    "add_plain",
    "multiply_plain",
    "mod_switch_to_level",
    "align_levels",
    "rotate_and_sum",
    "encrypted_zero",
    "MatmulPlan",
]


# --------------------------------------------------------------------------- basics


def copy(keyring: Keyring, ciphertext: Any) -> Any:
    out = sealapi.Ciphertext()
    keyring.evaluator.mod_switch_to(ciphertext, ciphertext.parms_id(), out)
    return out


def _rotation_plan(keyring: Keyring, step: int) -> list[int]:
    """Rotation keys to apply, in order, to rotate by ``step`` (exact key, else binary / NAF)."""
    slots = keyring.params.slots
    step %= slots
    available = keyring.rotation_steps
    if step == 0:
        return []
    if step in available:
        return [step]
    candidates = []
    # binary decomposition into left rotations by powers of two
    candidates.append([1 << k for k in range(step.bit_length()) if step >> k & 1])
    # non-adjacent form: digits +-1, using right rotations (slots - 2^k) for the negative ones
    naf, value, k = [], step, 0
    while value:
        if value & 1:
            digit = 2 - (value % 4)
            value -= digit
            naf.append((1 << k) if digit > 0 else (slots - (1 << k)) % slots)
        value >>= 1
        k += 1
    candidates.append([s for s in naf if s])
    feasible = [c for c in candidates if all(s in available for s in c)]
    if not feasible:
        raise MissingRotationKeyError(
            f"no Galois key for a rotation by {step} slots (nor the power-of-two keys to compose it); "
            f"generate the keyring with rotation_steps including {step} "
            "(see crypto.rotations for the steps each kernel needs)"
        )
    return min(feasible, key=len)


def rotate(keyring: Keyring, ciphertext: Any, step: int) -> Any:
    """Cyclic left rotation of the slot vector by ``step`` (negative = right)."""
    plan = _rotation_plan(keyring, step)
    if not plan:
        return copy(keyring, ciphertext)
    out = sealapi.Ciphertext()
    keyring.evaluator.rotate_vector(ciphertext, plan[0], keyring.galois_keys, out)
    for part in plan[1:]:
        keyring.evaluator.rotate_vector_inplace(out, part, keyring.galois_keys)
    return out


def mod_switch_to_level(keyring: Keyring, ciphertext: Any, levels_left: int) -> Any:
    """Drop primes (no rescale, no noise growth) until ``levels_left`` multiplications remain."""
    out = sealapi.Ciphertext()
    keyring.evaluator.mod_switch_to(ciphertext, keyring.parms_id_at(levels_left), out)
    return out


def align_levels(keyring: Keyring, *ciphertexts: Any) -> list[Any]:
    """Modulus-switch all ciphertexts down to the lowest level among them (scales are equal)."""
    lowest = min(keyring.chain_index(c) for c in ciphertexts)
    return [c if keyring.chain_index(c) == lowest else mod_switch_to_level(keyring, c, lowest) for c in ciphertexts]


def encrypted_zero(keyring: Keyring, levels_left: int) -> Any:
    """A fresh encryption of zero.

    SEAL (built with ``SEAL_THROW_ON_TRANSPARENT_CIPHERTEXT``) refuses to *produce* a
    "transparent" ciphertext -- one whose mask polynomial is zero, which would reveal its
    plaintext -- e.g. ``x - x`` or a product with an all-zero plaintext. Those results are
    replaced by a fresh encryption of zero, which is what they mean.
    """
    return keyring.encrypt_vector(np.zeros(keyring.params.slots), levels_left)


def _is_transparent_error(exc: Exception) -> bool:
    return "transparent" in str(exc)


def add(keyring: Keyring, a: Any, b: Any) -> Any:
    a, b = align_levels(keyring, a, b)
    out = sealapi.Ciphertext()
    try:
        keyring.evaluator.add(a, b, out)
    except (RuntimeError, ValueError) as exc:
        if not _is_transparent_error(exc):
            raise
        return encrypted_zero(keyring, keyring.chain_index(a))
    return out


def subtract(keyring: Keyring, a: Any, b: Any) -> Any:
    a, b = align_levels(keyring, a, b)
    out = sealapi.Ciphertext()
    try:
        keyring.evaluator.sub(a, b, out)
    except (RuntimeError, ValueError) as exc:
        if not _is_transparent_error(exc):
            raise
        return encrypted_zero(keyring, keyring.chain_index(a))
    return out


def negate(keyring: Keyring, a: Any) -> Any:
    out = sealapi.Ciphertext()
    keyring.evaluator.negate(a, out)
    return out


def add_plain(keyring: Keyring, ciphertext: Any, values: np.ndarray) -> Any:
    """Add a plaintext slot vector (encoded at the ciphertext's level and scale)."""
    plain = keyring.encode(values, ciphertext.parms_id(), ciphertext.scale)
    out = sealapi.Ciphertext()
    keyring.evaluator.add_plain(ciphertext, plain, out)
    return out


def _require_level(keyring: Keyring, ciphertext: Any, what: str) -> None:
    if keyring.chain_index(ciphertext) < 1:
        raise DepthError(
            f"{what} needs one multiplicative level but the ciphertext has none left "
            f"(parameter set {keyring.params.name!r} has depth {keyring.params.depth}); "
            "use a preset with more levels (e.g. 'compute' or 'deep') or encrypt at a higher level"
        )


def _encode_factor(keyring: Keyring, ciphertext: Any, values: np.ndarray | float) -> Any:
    prime = float(keyring.rescale_prime(ciphertext.parms_id()))
    if np.isscalar(values):
        return keyring.encode_constant(float(values), ciphertext.parms_id(), prime)
    return keyring.encode(values, ciphertext.parms_id(), prime)


def multiply_plain(keyring: Keyring, ciphertext: Any, values: np.ndarray | float, what: str = "a multiplication") -> Any:
    """Multiply by a plaintext slot vector or scalar and rescale (consumes one level)."""
    _require_level(keyring, ciphertext, what)
    if not np.any(values):
        return encrypted_zero(keyring, keyring.chain_index(ciphertext) - 1)
    plain = _encode_factor(keyring, ciphertext, values)
    out = sealapi.Ciphertext()
    keyring.evaluator.multiply_plain(ciphertext, plain, out)
    keyring.evaluator.rescale_to_next_inplace(out)
    out.scale = keyring.params.scale  # exact by construction; remove float round-off
    return out


def rotate_and_sum(keyring: Keyring, ciphertext: Any, first_step: int, count: int) -> Any:
    """Slot ``p`` of the result holds ``sum_{i<count} x[p + i*first_step]`` (``count`` a power of two)."""
    acc = ciphertext
    step = first_step
    while step < first_step * count:
        rotated = rotate(keyring, acc, step)
        acc = add(keyring, acc, rotated)
        step *= 2
    return acc if acc is not ciphertext else copy(keyring, ciphertext)


# --------------------------------------------------------------------------- matmul


class MatmulPlan:
    """``X @ W`` for ``X`` in ROWS layout (B x d, row stride ``s >= max(d, k)``), ``W`` plaintext (d x k).

    On the slot vector the product is block-diagonal: output slot ``b*s + c`` is
    ``sum_t diag_t[b*s + c] * x[b*s + c + t]`` over the ``d + k - 1`` offsets
    ``t = -(k-1) .. d-1`` with ``diag_t[b*s + c] = W[c + t, c]``. The baby-step/giant-step
    evaluation writes ``t = t_min + g*j + i`` and computes
    ``sum_j rot(sum_i roll(diag_t, G_j) * rot(x, i), G_j)`` with ``G_j = t_min + g*j``:
    ``g - 1`` baby and ``ceil(D/g)`` giant rotations instead of ``D``.

    Building the plan once and reusing it (e.g. for every ciphertext of a multi-ciphertext
    batch, or for repeated products with the same weights) avoids re-encoding the diagonals,
    which is about half the cost of one product.
    """

    def __init__(self, keyring: Keyring, packing: Packing, weights: np.ndarray) -> None:
        weights = np.asarray(weights, dtype=np.float64)
        if packing.layout is not Layout.ROWS or len(packing.shape) != 2:
            raise LayoutError("MatmulPlan needs a 2-D tensor in ROWS layout")
        d = packing.shape[1]
        if weights.ndim != 2 or weights.shape[0] != d:
            raise LayoutError(f"cannot multiply shape {packing.shape} by a matrix of shape {weights.shape}")
        k = weights.shape[1]
        if k > packing.stride:
            raise LayoutError(
                f"output width {k} exceeds the row stride {packing.stride}; encrypt with stride >= {k}"
            )
        self.keyring = keyring
        self.in_packing = packing
        self.out_packing = packing.with_shape((packing.shape[0], k))
        self.weights = weights
        self.t_min = -(k - 1)
        self.num_diagonals = d + k - 1
        self.baby, self.giant = bsgs_split(self.num_diagonals)
        self._rolled: dict[int, dict[tuple[int, int], np.ndarray]] = {}
        self._encoded: dict[tuple[int, bytes], dict[tuple[int, int], Any]] = {}

    @property
    def column_l1_max(self) -> float:
        """Largest column L1 norm: the worst-case growth factor of the values' magnitude."""
        return float(np.abs(self.weights).sum(axis=0).max())

    def _rolled_diagonals(self, blocks: int) -> dict[tuple[int, int], np.ndarray]:
        """Pre-rotated diagonals for a ciphertext with ``blocks`` occupied rows, keyed by (j, i)."""
        if blocks in self._rolled:
            return self._rolled[blocks]
        slots, stride = self.in_packing.slots, self.in_packing.stride
        d, k = self.weights.shape
        cols = np.arange(stride)
        result: dict[tuple[int, int], np.ndarray] = {}
        for j in range(self.giant):
            shift = self.t_min + self.baby * j
            for i in range(self.baby):
                t = shift + i
                if t > d - 1:
                    break
                rows = cols + t
                valid = (cols < k) & (rows >= 0) & (rows < d)
                block = np.zeros(stride)
                block[valid] = self.weights[rows[valid], cols[valid]]
                if not block.any():
                    continue  # SEAL refuses products with a zero plaintext; they add nothing anyway
                diag = np.zeros(slots)
                diag[: blocks * stride] = np.tile(block, blocks)
                result[(j, i)] = np.roll(diag, shift)
        self._rolled[blocks] = result
        return result

    def _plaintexts(self, ciphertext: Any, blocks: int) -> dict[tuple[int, int], Any]:
        key = (blocks, Keyring._parms_key(ciphertext.parms_id()))
        if key not in self._encoded:
            prime = float(self.keyring.rescale_prime(ciphertext.parms_id()))
            self._encoded[key] = {
                ji: self.keyring.encode(vec, ciphertext.parms_id(), prime)
                for ji, vec in self._rolled_diagonals(blocks).items()
            }
        return self._encoded[key]

    def apply(self, ciphertext: Any, blocks: int) -> Any:
        """Multiply one ciphertext holding ``blocks`` rows; consumes one level."""
        _require_level(self.keyring, ciphertext, "a plaintext matmul")
        evaluator = self.keyring.evaluator
        plains = self._plaintexts(ciphertext, blocks)
        if not plains:
            return encrypted_zero(self.keyring, self.keyring.chain_index(ciphertext) - 1)
        used_babies = {i for (_, i) in plains}
        babies = {i: ciphertext if i == 0 else rotate(self.keyring, ciphertext, i) for i in sorted(used_babies)}
        total = None
        for j in range(self.giant):
            inner = None
            for i in range(self.baby):
                plain = plains.get((j, i))
                if plain is None:
                    continue
                term = sealapi.Ciphertext()
                evaluator.multiply_plain(babies[i], plain, term)
                if inner is None:
                    inner = term
                else:
                    evaluator.add_inplace(inner, term)
            if inner is None:
                continue
            shift = self.t_min + self.baby * j
            if shift % self.in_packing.slots:
                inner = rotate(self.keyring, inner, shift)
            if total is None:
                total = inner
            else:
                evaluator.add_inplace(total, inner)
        evaluator.rescale_to_next_inplace(total)
        total.scale = self.keyring.params.scale
        return total

    def apply_all(self, ciphertexts: Sequence[Any]) -> list[Any]:
        return [self.apply(ct, self.in_packing.blocks_in(m)) for m, ct in enumerate(ciphertexts)]
