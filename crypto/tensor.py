"""``EncryptedTensor``: a shaped, packed list of CKKS ciphertexts with numpy-like operations.

An encrypted tensor is immutable; every operation returns a new one. It carries:

* its :class:`~securevfl.crypto.layout.Packing` (shape, layout, row stride),
* the keyring it was encrypted under (public or secret; decryption needs the secret one),
* ``value_bound`` -- a worst-case bound on the magnitude of every element, derived only from
  public information (the bound declared at encryption and the plaintext operands applied since).
  Operations whose worst case would exceed what the last level can decrypt raise
  :class:`~securevfl.crypto.errors.PrecisionError` *before* computing, instead of silently wrapping around;
* ``padding_clean`` -- whether the slots outside the data are zero. Reductions leave partial
  sums there; a later reduction first zeroes them with a 0/1 mask (one level).

Plaintext operands broadcast numpy-style to the tensor's shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import kernels
from ._sealio import save_to_bytes
from .errors import ContextMismatchError, KeyRoleError, LayoutError, PrecisionError, SerializationError
from .keys import Keyring, SecretKeyring
from .layout import Layout, Packing
from .params import CEILING_MARGIN
from .rotations import reduction_plan, rows_view
from .wire import FLAG_PADDING_CLEAN, FLAG_SEEDED, WireHeader, decode_tensor_bytes, encode_tensor_bytes

__all__ = ["EncryptedTensor"]

_LAYOUTS_BY_CODE = {0: Layout.FLAT, 1: Layout.ROWS, 2: Layout.COLUMNS}


def _to_numpy(data: Any) -> np.ndarray:
    """numpy view of numpy / torch / nested-list input, without importing torch."""
    if type(data).__module__.startswith("torch"):
        data = data.detach().cpu()
        if not data.dtype.is_floating_point or data.dtype.itemsize < 4:
            data = data.double() if not data.dtype.is_floating_point else data.float()
        data = data.numpy()
    array = np.asarray(data)
    if array.dtype.kind not in "fiub":
        raise PrecisionError(f"cannot encrypt values of dtype {array.dtype}")
    return array


def _result_dtype(array: np.ndarray) -> np.dtype:
    return np.dtype(np.float32) if array.dtype == np.float32 or array.dtype.itemsize < 4 else np.dtype(np.float64)


def _check_finite(array: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(array)):
        raise PrecisionError(f"{what} contains NaN or Inf; CKKS can only encode finite values")


def _describe_ceiling(ceiling: float) -> str:
    """``523776 (2^19 less the 2^-10 margin)``: the exact number, so a refused 524288 reads as above it."""
    return f"{ceiling:.10g} (2^{math.ceil(math.log2(ceiling))} less the 2^{math.log2(CEILING_MARGIN):.0f} margin)"


class EncryptedTensor:
    """A tensor of real values encrypted with CKKS.

    Create one with :meth:`encrypt` or :meth:`from_bytes`; read it with :meth:`decrypt`.
    """

    __array_ufunc__ = None  # make `ndarray @ tensor`, `ndarray + tensor` reach our reflected operators

    def __init__(
        self,
        keyring: Keyring,
        packing: Packing,
        ciphertexts: Sequence[Any] | None,
        *,
        value_bound: float,
        dtype: np.dtype,
        padding_clean: bool = True,
        seeded_payloads: Sequence[bytes] | None = None,
    ) -> None:
        if ciphertexts is None and seeded_payloads is None:
            raise ValueError("an EncryptedTensor needs ciphertexts or seeded payloads")
        self._keyring = keyring
        self._packing = packing
        self._ciphertexts = list(ciphertexts) if ciphertexts is not None else None
        self._seeded_payloads = list(seeded_payloads) if seeded_payloads is not None else None
        self._value_bound = float(value_bound)
        self._dtype = np.dtype(dtype)
        self._padding_clean = padding_clean

    # ================================================================= construction
    @classmethod
    def encrypt(
        cls,
        keyring: Keyring,
        data: Any,
        layout: Layout | str = Layout.FLAT,
        *,
        stride: int | None = None,
        bound: float | None = None,
        levels: int | None = None,
        seeded: bool | None = None,
    ) -> EncryptedTensor:
        """Encrypt a numpy array, torch tensor or nested list.

        Args:
            keyring: a :class:`PublicKeyring` (public-key encryption) or :class:`SecretKeyring`
                (symmetric encryption: smaller noise, and seeded wire form).
            layout: packing layout, see :mod:`securevfl.crypto.layout`.
            stride: row (ROWS) or column (COLUMNS) stride; defaults to the next power of two.
            bound: public worst-case magnitude of the values (default: the preset's
                ``max_magnitude``). Values above it are refused; a tighter bound leaves more room
                for sums and products before :class:`PrecisionError`.
            levels: multiplicative levels to keep (default: all). ``levels=0`` encrypts at the
                last level: the smallest and fastest ciphertexts, for messages nobody multiplies.
            seeded: keep the seeded symmetric form for the wire (about half the bytes). Default:
                True exactly when the keyring holds the secret key.

        Raises:
            PrecisionError: NaN/Inf, or a value above ``bound`` / the preset's bound.
            LayoutError: the layout cannot hold this shape.
            KeyRoleError: ``seeded=True`` with a public keyring.
        """
        params = keyring.params
        array = _to_numpy(data)
        dtype = _result_dtype(array)
        values = array.astype(np.float64, copy=False)
        _check_finite(values, "input")
        limit = params.max_magnitude if bound is None else float(bound)
        at_level = params.depth if levels is None else min(max(int(levels), 0), params.depth)
        ceiling = params.ceiling_at(at_level)
        if not (math.isfinite(limit) and 0 < limit <= ceiling):
            raise PrecisionError(
                f"bound={bound!r} must be positive and at most the decryptable ceiling "
                f"{_describe_ceiling(ceiling)} of preset {params.name!r} at {at_level} level(s) left"
            )
        peak = float(np.max(np.abs(values))) if values.size else 0.0
        if peak > limit:
            raise PrecisionError(
                f"input magnitude {peak:.6g} exceeds the bound {limit:g}"
                + (
                    f" (preset {params.name!r} max_magnitude = 2^{math.log2(limit):.0f}: larger values would "
                    f"overflow the 2^{params.coeff_modulus_bits[0]} first prime at scale 2^{params.scale_bits} once multiplied)"
                    if bound is None
                    else ""
                )
                + "; rescale the data before encrypting"
            )
        packing = Packing.create(values.shape, layout, params.slots, stride)
        slot_vectors = packing.pack(values)
        if seeded is None:
            seeded = keyring.is_private()
        if seeded:
            payloads = [keyring.encrypt_vector_seeded(v, levels) for v in slot_vectors]
            return cls(keyring, packing, None, value_bound=limit, dtype=dtype, seeded_payloads=payloads)
        ciphertexts = [keyring.encrypt_vector(v, levels) for v in slot_vectors]
        return cls(keyring, packing, ciphertexts, value_bound=limit, dtype=dtype)

    # ================================================================= properties
    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @property
    def packing(self) -> Packing:
        return self._packing

    @property
    def shape(self) -> tuple[int, ...]:
        return self._packing.shape

    @property
    def ndim(self) -> int:
        return len(self._packing.shape)

    @property
    def size(self) -> int:
        return self._packing.size

    @property
    def layout(self) -> Layout:
        return self._packing.layout

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def value_bound(self) -> float:
        """Public worst-case magnitude of every element."""
        return self._value_bound

    @property
    def padding_clean(self) -> bool:
        return self._padding_clean

    @property
    def num_ciphertexts(self) -> int:
        return self._packing.num_ciphertexts

    @property
    def ciphertexts(self) -> list[Any]:
        """The SEAL ciphertexts (seeded payloads are expanded on first access)."""
        if self._ciphertexts is None:
            assert self._seeded_payloads is not None
            self._ciphertexts = [self._keyring.load_ciphertext(p) for p in self._seeded_payloads]
        return self._ciphertexts

    @property
    def levels_left(self) -> int:
        """Plaintext multiplications still possible."""
        if self._ciphertexts is None:
            return self._keyring.chain_index(self.ciphertexts[0])
        return min(self._keyring.chain_index(c) for c in self._ciphertexts)

    @property
    def T(self) -> EncryptedTensor:  # noqa: N802 - numpy's name
        """Transpose of a 2-D ROWS/COLUMNS tensor: the same ciphertexts, the other layout."""
        return self._derive(self.ciphertexts, packing=self._packing.transposed())

    def __repr__(self) -> str:
        return (
            f"EncryptedTensor(shape={self.shape}, layout={self.layout.value}, stride={self._packing.stride}, "
            f"ciphertexts={self.num_ciphertexts}, preset={self._keyring.params.name}, bound={self._value_bound:g})"
        )

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d encrypted tensor")
        return self.shape[0]

    # ================================================================= decryption
    def decrypt(self, keyring: SecretKeyring | None = None) -> np.ndarray:
        """Decrypt to a numpy array of the original dtype.

        Raises:
            KeyRoleError: no secret key (a :class:`PublicKeyring` cannot decrypt).
            ContextMismatchError: ``keyring`` belongs to another key pair.
        """
        keyring = keyring if keyring is not None else self._keyring
        if not keyring.is_private():
            raise KeyRoleError(
                "decryption needs the SecretKeyring of the key holder; this tensor only has a PublicKeyring"
            )
        self._check_same_key(keyring)
        slot_vectors = np.stack([keyring.decrypt_vector(c) for c in self.ciphertexts])
        return self._packing.unpack(slot_vectors).astype(self._dtype)

    def decrypt_torch(self, keyring: SecretKeyring | None = None) -> Any:
        import torch

        return torch.from_numpy(self.decrypt(keyring))

    # ================================================================= serialization
    def to_bytes(self, *, mod_switch_to_last: bool = False, declared_bound: float | None = None) -> bytes:
        """Serialize (see :mod:`securevfl.crypto.wire`).

        Args:
            mod_switch_to_last: drop every remaining level first. Use it when the receiver will
                not multiply: ciphertexts shrink by the dropped primes (the ``compute`` preset
                goes from 3 primes to 1). Seeded payloads are kept whenever they already are at
                the requested level, since they are the smallest form.
            declared_bound: a public bound to write in the header instead of the tracked one
                (which is still checked here). The tracked bound is derived from the plaintexts
                the sender multiplied and added (its own weights, features, masks), so a header
                carrying it tells the receiver about them; a masked request declares the mask's
                public width instead.
        """
        params = self._keyring.params
        seeded = self._seeded_payloads is not None and not (
            mod_switch_to_last and self.levels_left > 0
        )
        if seeded:
            payloads = list(self._seeded_payloads or [])
        else:
            cts = self.ciphertexts
            if mod_switch_to_last:
                self._checked_bound(self._value_bound, "to_bytes(mod_switch_to_last=True)", levels_used=self.levels_left)
                cts = [kernels.mod_switch_to_level(self._keyring, c, 0) for c in cts]
            payloads = [save_to_bytes(c) for c in cts]
        header = WireHeader(
            flags=(FLAG_SEEDED if seeded else 0) | (FLAG_PADDING_CLEAN if self._padding_clean else 0),
            layout_code=self._packing.code,
            dtype=self._dtype,
            levels_left=0 if mod_switch_to_last else self.levels_left,
            stride=self._packing.stride,
            value_bound=self._value_bound if declared_bound is None else self._checked_bound(
                declared_bound, "to_bytes(declared_bound)", levels_used=self.levels_left if mod_switch_to_last else 0
            ),
            params_fingerprint=params.fingerprint,
            key_id=self._keyring.key_id,
            shape=self.shape,
        )
        return encode_tensor_bytes(header, payloads)

    @classmethod
    def from_bytes(cls, keyring: Keyring, data: bytes) -> EncryptedTensor:
        """Load bytes produced by :meth:`to_bytes` under ``keyring``'s key pair.

        Raises:
            SerializationError: wrong magic or version, truncated or tampered bytes, a foreign
                parameter set or key pair, or ciphertexts SEAL rejects for this context.
        """
        header, payloads = decode_tensor_bytes(data)
        params = keyring.params
        if header.params_fingerprint != params.fingerprint:
            raise SerializationError(
                f"ciphertexts were produced under a different parameter set than this keyring's ({params.name!r})"
            )
        if header.key_id != keyring.key_id:
            raise SerializationError(
                f"ciphertexts were encrypted under a different key pair (key id {header.key_id.hex()[:12]}, "
                f"this keyring {keyring.key_id.hex()[:12]})"
            )
        if not 0 <= header.levels_left <= params.depth or header.value_bound > params.ceiling_at(header.levels_left):
            raise SerializationError("encrypted tensor declares a value bound above the decryptable ceiling of its level")
        try:
            packing = Packing.create(
                header.shape, _LAYOUTS_BY_CODE[header.layout_code], params.slots,
                None if header.layout_code == 0 else header.stride,
            )
        except LayoutError as exc:
            raise SerializationError(f"encrypted tensor header describes an invalid packing: {exc}") from exc
        if packing.stride != header.stride or packing.num_ciphertexts != len(payloads):
            raise SerializationError(
                f"encrypted tensor header announces {len(payloads)} ciphertexts; its shape needs {packing.num_ciphertexts}"
            )
        ciphertexts = [keyring.load_ciphertext(p) for p in payloads]
        for ct in ciphertexts:
            if keyring.chain_index(ct) != header.levels_left or not math.isclose(ct.scale, params.scale, rel_tol=1e-9):
                raise SerializationError("a ciphertext's level or scale disagrees with the header")
        return cls(
            keyring,
            packing,
            ciphertexts,
            value_bound=header.value_bound,
            dtype=header.dtype,
            padding_clean=bool(header.flags & FLAG_PADDING_CLEAN),
        )

    # ================================================================= helpers
    def _derive(
        self,
        ciphertexts: list[Any],
        *,
        packing: Packing | None = None,
        bound: float | None = None,
        padding_clean: bool | None = None,
    ) -> EncryptedTensor:
        return EncryptedTensor(
            self._keyring,
            packing or self._packing,
            ciphertexts,
            value_bound=self._value_bound if bound is None else bound,
            dtype=self._dtype,
            padding_clean=self._padding_clean if padding_clean is None else padding_clean,
        )

    def _checked_bound(self, bound: float, what: str, levels_used: int = 0) -> float:
        """``bound`` if a result that far from zero still decrypts at its level (``levels_used`` below this one)."""
        params = self._keyring.params
        ceiling = params.ceiling_at(max(self.levels_left - levels_used, 0))
        if not bound <= ceiling:
            raise PrecisionError(
                f"{what}: the worst-case result magnitude {bound:.6g} would exceed the decryptable ceiling "
                f"{_describe_ceiling(ceiling)} of preset {params.name!r}; encrypt with a "
                "tighter `bound=` or scale the operands down"
            )
        return bound

    def _levels_below(self, other: EncryptedTensor) -> int:
        """How far below this tensor's level a result with ``other`` lands (operands are aligned down)."""
        return max(self.levels_left - other.levels_left, 0)

    def _check_same_key(self, keyring: Keyring) -> None:
        if keyring.key_id != self._keyring.key_id or keyring.params != self._keyring.params:
            raise ContextMismatchError(
                "operands belong to different key pairs or parameter sets "
                f"({self._keyring.params.name}/{self._keyring.key_id.hex()[:12]} vs "
                f"{keyring.params.name}/{keyring.key_id.hex()[:12]})"
            )

    def _check_compatible(self, other: EncryptedTensor, what: str) -> None:
        if not isinstance(other, EncryptedTensor):
            raise TypeError(f"{what} expects an EncryptedTensor, got {type(other).__name__}")
        self._check_same_key(other._keyring)
        if other.shape != self.shape:
            raise LayoutError(f"{what}: shape mismatch {self.shape} vs {other.shape}")
        if other._packing != self._packing:
            raise LayoutError(
                f"{what}: layout mismatch ({self.layout.value}, stride {self._packing.stride}) vs "
                f"({other.layout.value}, stride {other._packing.stride}); encrypt both with the same layout"
            )

    def _plain_operand(self, other: Any, what: str) -> np.ndarray:
        array = _to_numpy(other).astype(np.float64, copy=False)
        _check_finite(array, f"plaintext operand of {what}")
        try:
            return np.broadcast_to(array, self.shape)
        except ValueError:
            raise LayoutError(f"{what}: plaintext of shape {array.shape} does not broadcast to {self.shape}") from None

    def _require_clean(self, what: str) -> list[Any]:
        """Ciphertexts with zero padding; zeroes partial sums with a 0/1 mask if needed (one level)."""
        if self._padding_clean:
            return self.ciphertexts
        mask = self._packing.pack(np.ones(self.shape))
        return [
            kernels.multiply_plain(self._keyring, c, m, what=f"{what} (zeroing the padding left by a previous reduction)")
            for c, m in zip(self.ciphertexts, mask)
        ]

    # ================================================================= elementwise
    def __add__(self, other: Any) -> EncryptedTensor:
        if isinstance(other, EncryptedTensor):
            self._check_compatible(other, "add")
            cts = [kernels.add(self._keyring, a, b) for a, b in zip(self.ciphertexts, other.ciphertexts)]
            bound = self._checked_bound(self._value_bound + other._value_bound, "add", self._levels_below(other))
            return self._derive(cts, bound=bound, padding_clean=self._padding_clean and other._padding_clean)
        return self.add_plain(other)

    __radd__ = __add__

    def __sub__(self, other: Any) -> EncryptedTensor:
        if isinstance(other, EncryptedTensor):
            self._check_compatible(other, "subtract")
            cts = [kernels.subtract(self._keyring, a, b) for a, b in zip(self.ciphertexts, other.ciphertexts)]
            bound = self._checked_bound(self._value_bound + other._value_bound, "subtract", self._levels_below(other))
            return self._derive(cts, bound=bound, padding_clean=self._padding_clean and other._padding_clean)
        return self.add_plain(-self._plain_operand(other, "subtract"))

    def __rsub__(self, other: Any) -> EncryptedTensor:
        return (-self).add_plain(other)

    def __neg__(self) -> EncryptedTensor:
        return self._derive([kernels.negate(self._keyring, c) for c in self.ciphertexts])

    def add_plain(self, values: Any, *, result_bound: float | None = None) -> EncryptedTensor:
        """Add a plaintext tensor (e.g. noise or a mask to be removed later); no level consumed.

        ``result_bound``: a public bound on the *result* when the caller knows better than the
        worst case, typically when subtracting a random mask it added itself (the masked value
        minus the mask is the original value, whose bound is known). It replaces the tracked
        bound, so it must be true: a wrong one can let later operations overflow silently.
        """
        plain = self._plain_operand(values, "add_plain")
        tracked = self._value_bound + float(np.max(np.abs(plain))) if plain.size else self._value_bound
        bound = self._checked_bound(tracked if result_bound is None else float(result_bound), "add_plain")
        vectors = self._packing.pack(np.ascontiguousarray(plain))
        cts = [kernels.add_plain(self._keyring, c, v) for c, v in zip(self.ciphertexts, vectors)]
        return self._derive(cts, bound=bound)

    def __mul__(self, other: Any) -> EncryptedTensor:
        if isinstance(other, EncryptedTensor):
            raise TypeError("ciphertext-by-ciphertext multiplication is not supported; multiply by plaintexts")
        if np.ndim(other) == 0:
            return self.scale(float(other))
        return self.multiply_plain(other)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> EncryptedTensor:
        if np.ndim(other) != 0:
            return self.multiply_plain(1.0 / self._plain_operand(other, "divide"))
        return self.scale(1.0 / float(other))

    def scale(self, factor: float) -> EncryptedTensor:
        """Multiply every element by a plaintext scalar (one level)."""
        factor = float(factor)
        if not math.isfinite(factor):
            raise PrecisionError("scale factor is NaN or Inf")
        bound = self._checked_bound(self._value_bound * abs(factor), "scale", levels_used=1)
        cts = [kernels.multiply_plain(self._keyring, c, factor, "scaling") for c in self.ciphertexts]
        return self._derive(cts, bound=bound)

    def multiply_plain(self, values: Any) -> EncryptedTensor:
        """Elementwise product with a plaintext tensor, e.g. a 0/1 sparsification mask (one level)."""
        plain = self._plain_operand(values, "multiply_plain")
        bound = self._checked_bound(self._value_bound * float(np.max(np.abs(plain))), "multiply_plain", levels_used=1)
        vectors = self._packing.pack(np.ascontiguousarray(plain))
        cts = [kernels.multiply_plain(self._keyring, c, v, "a plaintext mask") for c, v in zip(self.ciphertexts, vectors)]
        # padding slots were multiplied by zero, so they are clean even if they were not before
        return self._derive(cts, bound=bound, padding_clean=True)

    @staticmethod
    def sum_of(tensors: Iterable[EncryptedTensor], *, result_bound: float | None = None) -> EncryptedTensor:
        """Elementwise sum of several tensors with the same shape, layout and key pair.

        ``result_bound``: a public bound on the *sum* when the caller knows better than the sum of the
        terms' bounds (terms carrying masks that cancel in the sum: CKKS adds modulo the ciphertext
        modulus, so only the result's magnitude decides whether it decrypts). It replaces the tracked
        bound, so it must be true: a wrong one can let later operations overflow silently.
        """
        tensors = list(tensors)
        if not tensors:
            raise ValueError("sum_of needs at least one tensor")
        first = tensors[0]
        for other in tensors[1:]:
            first._check_compatible(other, "sum_of")
        bound = first._checked_bound(
            sum(t._value_bound for t in tensors) if result_bound is None else float(result_bound), "sum_of",
            first.levels_left - min(t.levels_left for t in tensors),
        )
        keyring = first._keyring
        summed = []
        for column in zip(*(t.ciphertexts for t in tensors)):
            aligned = kernels.align_levels(keyring, *column)
            acc = kernels.copy(keyring, aligned[0])
            for ct in aligned[1:]:
                keyring.evaluator.add_inplace(acc, ct)
            summed.append(acc)
        clean = all(t._padding_clean for t in tensors)
        return first._derive(summed, bound=bound, padding_clean=clean)

    # ================================================================= levels
    def mod_switch_to(self, levels_left: int) -> EncryptedTensor:
        """Drop primes until ``levels_left`` multiplications remain (cheaper kernels, smaller bytes)."""
        if not 0 <= levels_left <= self.levels_left:
            raise ValueError(f"levels_left must be in [0, {self.levels_left}], got {levels_left}")
        self._checked_bound(self._value_bound, "mod_switch_to", levels_used=self.levels_left - levels_left)
        return self._derive([kernels.mod_switch_to_level(self._keyring, c, levels_left) for c in self.ciphertexts])

    def mod_switch_to_last(self) -> EncryptedTensor:
        return self.mod_switch_to(0)

    # ================================================================= reductions
    def sum(self, axis: int | None = None) -> EncryptedTensor:
        """Sum over all elements (``axis=None``) or over one axis of a 2-D ROWS/COLUMNS tensor.

        Also accepts ``axis=0`` for ROWS tensors of any rank, and 2-D FLAT tensors whose width
        is a power of two (they have the ROWS geometry). Rotation keys: :func:`securevfl.crypto.rotations.sum_steps`.
        The result's padding holds partial sums (``padding_clean`` is False).
        """
        packing = self._packing
        if axis is not None:
            if not -self.ndim <= axis < self.ndim:
                raise LayoutError(f"axis {axis} is out of range for shape {self.shape}")
            axis %= self.ndim
            if self.ndim == 1:
                axis = None
        cts = self._require_clean("sum")
        keyring = self._keyring
        if axis is None:
            first, count = reduction_plan(packing, None)
            total = kernels.align_levels(keyring, *cts)
            acc = total[0]
            for ct in total[1:]:
                acc = kernels.add(keyring, acc, ct)
            acc = kernels.rotate_and_sum(keyring, acc, first, count)
            bound = self._checked_bound(self._value_bound * self.size, "sum")
            return self._derive([acc], packing=Packing(Layout.FLAT, (), packing.slots, 1), bound=bound, padding_clean=False)

        geometry = rows_view(packing)
        if geometry.layout is Layout.FLAT or (geometry.layout is Layout.COLUMNS and self.ndim != 2):
            raise LayoutError(
                f"sum over axis {axis} needs a ROWS or COLUMNS layout (got {packing.layout.value} with shape {self.shape})"
            )
        if geometry.layout is Layout.ROWS and axis != 0 and self.ndim != 2:
            raise LayoutError(f"a ROWS tensor of rank {self.ndim} can only be summed over axis 0 or all axes")
        first, count = reduction_plan(packing, axis)
        reduce_blocks = (axis == 0) == (geometry.layout is Layout.ROWS)
        bound = self._checked_bound(self._value_bound * self.shape[axis], "sum")
        remaining = self.shape[:axis] + self.shape[axis + 1 :]
        if reduce_blocks:
            aligned = kernels.align_levels(keyring, *cts)
            acc = aligned[0]
            for ct in aligned[1:]:
                acc = kernels.add(keyring, acc, ct)
            acc = kernels.rotate_and_sum(keyring, acc, first, count)
            out_packing = Packing(Layout.FLAT, remaining, packing.slots, 1)
            return self._derive([acc], packing=out_packing, bound=bound, padding_clean=False)
        reduced = [kernels.rotate_and_sum(keyring, c, first, count) for c in cts]
        out_packing = Packing(Layout.ROWS, remaining, packing.slots, geometry.stride)
        return self._derive(reduced, packing=out_packing, bound=bound, padding_clean=False)

    # ================================================================= matmul
    def matmul(self, weights: Any) -> EncryptedTensor:
        """``self @ weights`` for a ROWS tensor (B x d) and a plaintext matrix (d x k) or :class:`MatmulPlan`.

        One level; output (B x k) in ROWS layout with the same stride (requires k <= stride) and
        zero padding. With ``stride >= crypto.rotations.matmul_stride(d, k)`` (64 for d = k = 32)
        the faster replicated path runs (see :class:`~securevfl.crypto.kernels.MatmulPlan`).
        Rotation keys: ``securevfl.crypto.rotations.matmul_steps(d, k, stride)``.
        """
        packing = rows_view(self._packing)
        if packing.layout is not Layout.ROWS or self.ndim != 2:
            raise LayoutError(
                f"X @ W needs X as a 2-D ROWS tensor (got {self.layout.value}, shape {self.shape}); "
                "for A @ X encrypt X in COLUMNS layout"
            )
        if isinstance(weights, kernels.MatmulPlan):
            plan = weights
            if plan.in_packing != packing or plan.keyring.key_id != self._keyring.key_id:
                raise LayoutError("this MatmulPlan was built for another packing or key pair")
        else:
            plan = kernels.MatmulPlan(self._keyring, packing, self._plain_operand_matrix(weights))
        bound = self._checked_bound(self._value_bound * plan.column_l1_max, "matmul", levels_used=1)
        cts = plan.apply_all(self.ciphertexts, padding_clean=self._padding_clean)
        return self._derive(cts, packing=plan.out_packing, bound=bound, padding_clean=True)

    def _plain_operand_matrix(self, weights: Any) -> np.ndarray:
        matrix = _to_numpy(weights).astype(np.float64, copy=False)
        _check_finite(matrix, "plaintext matrix")
        return matrix

    def __matmul__(self, weights: Any) -> EncryptedTensor:
        return self.matmul(weights)

    def __rmatmul__(self, matrix: Any) -> EncryptedTensor:
        """``A @ self`` for a plaintext A (a x B) and a COLUMNS tensor (B x d): computed as ``(self.T @ A.T).T``."""
        if self.layout is not Layout.COLUMNS:
            raise LayoutError("A @ X needs X in COLUMNS (feature-major) layout; X @ W needs ROWS")
        matrix = self._plain_operand_matrix(matrix)
        if matrix.ndim != 2:
            raise LayoutError(f"A @ X needs a 2-D plaintext A, got shape {matrix.shape}")
        return self.T.matmul(np.ascontiguousarray(matrix.T)).T

    # ================================================================= row addressing
    def _rows_packing(self, what: str) -> Packing:
        packing = rows_view(self._packing)
        if packing.layout is not Layout.ROWS or self.ndim != 2:
            raise LayoutError(f"{what} needs a 2-D ROWS tensor, got {self.layout.value} with shape {self.shape}")
        return packing

    def gather_row(self, index: int, scale: float = 1.0) -> EncryptedTensor:
        """``scale * self[index]`` as a (1 x d) ROWS tensor whose row sits in block 0 (one level, one rotation).

        Folding a scale factor in here is free; doing it in :meth:`replace_rows` costs a level.
        """
        packing = self._rows_packing("gather_row")
        if not -packing.shape[0] <= index < packing.shape[0]:
            raise LayoutError(f"row {index} is out of range for {packing.shape[0]} rows")
        index %= packing.shape[0]
        scale = float(scale)
        if not math.isfinite(scale):
            raise PrecisionError("scale factor is NaN or Inf")
        bound = self._checked_bound(self._value_bound * abs(scale), "gather_row", levels_used=1)
        which, local = divmod(index, packing.blocks_per_ciphertext)
        start = local * packing.stride
        mask = np.zeros(packing.slots)
        mask[start : start + packing.block_width] = scale
        selected = kernels.multiply_plain(self._keyring, self.ciphertexts[which], mask, "gather_row")
        moved = kernels.rotate(self._keyring, selected, start)
        out_packing = Packing(Layout.ROWS, (1, packing.block_width), packing.slots, packing.stride)
        return self._derive([moved], packing=out_packing, bound=bound, padding_clean=True)

    def replace_rows(self, rows: Sequence[int], row: EncryptedTensor, scale: float = 1.0) -> EncryptedTensor:
        """Overwrite rows ``rows`` with ``scale * row`` under encryption.

        ``row`` is a (1 x d) ROWS tensor with the same stride (e.g. from :meth:`gather_row`) or a
        (d,) FLAT tensor. Costs one level on ``self`` (zeroing the target rows) and one rotation
        per target row; the row itself needs no level when ``scale == 1`` and its padding is
        clean, otherwise one more (a mask carrying ``scale``).
        """
        packing = self._rows_packing("replace_rows")
        width = packing.block_width
        if not isinstance(row, EncryptedTensor):
            raise TypeError("replace_rows expects an EncryptedTensor row")
        self._check_same_key(row._keyring)
        row_ok = (row.shape == (1, width) and row.layout is Layout.ROWS and row._packing.stride == packing.stride) or (
            row.shape == (width,) and row.layout is Layout.FLAT
        )
        if not row_ok:
            raise LayoutError(
                f"replace_rows needs a (1, {width}) ROWS row with stride {packing.stride} or a ({width},) FLAT row; "
                f"got {row.shape} {row.layout.value}"
            )
        targets = sorted({int(r) % packing.shape[0] for r in rows})
        if any(not -packing.shape[0] <= int(r) < packing.shape[0] for r in rows):
            raise LayoutError(f"row indices {list(rows)} out of range for {packing.shape[0]} rows")
        scale = float(scale)
        if not math.isfinite(scale):
            raise PrecisionError("scale factor is NaN or Inf")
        result_level = max(min(self.levels_left, row.levels_left) - 1, 0)
        bound = self._checked_bound(
            max(self._value_bound, row._value_bound * abs(scale)), "replace_rows", levels_used=self.levels_left - result_level
        )
        keyring = self._keyring
        per = packing.blocks_per_ciphertext
        row_ct = row.ciphertexts[0]
        out = []
        for which, ct in enumerate(self.ciphertexts):
            local = [r - which * per for r in targets if r // per == which]
            if not local:
                out.append(ct)
                continue
            keep = np.ones(packing.slots)
            place = np.zeros(packing.slots)
            for r in local:
                keep[r * packing.stride : r * packing.stride + width] = 0.0
                place[r * packing.stride : r * packing.stride + width] = scale
            kept = kernels.multiply_plain(keyring, ct, keep, "replace_rows")
            placed = None
            for r in local:
                shifted = kernels.rotate(keyring, row_ct, -r * packing.stride)
                placed = shifted if placed is None else kernels.add(keyring, placed, shifted)
            if scale != 1.0 or not row._padding_clean:
                placed = kernels.multiply_plain(keyring, placed, place, "replace_rows (scaling the new rows)")
            out.append(kernels.add(keyring, kept, placed))
        out = kernels.align_levels(keyring, *out)
        return self._derive(out, bound=bound)
