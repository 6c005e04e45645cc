"""Micro-benchmark of the crypto layer: protecting a 64x32 message, and an encrypted matmul.

Usage::

    python benchmarks/bench_crypto.py [--out FILE.json] [--repeats N]

"Protect" = encrypt + serialize + deserialize + decrypt of a 64x32 float32 message (median over
repeats), for each preset and wire form:

* ``public``       -- encrypted with the PublicKeyring, all levels kept;
* ``public_last``  -- same, serialized with ``mod_switch_to_last=True``;
* ``seeded``       -- encrypted by the secret-key holder (seeded symmetric form), all levels;
* ``seeded_last``  -- seeded and encrypted directly at the last level (the smallest form).

The numpy baseline is the same round trip on plaintext float32 bytes.
The matmul is (64x32 encrypted, ROWS layout) @ (32x32 plaintext) at the ``compute`` preset, for both
kernel paths: ``replicated`` (row stride 64, 32 diagonals) and ``diagonal`` (default stride 32, 63
diagonals); inputs are fresh public-key encryptions at the top level (two levels left) or encrypted
directly at one level (``levels=1``); the weights are encoded on the fly (a new plan per product, as
when they change every training step) or ahead of time (``MatmulPlan.prepare``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from securevfl.crypto import ROWS, EncryptedTensor, MatmulPlan, SecretKeyring, get_preset, preset_names, rotations  # noqa: E402

BATCH, FEATURES, OUT = 64, 32, 32


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def bench_protect(preset: str, message: np.ndarray, repeats: int) -> dict[str, Any]:
    params = get_preset(preset)
    secret = SecretKeyring.generate(params)
    public = secret.public_keyring()
    forms: dict[str, tuple[Any, dict[str, Any], bool]] = {
        "public": (public, {}, False),
        "public_last": (public, {}, True),
        "seeded": (secret, {}, False),
        "seeded_last": (secret, {"levels": 0}, True),
    }
    results: dict[str, Any] = {"preset": params.summary(), "forms": {}}
    for name, (keyring, options, last) in forms.items():
        if params.depth == 0 and name.endswith("_last"):
            continue  # one level only: identical to the full form

        def protect() -> np.ndarray:
            wire = EncryptedTensor.encrypt(keyring, message, **options).to_bytes(mod_switch_to_last=last)
            return EncryptedTensor.from_bytes(secret, wire).decrypt()

        wire = EncryptedTensor.encrypt(keyring, message, **options).to_bytes(mod_switch_to_last=last)
        error = float(np.max(np.abs(protect() - message)))
        results["forms"][name] = {"ms": median_ms(protect, repeats), "bytes": len(wire), "max_abs_error": error}
    return results


def bench_numpy(message: np.ndarray, repeats: int) -> dict[str, Any]:
    def round_trip() -> np.ndarray:
        return np.frombuffer(message.tobytes(), dtype=message.dtype).reshape(message.shape).copy()

    return {"ms": median_ms(round_trip, repeats * 10), "bytes": message.nbytes}


def bench_matmul(repeats: int) -> dict[str, Any]:
    """(64x32) @ (32x32) at 'compute', for both kernel paths, fresh inputs at the top level and at one level."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (BATCH, FEATURES))
    w = rng.normal(0, 0.2, (FEATURES, OUT))
    wide = rotations.matmul_stride(FEATURES, OUT)
    steps = set(rotations.matmul_steps(FEATURES, OUT)) | set(rotations.matmul_steps(FEATURES, OUT, stride=wide))
    secret = SecretKeyring.generate(get_preset("compute"), steps)
    public = secret.public_keyring()
    expected = x @ w
    out: dict[str, Any] = {
        "shape": f"({BATCH}x{FEATURES}) @ ({FEATURES}x{OUT})",
        "numpy_ms": median_ms(lambda: x @ w, repeats * 10),
    }
    for method, stride in (("replicated", wide), ("diagonal", None)):
        fresh = EncryptedTensor.encrypt(public, x, ROWS, bound=1, stride=stride)
        one_level = EncryptedTensor.encrypt(public, x, ROWS, bound=1, stride=stride, levels=1)  # fresh, one level
        plan = MatmulPlan(public, fresh.packing, w, method=method).prepare().prepare(1)

        def on_the_fly(tensor: EncryptedTensor, method: str = method) -> EncryptedTensor:
            # weights change every step: building and encoding the plan is part of the cost
            return tensor @ MatmulPlan(public, tensor.packing, w, method=method)

        cases = {
            "top_level": lambda: on_the_fly(fresh),
            "top_level_preencoded": lambda: fresh @ plan,
            "one_level_left": lambda: on_the_fly(one_level),
            "one_level_left_preencoded": lambda: one_level @ plan,
        }
        row: dict[str, Any] = {
            "stride": fresh.packing.stride,
            "diagonals": plan.num_diagonals,
            "rotations": plan.rotations,
            "rotation_keys": len(rotations.matmul_steps(FEATURES, OUT, stride=fresh.packing.stride)),
        }
        for name, fn in cases.items():
            error = float(np.max(np.abs(fn().decrypt(secret) - expected)))
            row[name] = {"ms": median_ms(fn, max(20, repeats)), "max_abs_error": error}
        out[method] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    message = np.random.default_rng(0).uniform(-1, 1, (BATCH, FEATURES)).astype(np.float32)

    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "processor": platform.processor()},
        "message": f"{BATCH}x{FEATURES} float32",
        "numpy_baseline": bench_numpy(message, args.repeats),
        "protect": {name: bench_protect(name, message, args.repeats) for name in preset_names()},
        "matmul": bench_matmul(args.repeats),
    }

    print(f"protect a {report['message']} message (encrypt + serialize + deserialize + decrypt, median)")
    print(f"{'preset':<10} {'form':<12} {'ms':>8} {'KB':>9} {'max err':>10}")
    base = report["numpy_baseline"]
    print(f"{'numpy':<10} {'plaintext':<12} {base['ms']:>8.4f} {base['bytes'] / 1000:>9.1f} {0:>10.1e}")
    for name, result in report["protect"].items():
        for form, row in result["forms"].items():
            print(f"{name:<10} {form:<12} {row['ms']:>8.2f} {row['bytes'] / 1000:>9.1f} {row['max_abs_error']:>10.1e}")
    mm = report["matmul"]
    print(f"\nmatmul {mm['shape']} at 'compute', fresh public-key inputs (median); numpy {mm['numpy_ms']:.4f} ms")
    for method in ("replicated", "diagonal"):
        row = mm[method]
        print(f"  {method} (stride {row['stride']}, {row['diagonals']} diagonals, {row['rotations']} rotations, {row['rotation_keys']} keys)")
        for case in ("top_level", "top_level_preencoded", "one_level_left", "one_level_left_preencoded"):
            print(f"    {case:<28} {row[case]['ms']:>8.2f} ms   max err {row[case]['max_abs_error']:.1e}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
