"""Reading an SDK `Message`'s text in tests: its content is a union of block types, and the
assertion on the block's type is what lets mypy (and the reader) know it is text."""

from __future__ import annotations

from openai.types.beta.threads import Message


def text_of(message: Message) -> str:
    """The text of the message's first content block, which must be a text block."""
    block = message.content[0]
    assert block.type == "text", block.type
    return block.text.value
