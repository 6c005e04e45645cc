"""Key recovery before and after noise flooding: how many secret-key coefficients two decryptions give away.

A malicious passive spends two of its decryption requests on ``64 * Enc(0)`` and on the same
ciphertext times ``X^(N/2)`` (``securevfl/attacks/key_recovery.py``), through the honest client
(its own random mask included), against the key holder of the ``compute`` preset with the
protocol's flooding off and on. The evaluator counts the coefficients it got right against the
key holder's key. Writes ``docs/results/key_recovery.json``.

    python examples/key_recovery_demo.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from securevfl.attacks.key_recovery import _times_monomial, _zero_probe, recover_secret_key, verify_secret_key
from securevfl.crypto import SecretKeyring, get_preset, ring
from securevfl.crypto.flooding import NoiseFlooding
from securevfl.files import atomic_write_text
from securevfl.parties.key_holder import KeyHolderParty
from securevfl.protocols import InProcessChannel, PhaseTimer
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.keyholder import KeyHolder, MaskedKeyHolderClient
from securevfl.protocols.masking import MaskSampler

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "key_recovery.json"


def attempt(secret: SecretKeyring, bits: int) -> dict[str, object]:
    public = secret.public_keyring()
    channel, timer = InProcessChannel(), PhaseTimer()
    holder = KeyHolder("coordinator", secret, timer, VisibilityLog("coordinator"), flooding=NoiseFlooding(bits), mask_half_width=16384.0)
    channel.attach_server(KeyHolderParty(holder, channel, clients=["passive_1"]))
    client = MaskedKeyHolderClient("passive_1", "coordinator", public, channel, MaskSampler(16384.0), timer)
    n = public.params.poly_modulus_degree
    started = time.perf_counter()
    probe = _zero_probe(public, (public.params.slots,))
    real = client.reveal(probe, 0, "parameter_gradient", per_sample=False)
    rotated = client.reveal(_times_monomial(public, probe, n // 2), 1, "parameter_gradient", per_sample=False)
    recovered = recover_secret_key(public, probe, real, rotated)
    seconds = time.perf_counter() - started
    truth = ring.secret_key_coefficients(secret)
    return {
        "flooding_bits": bits,
        "decryptions": 2,
        "coefficients": n,
        "coefficients_recovered": int(np.sum(recovered == truth)),
        "key_verified_by_attacker": verify_secret_key(public, recovered),
        "flooding_sigma": max(holder.flooding_sigmas),
        "attack_seconds": round(seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON record goes (replaced)")
    args = parser.parse_args(argv)
    secret = SecretKeyring.generate(get_preset("compute"))
    results = [attempt(secret, bits) for bits in (0, 30)]
    atomic_write_text(args.out, json.dumps({"preset": "compute", "attempts": results}, indent=2) + "\n")
    for row in results:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
