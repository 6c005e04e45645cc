"""Homomorphic kernels on SEAL ciphertexts, through ``tenseal.sealapi``.

TenSEAL's ``CKKSVector`` exposes no rotation and its matmul paths are slow (0.2-9.6 s for a
64x32 @ 32x32 product); these kernels call SEAL's Evaluator directly. They work on lists of
ciphertexts plus a :class:`~securevfl.crypto.layout.Packing` and know nothing about tensors' semantics
beyond that; :class:`securevfl.crypto.tensor.EncryptedTensor` wraps them.

Scale discipline: every ciphertext is kept at *exactly* ``params.scale``. A plaintext factor is
encoded at the scale of the very prime the following rescale divides by, so
``scale * prime / prime == scale`` and ciphertexts produced along different paths can be added
after a plain modulus switch.

Costs at the ``compute`` preset (N=8192, three data primes; a rotation is a key switch):

=====================  ==================================================================
rotation               ~2.2 ms at 3 primes, ~1.3 ms at 2, ~0.7 ms at 1
plaintext multiply     ~0.2 ms + ~0.5 ms to encode the plaintext + ~0.55 ms rescale
matmul (B x d)@(d x k)  stride >= ``rotations.matmul_stride(d, k)``: ``d`` encoded diagonals,
                        about ``2*sqrt(d)`` rotations; else ``d+k-1`` and ``2*sqrt(d+k-1)``
row gather / replace    one mask multiply + one rotation per row moved
sum                     ``log2`` of the reduced extent rotations
=====================  ==================================================================
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import tenseal.sealapi as sealapi

from .errors import DepthError, LayoutError, MissingRotationKeyError
from .keys import Keyring
from .layout import Layout, Packing
from .rotations import (
    bsgs_split,
    diagonal_matmul_steps,
    matmul_stride,
    replicated_copies,
    replicated_matmul_steps,
    replicated_split,
    replicates,
)

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
            naf.append(((1 << k) if digit > 0 else slots - (1 << k)) % slots)  # a rotation by ``slots`` is none
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


#: Per keyring, (Galois step, level, scale) -> that key switch's offset: a rotated fresh encryption of zero (see
#: :func:`rotate`). Keyed by the scale too, so a cached ciphertext is never modified (parties run in threads).
_KEY_SWITCH_OFFSETS: weakref.WeakKeyDictionary[Keyring, dict[tuple[int, int, float], Any]] = weakref.WeakKeyDictionary()


def rotate(keyring: Keyring, ciphertext: Any, step: int) -> Any:
    """Cyclic left rotation of the slot vector by ``step`` (negative = right), without SEAL's key-switching offset.

    SEAL's key switching splits the ciphertext's mask into one piece per data prime and leaves each
    in ``[0, q_J)`` rather than centred, so every key switch adds the same polynomial
    ``(q_0 / 2P) (1 + X + ... + X^(N-1)) e_0`` on top of its random noise, ``e_0`` being the Galois
    key's own error. It lands in a few low-frequency slots and its size is a property of the key:
    1,400-14,600 noise units (``sqrt(N)/scale``) per rotation over 5 key pairs at the compute preset,
    against 420-740 without it, so a product's noise, and whether a key holder's public noise bound
    refuses an honest request, depended on the run's key pair (docs/threat-model.md). The offset is
    the same for every ciphertext of a level (any ciphertext with a uniform mask), so each key switch
    subtracts a rotated fresh encryption of zero of that level, made once per keyring, step and level:
    one subtraction per rotation; the value is unchanged. The cached zero's own noise (its encryption
    and key switch, ~300-500 units) is subtracted alike from every rotation by that step at that level,
    so it is a smaller fixed term in place of the offset: the errors of two such rotations correlate
    (about +0.5, against 0.6-0.7 with the offset) and a sum of 16 reached 6,200-8,700 units against
    100,000-136,000 with the offset and 2,300-3,900 with a fresh zero each time (review, 2026-11-27).
    """
    plan = _rotation_plan(keyring, step)
    if not plan:
        return copy(keyring, ciphertext)
    out = sealapi.Ciphertext()
    for index, part in enumerate(plan):
        if index == 0:
            keyring.evaluator.rotate_vector(ciphertext, part, keyring.galois_keys, out)
        else:
            keyring.evaluator.rotate_vector_inplace(out, part, keyring.galois_keys)
        keyring.evaluator.sub_inplace(out, _key_switch_offset(keyring, part, keyring.chain_index(out), out.scale))
    return out


def _key_switch_offset(keyring: Keyring, step: int, level: int, scale: float) -> Any:
    offsets = _KEY_SWITCH_OFFSETS.setdefault(keyring, {})
    offset = offsets.get((step, level, scale))
    if offset is None:
        offset = encrypted_zero(keyring, level)
        offset.scale = scale  # it holds no message: only its scale tag has to match the rotated ciphertext's
        keyring.evaluator.rotate_vector_inplace(offset, step, keyring.galois_keys)
        offsets[(step, level, scale)] = offset
    return offset


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
    return _binary(keyring, a, b, keyring.evaluator.add)


def subtract(keyring: Keyring, a: Any, b: Any) -> Any:
    return _binary(keyring, a, b, keyring.evaluator.sub)


def _binary(keyring: Keyring, a: Any, b: Any, operation: Any) -> Any:
    """Apply a ciphertext-ciphertext ``operation`` at a common level; a transparent result is a fresh zero."""
    a, b = align_levels(keyring, a, b)
    out = sealapi.Ciphertext()
    try:
        operation(a, b, out)
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
    """``X @ W`` for ``X`` in ROWS layout (B x d, row stride ``s``), ``W`` plaintext (d x k, ``k <= s``).

    On the slot vector the product is block-diagonal (one row per stride-wide block), so it is a
    sum of rotations of ``X`` times plaintext "diagonals". Two paths, chosen from the stride:

    **replicated** (``s >= rotations.matmul_stride(d, k)``, e.g. 64 for d = k = 32): the block
    holds the row followed by zero padding; one rotation per doubling turns it into copies
    ``[x, x, ...]`` of period ``d``. A rotation by ``t < d`` then reads every output slot
    ``c < k`` cyclically inside its own row, so ``Y = sum_{t<d} rot_t(X) * D_t`` with
    ``D_t[b*s + c] = W[(c + t) mod d, c]``: only ``d`` diagonals. Writing ``t = G_j + i`` with
    ``G_j = j * n_in``::

        Y = rescale( sum_j rot_{G_j}( sum_i rot_i(X) * roll(D_{G_j + i}, G_j) ) )

    ``n_in - 1`` rotations of the input (``rot_1`` chained), and the groups summed by Horner's
    rule with ``rot_{n_in}`` before the one rescale, so their key-switch noise is divided by the
    prime. For d = k = 32: 32 encodings, 1 + 3 + 7 = 11 rotations with three Galois keys
    (-32, 1, 4). The input's own rotations add absolute noise (~4.5e-7 at the ``compute``
    preset) that the product multiplies like the values: a caller that needs precision sends
    the input amplified and folds the inverse into the plaintext (see
    ``securevfl.schemes.label_private.precision``).

    **diagonal** (any stride >= k, or a tensor whose padding is not known to be zero):
    ``d + k - 1`` offsets ``t = -(k-1) .. d-1`` with ``diag_t[b*s + c] = W[c + t, c]``,
    baby-step/giant-step ``t = t_min + g*j + i`` (``g - 1`` baby rotations of the input,
    ``ceil(D/g)`` giant rotations of the group sums, one rescale at the end).

    Both leave the output in ROWS layout with the input's stride and zero padding (every
    diagonal is zero outside the ``k`` output slots of a block) and consume one level.

    ``method`` forces a path (``"replicated"`` / ``"diagonal"``); ``"auto"`` takes the
    replicated one whenever the stride allows it, unless the keyring holds the exact Galois keys
    of the diagonal path only. Build a plan once and reuse it (several ciphertexts, repeated
    products with the same weights) to encode the diagonals once; :meth:`prepare` encodes them
    ahead of time (e.g. as soon as new weights are known, before the ciphertext arrives).
    """

    def __init__(self, keyring: Keyring, packing: Packing, weights: np.ndarray, *, method: str = "auto") -> None:
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
        if method not in ("auto", "replicated", "diagonal"):
            raise ValueError(f"method must be 'auto', 'replicated' or 'diagonal', got {method!r}")
        can_replicate = replicates(d, k, packing.stride)
        if method == "replicated" and not can_replicate:
            raise LayoutError(
                f"the replicated matmul needs a row stride >= {matmul_stride(d, k)} (got {packing.stride}); "
                f"encrypt with stride=crypto.rotations.matmul_stride({d}, {k})"
            )
        if method == "auto":
            method = "diagonal"
            if can_replicate and (
                _has_keys(keyring, replicated_matmul_steps(d, k)) or not _has_keys(keyring, diagonal_matmul_steps(d, k))
            ):
                method = "replicated"
        self.keyring = keyring
        self.in_packing = packing
        self.out_packing = packing.with_shape((packing.shape[0], k))
        self.weights = weights
        self.method = method
        self.t_min = -(k - 1)
        self.copies = replicated_copies(d, k) if can_replicate else 1
        self._split = {
            "replicated": replicated_split(d) if can_replicate else None,
            "diagonal": bsgs_split(d + k - 1),
        }
        self._vectors: dict[tuple[str, int], dict[tuple[int, int], np.ndarray | list[float]]] = {}
        self._encoded: dict[tuple[str, int, bytes], dict[tuple[int, int], Any]] = {}

    # ----------------------------------------------------------------- geometry of the chosen path
    @property
    def num_diagonals(self) -> int:
        d, k = self.weights.shape
        return d if self.method == "replicated" else d + k - 1

    @property
    def baby(self) -> int:
        """Rotations of the input (including the identity) per ciphertext."""
        return self._split[self.method][0]

    @property
    def giant(self) -> int:
        """Groups, each rescaled and rotated once (group 0 not rotated when its shift is 0)."""
        return self._split[self.method][1]

    @property
    def rotations(self) -> int:
        """Key switches per ciphertext (at most; all-zero diagonals are skipped)."""
        if self.method == "replicated":
            return (self.copies.bit_length() - 1) + (self.baby - 1) + (self.giant - 1)
        shifts = [self.t_min + self.baby * j for j in range(self.giant)]
        return (self.baby - 1) + sum(1 for g in shifts if g % self.in_packing.slots)

    @property
    def column_l1_max(self) -> float:
        """Largest column L1 norm: the worst-case growth factor of the values' magnitude."""
        return float(np.abs(self.weights).sum(axis=0).max())

    # ----------------------------------------------------------------- plaintext side (numpy)
    def _diagonal_vectors(self, method: str, blocks: int) -> dict[tuple[int, int], np.ndarray | list[float]]:
        """Slot vectors of the (pre-rotated) diagonals for ``blocks`` occupied rows, keyed by (group, i)."""
        key = (method, blocks)
        if key in self._vectors:
            return self._vectors[key]
        slots, stride = self.in_packing.slots, self.in_packing.stride
        d, k = self.weights.shape
        inputs, groups = self._split[method]
        result: dict[tuple[int, int], np.ndarray | list[float]] = {}
        if method == "replicated":
            cols = np.arange(k)
            # generalized diagonals: table[t, c] = W[(c + t) mod d, c]
            table = self.weights[(cols[None, :] + np.arange(d)[:, None]) % d, cols[None, :]]
            for t in np.flatnonzero(table.any(axis=1)):
                j, i = divmod(int(t), inputs)
                shift = j * inputs  # roll by G_j stays inside the block: G_j + k <= d + k - 1 <= stride
                # built as a Python list (what the encoder takes; the encoder zero-pads the tail):
                # repeating a 64-entry list is ~5x faster than numpy's tolist() of 4096 slots
                block = [0.0] * shift + table[t].tolist() + [0.0] * (stride - shift - k)
                result[(j, i)] = block * blocks
        else:
            cols = np.arange(stride)
            for j in range(groups):
                shift = self.t_min + inputs * j
                for i in range(inputs):
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
        self._vectors[key] = result
        return result

    def _plaintexts(self, method: str, parms_id: Any, blocks: int) -> dict[tuple[int, int], Any]:
        key = (method, blocks, Keyring._parms_key(parms_id))
        if key not in self._encoded:
            prime = float(self.keyring.rescale_prime(parms_id))
            encoder = _encoder(self.keyring)
            encoded = {}
            for ji, vec in self._diagonal_vectors(method, blocks).items():
                plain = sealapi.Plaintext()
                values = vec.tolist() if isinstance(vec, np.ndarray) else vec  # a list converts fastest
                encoder.encode(values, parms_id, prime, plain)
                if not plain.is_zero():  # values below the encoding precision: SEAL refuses zero products
                    encoded[ji] = plain
            self._encoded[key] = encoded
        return self._encoded[key]

    def prepare(self, levels_left: int | None = None) -> MatmulPlan:
        """Encode the diagonals for ciphertexts with ``levels_left`` levels (default: all) ahead of time.

        Encoding is about half the cost of a product; a party that knows its next weights before
        the ciphertext arrives can pay it early. Returns the plan.
        """
        levels = self.keyring.params.depth if levels_left is None else levels_left
        if levels < 1:
            raise DepthError("a plaintext matmul needs one multiplicative level; nothing to prepare at level 0")
        parms_id = self.keyring.parms_id_at(levels)
        for blocks in sorted({self.in_packing.blocks_in(m) for m in range(self.in_packing.num_ciphertexts)}):
            self._plaintexts(self.method, parms_id, blocks)
        return self

    # ----------------------------------------------------------------- ciphertext side
    def apply(self, ciphertext: Any, blocks: int, padding_clean: bool = True) -> Any:
        """Multiply one ciphertext holding ``blocks`` rows; consumes one level.

        The replicated path relies on zero padding; with ``padding_clean=False`` the diagonal
        path runs instead (it reads data slots only).
        """
        _require_level(self.keyring, ciphertext, "a plaintext matmul")
        method = self.method if padding_clean else "diagonal"
        plains = self._plaintexts(method, ciphertext.parms_id(), blocks)
        if not plains:
            return encrypted_zero(self.keyring, self.keyring.chain_index(ciphertext) - 1)
        inputs, groups = self._split[method]
        keyring = self.keyring
        if method == "diagonal":
            # giant rotations before the (single) rescale: their key-switch noise is then divided
            # by the prime (rotating after it is ~3 ms faster but 2-4x noisier with 8 giant steps)
            sums = self._group_sums(ciphertext, plains, inputs, groups, chained=False, rescale=False)
            total = None
            for j, inner in enumerate(sums):
                if inner is None:
                    continue
                shift = self.t_min + inputs * j
                if shift % self.in_packing.slots:
                    inner = rotate(keyring, inner, shift)
                total = inner if total is None else add(keyring, total, inner)
            keyring.evaluator.rescale_to_next_inplace(total)
            total.scale = keyring.params.scale
            return total
        source, step = ciphertext, self.weights.shape[0]
        for _ in range(self.copies.bit_length() - 1):  # row copies [x, x, ...] by doubling
            source = add(keyring, source, rotate(keyring, source, -step))
            step *= 2
        sums = self._group_sums(source, plains, inputs, groups, chained=True, rescale=False)
        # Horner over the groups: sum_j rot_{j*inputs}(S_j) = S_0 + rot(S_1 + rot(S_2 + ...)), all by one key,
        # before the (single) rescale: the key-switch noise of these rotations is then divided by the prime
        # (rescaling each group first runs them one level lower, ~10 % faster, but adds ~2-5e-7 at the
        # working scale -- which noise flooding multiplies by 2**15)
        total = None
        for inner in reversed(sums):
            if total is not None:
                total = rotate(keyring, total, inputs)
            if inner is not None:
                total = inner if total is None else add(keyring, total, inner)
        keyring.evaluator.rescale_to_next_inplace(total)
        total.scale = keyring.params.scale
        return total

    def _group_sums(
        self,
        source: Any,
        plains: dict[tuple[int, int], Any],
        inputs: int,
        groups: int,
        chained: bool,
        rescale: bool,
    ) -> list[Any | None]:
        """Per group ``j``: ``sum_i rot_i(source) * plains[j, i]``, rescaled if asked (None when empty).

        The rotations of the input are ``rot_i`` directly, or (``chained``) ``rot_1`` applied
        ``i`` times: the same number of key switches with a single Galois key. A group rescaled
        before it is rotated has its rotation run one level lower, where a key switch costs about
        half as much -- but adds its noise (~2-5e-7) at the working scale instead of at scale^2.
        """
        keyring, evaluator = self.keyring, self.keyring.evaluator
        used = sorted({i for (_, i) in plains})
        rotated: dict[int, Any] = {0: source}
        for i in range(1, used[-1] + 1):
            if chained:
                rotated[i] = rotate(keyring, rotated[i - 1], 1)
            elif i in used:
                rotated[i] = rotate(keyring, source, i)
        sums: list[Any | None] = []
        for j in range(groups):
            inner = None
            for i in range(inputs):
                plain = plains.get((j, i))
                if plain is None:
                    continue
                term = sealapi.Ciphertext()
                evaluator.multiply_plain(rotated[i], plain, term)
                if inner is None:
                    inner = term
                else:
                    evaluator.add_inplace(inner, term)
            if inner is not None and rescale:
                evaluator.rescale_to_next_inplace(inner)
                inner.scale = keyring.params.scale
            sums.append(inner)
        return sums

    def apply_all(self, ciphertexts: Sequence[Any], padding_clean: bool = True) -> list[Any]:
        return [
            self.apply(ct, self.in_packing.blocks_in(m), padding_clean) for m, ct in enumerate(ciphertexts)
        ]


_ENCODERS: weakref.WeakKeyDictionary[Keyring, Any] = weakref.WeakKeyDictionary()


def _encoder(keyring: Keyring) -> Any:
    """A CKKSEncoder for the keyring's context (the diagonals are encoded in bulk, without copies)."""
    encoder = _ENCODERS.get(keyring)
    if encoder is None:
        encoder = _ENCODERS[keyring] = sealapi.CKKSEncoder(keyring.seal_context)
    return encoder


def _has_keys(keyring: Keyring, steps: Sequence[int]) -> bool:
    slots = keyring.params.slots
    return all(s % slots == 0 or s % slots in keyring.rotation_steps for s in steps)
