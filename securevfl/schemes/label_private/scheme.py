"""The label-private scheme object: checks, placements, capabilities and assembly."""

from __future__ import annotations

from typing import TYPE_CHECKING

from securevfl.crypto import SecretKeyring, get_preset, preset_names, rotations
from securevfl.crypto.flooding import NoiseFlooding
from securevfl.errors import ConfigError
from securevfl.models import linear_stack
from securevfl.parties import (
    ACTIVE_NAME,
    COORDINATOR_NAME,
    ActiveOwn,
    KeyHolderParty,
    LocalParties,
    PassiveOwn,
    RunShape,
    check_own,
    make_active,
    make_passive,
)
from securevfl.protocols import Channel, Phase, PhaseTimer
from securevfl.protocols.audit import VisibilityLog
from securevfl.protocols.keyholder import KeyHolder
from securevfl.protocols.gradient_agreement import GradientAgreement
from securevfl.protocols.pairwise_masks import deal_pair_keys
from securevfl.schemes.base import Capability, Role, Scheme, SchemeCapabilities
from securevfl.schemes.label_private.policy import label_private_policy
from securevfl.schemes.label_private.plan import (
    BottomPlan, SealedPlan, SharedGradientPlan, TopPlan, required_depth, same_gradient_packing, sealed_stride, shared_gradient_stride,
)
from securevfl.schemes.label_private.precision import BACKPROP_HEADROOM
from securevfl.schemes.label_private.sealed import SealedActiveWire, SealedPassiveWire, sealed_layer_refusal
from securevfl.schemes.label_private.wires import BlindActiveWire, BlindPassiveWire, Bounds, KeyHolderLink
from securevfl.sections import pairwise_activation_masks

if TYPE_CHECKING:
    from securevfl.sections import ModelConfig, TrainConfig

__all__ = ["LabelPrivateScheme"]


