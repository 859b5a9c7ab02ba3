"""Prompt steering: a persona or instruction applied through the chat template.

The baseline every other method must beat: if a system prompt moves the trait as far as
an activation edit does, the edit has shown nothing beyond what one sentence can do.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.model.chat import Message
from harness.steering.base import BaseMethod, MethodParams


class PromptParams(MethodParams):
    instruction: str = Field(min_length=1, description="The persona or instruction text.")
    placement: Literal["system", "user_prefix"] = Field(
        "system",
        description=(
            "system: replace the system message (or add one); user_prefix: prepend to the "
            "user's message, for templates without a system role."
        ),
    )


class PromptSteering(BaseMethod):
    """Replace the system message with the instruction, or prefix the user's message."""

    Params = PromptParams
    params: PromptParams

    def transform_messages(self, messages: list[Message]) -> list[Message]:
        text = self.params.instruction
        if self.params.placement == "system":
            rest = [m for m in messages if m["role"] != "system"]
            return [{"role": "system", "content": text}, *rest]
        out = []
        done = False
        for m in messages:
            if m["role"] == "user" and not done:
                m = {"role": "user", "content": f"{text}\n\n{m['content']}"}
                done = True
            out.append(m)
        return out
