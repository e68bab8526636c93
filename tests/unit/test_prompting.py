"""Prompt building: instructions, content conversion, truncation strategies."""

from __future__ import annotations

from typing import Any

from assistants.prompting import build_prompt, chat_content


def text(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"value": value, "annotations": []}}]


def test_instructions_and_additional_instructions_make_the_system_message() -> None:
    prompt = build_prompt(
        instructions="Be kind.",
        additional_instructions="Answer in JSON.",
        history=[("user", text("hi"))],
        truncation={"type": "auto"},
        max_prompt_tokens=None,
    )
    assert prompt.messages == [
        {"role": "system", "content": "Be kind.\n\nAnswer in JSON."},
        {"role": "user", "content": "hi"},
    ]
    assert not prompt.over_budget


def test_no_system_message_without_instructions() -> None:
    prompt = build_prompt(
        instructions="",
        additional_instructions=None,
        history=[("user", text("hi")), ("assistant", [])],
        truncation={"type": "auto"},
        max_prompt_tokens=None,
    )
    assert prompt.messages == [{"role": "user", "content": "hi"}]


def test_last_messages_keeps_the_newest() -> None:
    history = [("user", text(f"m{i}")) for i in range(5)]
    prompt = build_prompt(
        instructions="sys",
        additional_instructions=None,
        history=history,
        truncation={"type": "last_messages", "last_messages": 2},
        max_prompt_tokens=None,
    )
    assert [m["content"] for m in prompt.messages] == ["sys", "m3", "m4"]


def test_auto_truncation_fits_the_budget_but_keeps_the_last_turn() -> None:
    history = [("user", text("x" * 2000)), ("assistant", text("y" * 40)), ("user", text("z"))]
    prompt = build_prompt(
        instructions="",
        additional_instructions=None,
        history=history,
        truncation={"type": "auto"},
        max_prompt_tokens=300,
    )
    assert [m["content"] for m in prompt.messages] == ["y" * 40, "z"]
    assert not prompt.over_budget
    alone = build_prompt(
        instructions="",
        additional_instructions=None,
        history=[("user", text("x" * 2000))],
        truncation={"type": "auto"},
        max_prompt_tokens=300,
    )
    assert alone.over_budget and len(alone.messages) == 1


def test_images_become_content_parts() -> None:
    blocks = [
        {"type": "text", "text": {"value": "What is this?", "annotations": []}},
        {"type": "image_url", "image_url": {"url": "https://example.invalid/p.png"}},
    ]
    assert chat_content("user", blocks) == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.invalid/p.png"}},
    ]
