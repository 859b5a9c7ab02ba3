"""Chat rendering: the exact text a model sees for a prompt (and a method's messages)."""

from __future__ import annotations

from harness.model.loading import LoadedModel

Message = dict[str, str]
"""One chat message: ``{"role": ..., "content": ...}``."""


def build_messages(prompt: str, system_prompt: str | None) -> list[Message]:
    messages: list[Message] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": prompt})
    return messages


def render(lm: LoadedModel, messages: list[Message]) -> str:
    """The exact text fed to the model: chat template, or plain concatenation without one."""
    if lm.use_chat_template:
        return str(
            lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    return "\n\n".join(m["content"] for m in messages)