class LabelPrivateScheme(Scheme):
    """``ckks`` with ``key_holder = "active"`` or ``"coordinator"``: one key, masked decryption for the rest."""

    label_private = True
    default_preset = "compute"

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"ckks/{self.protection.key_holder}"

    @property
    def key_holder_party(self) -> str:
        return ACTIVE_NAME if self.protection.key_holder == "active" else COORDINATOR_NAME

    @property
    def sealed(self) -> bool:
        """Whether the passives' source layers are sealed (``protection.passive_layer = "sealed"``, :mod:`.sealed`)."""
        return self.protection.passive_layer == "sealed"

    @property
    def capabilities(self) -> SchemeCapabilities:
        active_sees = (
            "activation_sum",
            "first_layer_preactivation",
            "top_weight_gradient",
            "eval_activation_sum",
            "eval_first_layer_preactivation",
        )
        # A sealed passive decrypts nothing, and computes even its own activations only under
        # encryption: it holds its features and ciphertexts, nothing else (no OWN_PLAINTEXT).
        passive_grants = (
            {Capability.CIPHERTEXT_GRADIENT_ROWS}
            if self.sealed
            else {
                Capability.CIPHERTEXT_GRADIENT_ROWS, Capability.OWN_PLAINTEXT, Capability.BATCH_SUMMED_PARAMETER_GRADIENTS,
                Capability.DECRYPTION_REQUESTS,
            }
        )
        active_grants = {Capability.COMBINED_ACTIVATIONS}
        if self.protection.key_holder == "coordinator":  # it has its combination decrypted by the coordinator's key
            active_grants.add(Capability.DECRYPTION_REQUESTS)
        return SchemeCapabilities(
            ciphertexts=True,
            key_holder=Role.ACTIVE if self.protection.key_holder == "active" else Role.KEY_HOLDER,
            sees={
                Role.PASSIVE: () if self.sealed else ("parameter_gradient",),
                Role.ACTIVE: active_sees,
                Role.KEY_HOLDER: (),  # only values masked by their requesters
            },
            grants={
                Role.PASSIVE: frozenset(passive_grants),
                Role.ACTIVE: frozenset(active_grants),
                Role.KEY_HOLDER: frozenset({Capability.MASKED_DECRYPTIONS}),
                Role.OBSERVER: frozenset({Capability.FRAMES}),
            },
        )

    def check_model(self, model: ModelConfig) -> None:
        """Refuse, at load time, a bottom model the preset cannot backpropagate under encryption."""
        protection = self.protection
        if self.sealed:
            self._check_sealed_model(model)
        refreshed = BACKPROP_HEADROOM * protection.gradient_bound
        if model.bottom_hidden and protection.mask_half_width < 16 * refreshed:
            raise ValueError(
                f"protection.mask_half_width = {protection.mask_half_width:g} hides nothing: a bottom model with hidden "
                f"layers has its gradient refreshed under the bound {BACKPROP_HEADROOM:g} x gradient_bound = {refreshed:g}, "
                f"and the mask must be at least 16 x that ({16 * refreshed:g}), since a masked value is within |v| / (2w) "
                "of the mask alone"
            )
        output_relu = model.resolved_output_activation() == "relu"
        needed = required_depth(model.bottom_hidden, output_relu, model.top == "trainable")
        offered = get_preset(self.preset).depth
        if needed <= offered:
            return
        widths = [*model.bottom_hidden, model.bottom_output or ("classes" if model.top == "sum" else 32)]
        layer = next(
            (f"Linear(->{w}) + ReLU" for w, relu in zip(widths, [True] * len(model.bottom_hidden) + [output_relu]) if relu),
            f"Linear(->{widths[-1]})",
        )
        fits = [name for name in preset_names() if get_preset(name).depth >= needed]
        hint = f"; preset {fits[0]!r} (depth {get_preset(fits[0]).depth}) fits" if fits else "; no preset fits"
        raise ValueError(
            f"protection: key_holder = {protection.key_holder!r} backpropagates through the bottom model under "
            f"encryption; layer {layer} needs {needed} multiplicative level(s) but preset {self.preset!r} "
            f"offers {offered}{hint}"
        )

    def _check_sealed_model(self, model: ModelConfig) -> None:
        """A sealed source layer is one Linear without activation (see :func:`.sealed.sealed_layer_refusal` for why)."""
        if model.bottom_hidden or model.resolved_output_activation() != "none":
            layers = [f"Linear(->{width}) + ReLU" for width in model.bottom_hidden]
            layers.append("Linear(->classes)" + (" + ReLU" if model.resolved_output_activation() == "relu" else ""))
            raise ValueError(
                f"protection.passive_layer = 'sealed' needs a bottom of exactly one Linear layer without activation (got "
                f"{' -> '.join(layers)}): a hidden layer or an activation needs the plaintext pre-activation X W^T, which "
                "reveals W (hence the gradients) to the passive; set model.bottom_hidden = [] (and, with the trainable "
                "top, model.bottom_output_activation = 'none': the top's first layer is followed by a ReLU anyway)"
            )

    def check_train(self, train: TrainConfig) -> None:
        """A batch is packed into one ciphertext per message: its padded size must fit the slots."""
        if self.sealed and (train.momentum != 0 or train.weight_decay != 0):
            setting = "train.momentum" if train.momentum != 0 else "train.weight_decay"
            raise ValueError(
                f"protection.passive_layer = 'sealed' trains with plain SGD only ({setting} is set): momentum or weight "
                "decay would need the sealed weights (or a velocity) scaled under encryption every step"
            )
        slots = get_preset(self.preset).slots
        if rotations.next_power_of_two(train.batch_size) > slots:
            raise ValueError(
                f"train.batch_size = {train.batch_size}: key_holder = {self.protection.key_holder!r} packs a batch into "
                f"one ciphertext row block, and preset {self.preset!r} has {slots} slots; use a batch of at most {slots}"
            )

    def check_bottom_model(self, index: int, model: object) -> None:
        """A user's bottom model must be a Linear/ReLU stack (``ValueError`` naming the layer otherwise)."""
        try:
            stack = linear_stack(model)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(
                f"bottom_models[{index}]: key_holder = {self.protection.key_holder!r} backpropagates the bottom "
                f"model under encryption: {exc}"
            ) from None
        refusal = sealed_layer_refusal(stack) if self.sealed else None
        if refusal is not None:
            raise ValueError(f"bottom_models[{index}]: {refusal}")

    def placement_refusal(self, on: str, placement: str) -> str | None:
        if on == "activation" and placement == "post_decryption":
            return (
                f"with key_holder = {self.protection.key_holder!r} the active party never decrypts an individual "
                "passive's activations (only their combination); use under_encryption"
            )
        return super().placement_refusal(on, placement)

    def build_party(
        self,
        name: str,
        run: RunShape,
        model: ModelConfig,
        train: TrainConfig,
        own: PassiveOwn | ActiveOwn | None,
        channel: Channel,
        timer: PhaseTimer,
    ) -> LocalParties:
        """One party: a passive with its blind wire, the active party (and, if it holds the key, the
        key holder's service under its name), or the coordinator. Only the key holder's build
        generates the secret key; every party derives the same packing plans from the public shape."""
        role = run.role_of(name, self.key_holder_party)
        check_own(name, role, own)
        protection = self.protection
        plans, top_plan = self._plans(run, model, train)
        bounds = Bounds(activation=protection.activation_bound, gradient=protection.gradient_bound)
        pairwise = pairwise_activation_masks(protection, model.top, len(run.passive_names))
        agreement = pairwise and same_gradient_packing(plans)
        link = KeyHolderLink(
            self.key_holder_party, protection.mask_half_width, tuple(run.passive_names) if pairwise else (), gradient_agreement=agreement
        )
        if isinstance(own, PassiveOwn):
            plan = plans[name]
            passive_wire = (
                SealedPassiveWire(own.model, plan, top_plan, bounds, link, train.lr)  # type: ignore[arg-type]
                if self.sealed
                else BlindPassiveWire(own.model, plan, top_plan, bounds, link)
            )
            return LocalParties(name, role, passive=make_passive(name, own, channel, run.active_name, timer, passive_wire))
        clients = [party for party in (*run.passive_names, run.active_name) if party != self.key_holder_party]
        if isinstance(own, ActiveOwn):
            active_wire: BlindActiveWire = SealedActiveWire(plans, top_plan, bounds) if self.sealed else BlindActiveWire(plans, top_plan, bounds)  # type: ignore[arg-type]
            active = make_active(name, own, run.passive_names, channel, timer, active_wire)
            if self.key_holder_party != name:
                active_wire.link = link
                return LocalParties(name, role, active=active)
            service = self._key_holder_service(run, model, train, plans, top_plan, active.audit, timer)
            active_wire.key_holder = service
            return LocalParties(name, role, active=active, key_holder=KeyHolderParty(service, channel, clients))
        service = self._key_holder_service(run, model, train, plans, top_plan, VisibilityLog(name), timer)
        mask_keys = deal_pair_keys(run.passive_names) if pairwise else None  # fresh at every build: every attempt
        check = GradientAgreement(run.passive_names) if agreement else None
        holder = KeyHolderParty(service, channel, clients, mask_keys=mask_keys, agreement=check, active=run.active_name)
        return LocalParties(name, role, key_holder=holder)

    def _plans(self, run: RunShape, model: ModelConfig, train: TrainConfig) -> tuple[dict[str, BottomPlan], TopPlan | None]:
        """Every passive's packing plan and the trainable top's, from the public architecture (checked against the preset)."""
        preset, batch = self.preset, train.batch_size
        depth, slots = get_preset(preset).depth, get_preset(preset).slots
        plans: dict[str, BottomPlan] = {}
        for name, shape in zip(run.passive_names, run.bottoms, strict=True):
            if shape is None:
                raise ConfigError(f"{name}'s bottom model is not a Linear/ReLU stack, which {self.name} backpropagates under encryption")
            plans[name] = BottomPlan(batch=batch, widths=shape.widths, relu_after=shape.relu_after)
        if self.sealed:
            stride = sealed_stride(batch, [plan.widths[0] for plan in plans.values()], run.bottom_out, slots)
            plans = {name: SealedPlan(plan.batch, plan.widths, plan.relu_after, stride=stride) for name, plan in plans.items()}
        elif (
            pairwise_activation_masks(self.protection, model.top, len(plans))
            and all(plan.layers == 1 for plan in plans.values())
            and not same_gradient_packing(plans)
        ):
            # one-layer bottoms of different feature counts: one gradient packing for all, so the coordinator can check it
            stride = shared_gradient_stride(batch, [plan.widths[0] for plan in plans.values()])
            plans = {name: SharedGradientPlan(plan.batch, plan.widths, plan.relu_after, stride=stride) for name, plan in plans.items()}
        for name, plan in plans.items():
            if plan.depth() > depth:
                raise ConfigError(
                    f"{name}'s bottom model needs {plan.depth()} multiplicative level(s) per backpropagation segment "
                    f"but preset {preset!r} offers {depth}"
                )
            widest = max(max(plan.feature_major_stride(layer), plan.batch_major_stride(layer)) for layer in range(plan.layers))
            if widest > slots:
                raise ConfigError(
                    f"{name}: a batch of {batch} with layer widths {list(plan.widths)} needs ciphertext rows of {widest} "
                    f"slots but preset {preset!r} has {slots}; use a smaller train.batch_size or a larger preset"
                )
        top_plan = None
        if model.top == "trainable":
            hidden = model.top_hidden[0] if model.top_hidden else run.num_classes
            top_plan = TopPlan(batch=batch, part_width=run.bottom_out, hidden=hidden)
        return plans, top_plan

    def _key_holder_service(
        self,
        run: RunShape,
        model: ModelConfig,
        train: TrainConfig,
        plans: dict[str, BottomPlan],
        top_plan: TopPlan | None,
        audit: VisibilityLog,
        timer: PhaseTimer,
    ) -> KeyHolder:
        """The key holder's service with a freshly generated secret key (exactly the rotation keys the step uses)."""
        protection, preset = self.protection, self.preset
        steps: set[int] = set().union(*(plan.rotation_steps() for plan in plans.values()))
        if top_plan is not None:
            steps |= top_plan.rotation_steps()
        with timer.phase(Phase.KEYGEN):
            secret = SecretKeyring.generate(get_preset(preset), rotation_steps=sorted(steps))
        policy = None
        if protection.decryption_policy == "protocol":
            policy = label_private_policy(
                plans=plans, top_plan=top_plan, active=run.active_name, key_holder=self.key_holder_party,
                combined_width=run.bottom_out if top_plan is None else top_plan.hidden,
                bounds=(protection.activation_bound, protection.gradient_bound), eval_batch=train.eval_batch_size,
                samples=run.n_train + run.n_test, params=get_preset(preset),
            )
        return KeyHolder(
            self.key_holder_party, secret, timer, audit, policy=policy,
            flooding=NoiseFlooding(protection.flooding_bits), mask_half_width=protection.mask_half_width,
        )
