"""The label-private protocol's requests to its key holder, written as a decryption policy.

Derived from the public plan only (models, batch sizes, dataset sizes): the key holder needs no
secret of anybody's to know what it should be asked in a step. Per step:

- each passive: one decryption of ``[dW_l | db_l]`` per bottom layer (shape ``out_l x in_l+1``),
  and one refresh of the gradient below every layer but the first, in the plan's layouts;
- the active party, when a coordinator holds the key: one decryption of the combined
  activations (sum top: their sum; trainable top: the first layer's pre-activation), with the
  trainable top one ``H_k^T delta`` per passive, and at an epoch's end the evaluation batches.

With sealed source layers (:mod:`.sealed`) a passive may send one thing only: at most one
refresh of its sealed ``[W | b]`` per step (with the trainable top also one refresh of its
``Enc(H^T)`` per step and per evaluation chunk). It has no decryption rule, so any decryption
it asks for is refused. Under the sum top the active party's combined activations arrive
transposed (``S^T``, padded to the batch); evaluation is decrypted in chunks of one training batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from securevfl.crypto import CkksParameters
from securevfl.crypto.flooding import noise_unit
from securevfl.protocols.decryption_policy import DecryptionPolicy, RequestRule
from securevfl.protocols.messages import MessageKind
from securevfl.schemes.label_private.plan import BottomPlan, SealedPlan, TopPlan
from securevfl.schemes.label_private.precision import AMPLIFICATION, BACKPROP_HEADROOM
from securevfl.schemes.label_private.sealed import EVAL_SEALED_ACTIVATION, SEALED_ACTIVATION, SEALED_WEIGHTS

__all__ = [
    "EVALUATION_PASSES", "FRESH_NOISE_UNITS", "PASSIVE_NOISE_UNITS", "PRODUCT_NOISE_UNITS", "SEALED_WEIGHTS_NOISE_UNITS",
    "label_private_policy",
]

#: Evaluation passes over (train + test) an epoch end may make: the test split and an attack's
#: evaluation splits, with room to spare; it only bounds a count.
EVALUATION_PASSES = 4

#: Public noise bound (in units of ``sqrt(N) / scale``, :func:`securevfl.crypto.flooding.noise_floor`)
#: of a request whose ciphertext is fresh encryptions plus additions: the active party's sum of
#: activations. Measured (largest imaginary part over a request's slots; compute preset, MNIST and
#: NUS-WIDE, every scheme): 100-200, never above 202; per slot the noise is Gaussian with a standard
#: deviation near 47, so 512 is more than 10 of them. The key holder floods with ``2**15`` times the
#: bound (~1.4e-3 at the compute preset), and refuses a ciphertext noisier than it.
FRESH_NOISE_UNITS = 2.0**9

#: The same for a passive's requests, whose ciphertexts went through products with its own features
#: (``[X|1]^T G``; sealed: the homomorphic update): their noise grows with the features' size.
#: Measured: MNIST (features in [0, 1]) 100-202; NUS-WIDE (standardised, max |x| 21.9) up to 1,430;
#: synthetic standardised features of scale 16 (max |x| ~64) 1,820 (red-team review); 8,192 leaves
#: 4x over the largest. Larger or heavier-tailed features (or the deep preset with them: 5,758 at
#: scale 16) can exceed it: the honest request is then refused and the run stops with a message
#: saying so. Flooding ~2.2e-2 at the compute preset, on values the amplification and per-sample
#: gradient scale keep large (docs/threat-model.md, "What flooding costs").
PASSIVE_NOISE_UNITS = 2.0**13

#: The same for a ciphertext the active party multiplied by its own top-layer weights (the
#: trainable top's first-layer pre-activation and its weight gradient): their rotations' noise grows
#: with the weights. Measured 600-2054 (batch 16 and 64, 2 epochs); 8192 leaves room for the
#: weights to grow fourfold. Flooding ~2.2e-2 at the compute preset, against values up to the
#: activation bound.
PRODUCT_NOISE_UNITS = 2.0**13

#: The same for a sealed passive's weight refresh (:mod:`.sealed`): ``Enc(W)`` scaled back from its
#: stored amplification plus the homomorphic update, computed amplified and scaled back, so the
#: noise left is the two rescales' rounding, whatever the features. Measured (2026-11-27, largest
#: imaginary part over a request's slots): MNIST 164-205 (batch 64, sum and trainable top, both key
#: holders), NUS-WIDE 188-200 (batch 16 and 64, 2 and 4 passives), NUS-WIDE features times 8 at
#: lr 0.1 and batch 16 220 (the update's amplification still 2^14), the deep preset 254; 1,024
#: leaves 4x over the largest. The flooding lands on the weights themselves at every step (not on
#: a gradient the learning rate scales down), so this bound is what the sealed layer's accuracy
#: pays: at ``PASSIVE_NOISE_UNITS`` it trained 29 points below the open layer (1,920 MNIST samples,
#: 2 epochs: 53.2 % against 82.0 %), at this bound 81.0 % (measured with the equivalent
#: ``flooding_bits = 24``; docs/threat-model.md).
SEALED_WEIGHTS_NOISE_UNITS = 2.0**10

#: The active party's decryption of the combined activations over *sealed* passives: each passive's
#: ``Enc(H^T)`` is a product of its sealed weights with its own features, so the noise grows with the
#: features like a passive's own requests. Under ``FRESH_NOISE_UNITS`` an honest run was refused at
#: step 0 with NUS-WIDE features times 4 (644 units; NUS-WIDE itself reached 389 at batch 16).
_SEALED_ACTIVATION_SUMS = frozenset({"activation_sum", "eval_activation_sum"})

#: The measured maxima above predate 2026-11-27, when rotations stopped carrying SEAL's key-switching offset
#: (:func:`securevfl.crypto.kernels.rotate`): up to ~15,000 units from one Galois key, depending on the run's key pair.
#: Without it the products' honest noise is smaller and the same for every key (the trainable top's pre-activation
#: 233-311 and weight gradient 729-1,145 over 6 key pairs at batch 64; 1,591 at batch 256 with 392 standardised
#: features per passive, refused at 13,047-16,986 before); the bounds, and so the flooding, are unchanged.

#: The requests whose ciphertext went through a product with the active party's top weights.
_PRODUCTS = frozenset({"first_layer_preactivation", "eval_first_layer_preactivation", "top_weight_gradient"})


def _sealed_rules(
    plan: SealedPlan, top_plan: TopPlan | None, weight_bound: float, activation_bound: float, evaluation_chunks: int
) -> list[RequestRule]:
    """A sealed passive: one refresh of its weights per step at most, and no decryption of any kind.

    With the trainable top also one refresh of its ``Enc(H^T)`` per step into the top's two
    packings, and one per evaluation chunk into ``Enc(H)``'s.
    """
    rules = [
        RequestRule(
            MessageKind.REFRESH_REQUEST, SEALED_WEIGHTS, rows=plan.widths[1], columns=plan.widths[0] + 1,
            per_step=1, per_sample=False, value_bound=weight_bound, layouts=(("rows", plan.stride),),
            amplification=AMPLIFICATION,
        )
    ]
    if top_plan is not None:
        forward = ("rows_t", top_plan.activation_stride())
        rules += [
            RequestRule(
                MessageKind.REFRESH_REQUEST, SEALED_ACTIVATION, rows=plan.widths[1], columns=plan.batch, per_step=1,
                per_sample=True, value_bound=activation_bound,
                layouts=(forward, ("rows", top_plan.transposed_activation_stride())),
            ),
            RequestRule(
                MessageKind.REFRESH_REQUEST, EVAL_SEALED_ACTIVATION, rows=plan.widths[1], columns=plan.batch,
                per_step=evaluation_chunks, per_sample=True, value_bound=activation_bound, layouts=(forward,),
            ),
        ]
    return rules


def _sealed_active_rules(batch: int, combined_width: int, activation_bound: float, evaluation_chunks: int) -> list[RequestRule]:
    """The active party over sealed passives: ``S^T`` (width x padded batch), per step and per evaluation chunk."""
    return [
        RequestRule(
            MessageKind.DECRYPT_REQUEST, "activation_sum", rows=combined_width, columns=batch, per_step=1,
            per_sample=True, value_bound=activation_bound,
        ),
        RequestRule(
            MessageKind.DECRYPT_REQUEST, "eval_activation_sum", rows=combined_width, columns=batch,
            per_step=evaluation_chunks, per_sample=True, value_bound=activation_bound,
        ),
    ]


def _passive_rules(plan: BottomPlan, gradient_bound: float) -> list[RequestRule]:
    rules = []
    for layer in range(plan.layers):
        rules.append(
            RequestRule(
                MessageKind.DECRYPT_REQUEST, "parameter_gradient", rows=plan.widths[layer + 1], columns=plan.widths[layer] + 1,
                per_step=1, per_sample=False, value_bound=gradient_bound,
            )
        )
        if layer == 0:
            continue
        layouts = [("rows_t", plan.feature_major_stride(layer - 1))]
        if layer - 1 > 0:
            layouts.append(("rows", plan.batch_major_stride(layer - 1)))
        rules.append(
            RequestRule(
                MessageKind.REFRESH_REQUEST, "backprop_gradient", rows=plan.batch, columns=plan.widths[layer],
                per_step=1, per_sample=True, value_bound=BACKPROP_HEADROOM * gradient_bound, layouts=tuple(layouts),
                amplification=AMPLIFICATION,
            )
        )
    return rules


def _active_rules(
    plans: Mapping[str, BottomPlan], top_plan: TopPlan | None, batch: int, combined_width: int,
    activation_bound: float, evaluation_batches: int, eval_batch: int,
) -> list[RequestRule]:
    combined = "activation_sum" if top_plan is None else "first_layer_preactivation"
    rules = [
        RequestRule(
            MessageKind.DECRYPT_REQUEST, combined, rows=batch, columns=combined_width, per_step=1,
            per_sample=True, value_bound=activation_bound, rows_up_to=True,
        ),
        RequestRule(
            MessageKind.DECRYPT_REQUEST, f"eval_{combined}", rows=eval_batch, columns=combined_width,
            per_step=evaluation_batches, per_sample=True, value_bound=activation_bound, rows_up_to=True,
        ),
    ]
    if top_plan is not None:
        rules.append(
            RequestRule(
                MessageKind.DECRYPT_REQUEST, "top_weight_gradient", rows=top_plan.part_width, columns=top_plan.hidden,
                per_step=len(plans), per_sample=False, value_bound=activation_bound,
            )
        )
    return rules


def label_private_policy(
    *,
    plans: Mapping[str, BottomPlan],
    top_plan: TopPlan | None,
    active: str,
    key_holder: str,
    combined_width: int,
    bounds: tuple[float, float],
    eval_batch: int,
    samples: int,
    params: CkksParameters,
) -> DecryptionPolicy:
    """The policy of one federation. ``bounds`` = (activation, gradient); ``samples`` = train + test."""
    activation_bound, gradient_bound = bounds
    batch = next(iter(plans.values())).batch
    sealed = all(isinstance(plan, SealedPlan) for plan in plans.values())
    # sealed passives evaluate in chunks of one training batch: at most one more chunk than full batches per pass
    chunks = EVALUATION_PASSES * (math.ceil(samples / eval_batch) + math.ceil(samples / batch))
    rules: dict[str, list[RequestRule]] = {
        name: _sealed_rules(plan, top_plan, activation_bound, activation_bound, chunks)
        if isinstance(plan, SealedPlan)
        else _passive_rules(plan, gradient_bound)
        for name, plan in plans.items()
    }
    if key_holder != active and sealed and top_plan is None:
        rules[active] = _sealed_active_rules(batch, combined_width, activation_bound, chunks)
    elif key_holder != active and sealed:
        rules[active] = _active_rules(plans, top_plan, batch, combined_width, activation_bound, chunks, max(eval_batch, batch))
    elif key_holder != active:
        evaluation_batches = EVALUATION_PASSES * math.ceil(samples / eval_batch)
        rules[active] = _active_rules(
            plans, top_plan, batch, combined_width, activation_bound, evaluation_batches, eval_batch
        )
    unit = noise_unit(params)

    def noise_units(sender: str, rule: RequestRule) -> float:
        if rule.what == SEALED_WEIGHTS:
            return SEALED_WEIGHTS_NOISE_UNITS
        if rule.what in _PRODUCTS:
            return PRODUCT_NOISE_UNITS
        if sender in plans or (sealed and rule.what in _SEALED_ACTIVATION_SUMS):
            return PASSIVE_NOISE_UNITS
        return FRESH_NOISE_UNITS

    rules = {
        sender: [dataclasses.replace(rule, noise_bound=unit * noise_units(sender, rule)) for rule in sender_rules]
        for sender, sender_rules in rules.items()
    }
    largest = max(rule.rows * rule.columns for sender_rules in rules.values() for rule in sender_rules)
    ciphertexts = math.ceil(4 * largest / params.slots) + 1
    ciphertext_bytes = 16 * params.poly_modulus_degree * len(params.coeff_modulus_bits) + 4096
    return DecryptionPolicy(rules, max_payload_bytes=ciphertexts * ciphertext_bytes)
