"""Where a label-private training step spends its time, next to the slot-product floor.

For the paper's MNIST bottom models (392 inputs per passive party, batch 64), times every
stage of one passive party's homomorphic backpropagation and the active party's encrypted
first layer, at the ``compute`` preset, and compares the dominant product with its floor:
one slot-product per multiply-accumulate of the 392 x 32 first layer per sample, i.e.
392 * 32 * 64 / slots ciphertext-by-plaintext products per batch.

    python benchmarks/bench_blind_backprop.py [--repeats 5] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from securevfl.crypto import EncryptedTensor, Layout, SecretKeyring, get_preset
import tenseal.sealapi as sealapi
from securevfl.schemes.label_private.plan import TopPlan, bottom_plan

BATCH, INPUTS = 64, 392


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    params = get_preset("compute")
    sum_plan = bottom_plan(BATCH, INPUTS, [32], 10, output_relu=False)
    trainable_plan = bottom_plan(BATCH, INPUTS, [], 32, output_relu=True)
    top_plan = TopPlan(batch=BATCH, part_width=32, hidden=32)
    steps = sorted(sum_plan.rotation_steps() | trainable_plan.rotation_steps() | top_plan.rotation_steps())
    secret = SecretKeyring.generate(params, rotation_steps=steps)
    public = secret.public_keyring()

    x_aug = np.hstack([rng.random((BATCH, INPUTS)), np.ones((BATCH, 1))])
    hidden_aug = np.hstack([rng.random((BATCH, 32)), np.ones((BATCH, 1))])
    relu = (rng.random((BATCH, 32)) > 0.5).astype(float)
    g10 = rng.normal(0, 0.01, (BATCH, 10))
    g32 = rng.normal(0, 0.01, (BATCH, 32))
    w2 = rng.normal(0, 0.2, (10, 32))

    def enc(values: np.ndarray, stride: int, levels: int | None = None) -> EncryptedTensor:
        return EncryptedTensor.encrypt(public, values, Layout.ROWS, stride=stride, bound=4.0, levels=levels)

    g32t = enc(g32.T, trainable_plan.feature_major_stride(0))
    masked32t = g32t.multiply_plain(relu.T)
    g10t = enc(g10.T, sum_plan.feature_major_stride(1))
    g10 = enc(g10, sum_plan.batch_major_stride(1))
    h = enc(rng.random((BATCH, 32)), top_plan.activation_stride(), levels=1)
    ht = enc(rng.random((32, BATCH)), top_plan.transposed_activation_stride(), levels=1)
    w1 = rng.normal(0, 0.2, (32, 32))
    one_level = enc(g32.T, trainable_plan.feature_major_stride(0), levels=1)
    plain_vector = rng.random(params.slots)
    ct = one_level.ciphertexts[0]
    encoded = public.encode(plain_vector, ct.parms_id(), ct.scale)
    product = sealapi.Ciphertext()

    stages = {
        "relu mask G^T * M (32 x 64)": lambda: g32t.multiply_plain(relu.T),
        "dW1: G^T (32 x 64) @ [X | 1] (64 x 393)": lambda: masked32t @ x_aug,
        "dW2: G^T (10 x 64) @ [A1 | 1] (64 x 33)": lambda: g10t @ hidden_aug,
        "G @ W2 (64 x 10 @ 10 x 32), before refresh": lambda: g10 @ w2,
        "encrypt G^T for one passive (32 x 64)": lambda: enc(g32.T, trainable_plan.feature_major_stride(0)),
        "active: Enc(H_k) @ W1_k^T (64 x 32 @ 32 x 32)": lambda: h @ w1,
        "active: Enc(H_k^T) @ delta (32 x 64 @ 64 x 32)": lambda: ht @ g32,
        "encode one plaintext (4096 slots, 1 level left)": lambda: public.encode(plain_vector, ct.parms_id(), ct.scale),
        "one ciphertext x plaintext product (no rescale)": lambda: public.evaluator.multiply_plain(ct, encoded, product),
    }
    timings = {name: _median_ms(fn, args.repeats) for name, fn in stages.items()}
    products_floor = INPUTS * 32 * BATCH / params.slots
    per_product = timings["encode one plaintext (4096 slots, 1 level left)"] + timings["one ciphertext x plaintext product (no rescale)"]
    floor_ms = products_floor * per_product
    products_only_ms = products_floor * timings["one ciphertext x plaintext product (no rescale)"]
    width = max(map(len, timings))
    print(f"label-private backprop kernels at 'compute' (N={params.poly_modulus_degree}), batch {BATCH}, median of {args.repeats}")
    for name, ms in timings.items():
        print(f"  {name:<{width}}  {ms:8.1f} ms")
    achieved = timings["dW1: G^T (32 x 64) @ [X | 1] (64 x 393)"]
    print(
        f"floor for dW1: {INPUTS}*32*{BATCH}/{params.slots} = {products_floor:.0f} products; each needs a freshly "
        f"encoded plaintext (the batch changes every step): {products_floor:.0f} x {per_product:.2f} ms = "
        f"{floor_ms:.1f} ms ({products_only_ms:.1f} ms for the products alone); achieved {achieved:.1f} ms "
        f"({achieved / floor_ms:.2f}x the floor)"
    )
    if args.out:
        args.out.write_text(json.dumps({"batch": BATCH, "inputs": INPUTS, "stages_ms": timings, "floor_products": products_floor, "floor_ms": floor_ms, "floor_products_only_ms": products_only_ms, "achieved_dw1_ms": achieved}, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
