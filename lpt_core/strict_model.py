"""The base of every typed settings model: frozen, unknown keys rejected, no boolean as a number.

Its own module so that settings defined outside lpt_core.config (an RL algorithm's, in
lpt_core.training.algorithms) validate exactly as the recipe's own sections do.
"""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _boolean_is_not_a_number(cls, value: object, info: ValidationInfo) -> object:
        # YAML reads true/yes/on as booleans, and pydantic would quietly take one as the number 1.
        accepted = get_args(cls.model_fields[info.field_name].annotation) or (
            cls.model_fields[info.field_name].annotation,
        )
        if isinstance(value, bool) and bool not in accepted and {int, float} & set(accepted):
            raise ValueError("expected a number, got a boolean")
        return value
