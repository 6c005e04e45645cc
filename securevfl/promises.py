"""What a run's configuration promises, against whom — written into every result record.

docs/threat-model.md is the reasoning; this is the same table evaluated for one configuration,
so a result can never be read as more private than it is. Each promise names the asset, the
adversary, whether it holds in this configuration, and the attack in the project that tests it
(``holds`` is ``False`` where that attack succeeds, ``True`` where it fails, ``None`` where the
project has no attack that settles it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from securevfl.defenses.accounting import claim_refusals, noise_record
from securevfl.sections import activation_masks_refusal, pairwise_activation_masks

if TYPE_CHECKING:
    from securevfl.config import RunConfig

__all__ = ["Promise", "promises"]



@dataclass(frozen=True)
class Promise:
    asset: str
    adversary: str
    holds: bool | None
    attack: str
    why: str


def _masks_hint(config: RunConfig) -> str:
    """Why pairwise activation masks do not protect this run (the setting the user may change)."""
    if config.protection.activation_masks == "none":
        return "; protection.activation_masks = 'none' (pairwise masks would close it)"
    refusal = activation_masks_refusal(config.protection, config.model.top, config.parties.passive)
    return f"; pairwise activation masks cannot run here: {refusal}" if refusal else ""


def _label_dp(config: RunConfig) -> bool:
    """A label-DP defense, or clipped CSPRNG noise on the gradient rows, whose finite epsilon the accountant claims (docs/defenses.md)."""
    present = any(getattr(defense, "kind", "") == "label_dp" for defense in config.defense)
    if present:
        return not claim_refusals(config)
    record = noise_record(config, max(config.train.epochs, 1))
    return bool(record and record.get("claimed") and record.get("epsilon_pld") not in (None, float("inf")))


def promises(config: RunConfig) -> list[dict[str, Any]]:
    """The promises of ``config``'s scheme and hardening, as JSON-ready rows."""
    scheme = config.scheme
    protection = config.protection
    out: list[Promise] = []
    if not scheme.label_private:
        if _label_dp(config):
            out.append(Promise("labels", "semi-honest passive", True, "label_inference",
                               "it receives label-DP noisy gradient rows: the bound is the run's 'privacy' record"))
        else:
            out.append(Promise("labels", "semi-honest passive", False, "label_inference",
                               "the passive receives its per-sample gradient rows"))
        out.append(Promise("activations", "semi-honest active", False, "activation_inversion",
                           "the active party holds each passive's activation rows"))
        return [asdict(p) for p in out]
    sealed = getattr(protection, "passive_layer", "open") == "sealed"
    flooded = protection.flooding_bits > 0
    # flooding sized by a public bound needs the policy's rules; without them it follows the measured noise,
    # and a request built from (0, 1) makes that noise a function of the key (crypto/flooding.py)
    guarded = flooded and protection.decryption_policy == "protocol"
    key_attack = "key_recovery, flooding_key_recovery" if guarded else "key_recovery" if not flooded else "flooding_key_recovery"
    key_why = (
        "every decryption that leaves the key holder is flooded, sized by the request's public bound"
        if guarded
        else "flooding without the decryption policy follows each request's measured noise: its size gives the key away "
        "(protection.decryption_policy = 'none')"
        if flooded
        else "unflooded decryptions: two requests give the key away (protection.flooding_bits = 0)"
    )
    dp = _label_dp(config)
    if sealed:
        out.append(Promise("labels", "semi-honest passive", True, "gradient_inversion",
                           "sealed source layer: the passive decrypts nothing (the attack is infeasible)"))
    elif dp:
        out.append(Promise("labels", "semi-honest passive", True, "gradient_inversion",
                           "label-DP noise on the gradient rows: the bound is the run's 'privacy' record (epsilon, delta)"))
    else:
        out.append(Promise("labels", "semi-honest passive", False, "gradient_inversion",
                           "NOT label-private: the passive derives its gradient rows from the batch-summed gradients it "
                           "learns (see 'derivable'); harden with a label_dp defense or protection.passive_layer = 'sealed'"))
    if sealed or dp:
        why = "sealed: no decryption slot to spend" if sealed else "whatever it decrypts is post-processing of label-DP noisy rows"
        out.append(Promise("labels", "malicious passive", True, "row_request", why))
    else:
        out.append(Promise("labels", "malicious passive", False, "row_request",
                           "a request of an expected shape may hold the passive's own encrypted gradient rows"))
    out.append(Promise("the key holder's secret key", "malicious passive", guarded, key_attack, key_why))
    if protection.key_holder == "active":
        out.append(Promise("activations", "semi-honest active", False, "none needed",
                           "the active party holds the key for every Enc(H_k) it receives"))
    elif config.model.top == "trainable":
        out.append(Promise("activations", "semi-honest active", False, "activation_inversion",
                           "H_k follows from H_k^T delta when delta has full row rank (small batches)"))
    else:
        many = config.parties.passive >= 2  # the active party adds its own block after decryption: it does not hide H_1
        out.append(Promise("activations", "semi-honest active", True if many else False, "activation_inversion",
                           "the active party decrypts only the sum of the activations" if many
                           else "with one passive party the sum is its activations"))
    if protection.key_holder == "coordinator":
        out.append(Promise("the key holder's secret key", "malicious active", guarded,
                           "active_key_recovery, active_flooding_key_recovery" if guarded
                           else "active_key_recovery" if not flooded else "active_flooding_key_recovery",
                           key_why if flooded
                           else "unflooded decryptions: two spare evaluation requests give the key away, and with it "
                           "every passive's activations"))
        steering = ("the active party chooses each passive's gradient: sending one passive alone a probe, it reads that "
                    "passive's feature Gram matrix from the honest sums (gradient_steering)")
        masked = ("each passive masks its activations pairwise (protection.activation_masks), so no single Enc(H_k) decrypts "
                  "to anything (active_own_slot reads none, nor does a recovered key)")
        checked = ("every passive receives the same gradient ciphertext and the coordinator compares their digests before "
                   "it answers the active party again, which stops gradient steering")
        if pairwise_activation_masks(protection, config.model.top, config.parties.passive):
            # every passive's gradient travels in one packing (one-layer bottoms: the widest stride, SharedGradientPlan)
            out.append(Promise("activations", "malicious active", True, "active_own_slot, gradient_steering", f"{masked}; {checked}"))
        else:
            out.append(Promise("activations", "malicious active", False, "active_own_slot, gradient_steering",
                               "the coordinator cannot tell Enc(H_k) from the combination it expects (sealed or not): an "
                               "active party that deviates has one passive's activations decrypted in its own request slot"
                               f"{_masks_hint(config)}; and {steering}"))
        out.append(Promise("values sent to the key holder", "curious coordinator", True,
                           "none: a statistical test (tests/test_blind_schemes.py)",
                           "it decrypts only values under uniform masks of half-width protection.mask_half_width"))
    return [asdict(p) for p in out]
