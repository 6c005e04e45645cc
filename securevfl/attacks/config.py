"""The ``[attack]`` section: which attack a passive party runs, and its parameters.

One validated model covers every kind. Fields a kind does not use are ignored (as the
protection fields are under the plain scheme), so a study can sweep ``kind`` from one base
configuration; misspelt keys are still refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["AttackConfig", "AttackKind"]

AttackKind = Literal["none", "label_inference", "gradient_replacement"]

class AttackConfig(BaseModel):
    """What the malicious passive party does.

    - ``none``: every party follows the protocol.
    - ``label_inference``: infer each training sample's label from the sign pattern of the
      gradient row it receives (the softmax-sum top leaks it); no model is altered.
    - ``gradient_replacement``: the backdoor of Liu et al. (Algorithm 2): write ``gamma`` times
      the gradient row recorded for a known target-class sample into the rows of the attacker's
      poisoned samples. With ``blur_activations`` it also sends random rows for its poisoned
      samples during training (Algorithm 3), the variant the paper uses against a trainable top.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: AttackKind = "none"
    party: str | None = Field(default=None, description="the attacking passive party; default: the last one")
    target_label: int = Field(default=0, ge=0, description="label the backdoor makes triggered samples take")
    known_target_samples: int = Field(default=1, ge=1, description="clean target-class samples the attacker knows")
    gamma: float = Field(default=10.0, gt=0, description="amplification of the replaced gradient rows")
    poison_train: int = Field(default=600, ge=1, description="poisoned training samples (none of the target class)")
    poison_test: int = Field(default=100, ge=1, description="triggered test samples the backdoor is measured on")
    trigger_features: list[int] | None = Field(
        default=None, description="global column indices of the trigger; default for images: the paper's 4 corner pixels"
    )
    trigger_values: list[float] | None = Field(
        default=None, description="values written into trigger_features; default: the data's maximum value"
    )
    record: Literal["latest", "first"] = Field(
        default="latest",
        description="which received row of a known target sample to replay: the latest (Algorithm 2) or the first",
    )
    blur_activations: bool = Field(default=False, description="send random rows for poisoned samples while training")
    blur_variance: float = Field(default=1e-6, gt=0, description="variance of the random rows (Algorithm 3)")

    @model_validator(mode="after")
    def _check_fields_for_kind(self) -> AttackConfig:
        if self.trigger_values is not None and self.trigger_features is None:
            raise ValueError("attack.trigger_values needs attack.trigger_features")
        if self.trigger_features is not None:
            if not self.trigger_features:
                raise ValueError("attack.trigger_features is empty")
            if len(set(self.trigger_features)) != len(self.trigger_features):
                raise ValueError("attack.trigger_features repeats a column")
            if self.trigger_values is not None and len(self.trigger_values) != len(self.trigger_features):
                raise ValueError(
                    f"attack.trigger_values has {len(self.trigger_values)} values for "
                    f"{len(self.trigger_features)} trigger_features"
                )
        return self

    @property
    def active(self) -> bool:
        return self.kind != "none"
