"""Prompt building: instructions, content conversion, truncation strategies."""

from __future__ import annotations

from typing import Any

from assistants.prompting import (
    Prompt,
    build_prompt,
    chat_content,
    estimate_tokens,
    prompt_window,
    run_instructions,
)


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
        {"role": "system", "content": "Be kind. Answer in JSON."},
        {"role": "user", "content": "hi"},
    ]
    assert not prompt.over_budget


def test_run_instructions_join_as_the_hosted_api_showed_them() -> None:
    # The seeds' notebook: the run object read back with exactly this text.
    assert (
        run_instructions("You are a helpful assistant.", "Make sure your output is in JSON format.")
        == "You are a helpful assistant. Make sure your output is in JSON format."
    )
    assert run_instructions("", "Answer in JSON.") == "Answer in JSON."
    assert run_instructions("Be kind.", None) == "Be kind."
    assert run_instructions("Be kind.", "") == "Be kind."
    assert run_instructions("", None) == ""


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


# --- the model's context window ---------------------------------------------------------------


def _contents(prompt: Prompt) -> list[Any]:
    return [m["content"] for m in prompt.messages]


def test_without_max_prompt_tokens_auto_truncation_still_fits_the_context_window() -> None:
    # Four turns of about 1,000 tokens each; the window leaves room for two and a half.
    history = [("user", text(letter * 4000)) for letter in "abcd"]
    prompt = build_prompt(
        instructions="sys",
        additional_instructions=None,
        history=history,
        truncation={"type": "auto"},
        max_prompt_tokens=None,
        context_tokens=2500,
    )
    assert _contents(prompt) == ["sys", "c" * 4000, "d" * 4000]
    assert prompt.estimated_tokens <= 2500
    assert not prompt.over_budget and not prompt.over_context
    unbounded = build_prompt(
        instructions="sys",
        additional_instructions=None,
        history=history,
        truncation={"type": "auto"},
        max_prompt_tokens=None,
    )
    assert len(unbounded.messages) == 5


def test_the_smaller_of_max_prompt_tokens_and_the_window_wins() -> None:
    history = [("user", text(letter * 4000)) for letter in "abcd"]

    def kept(max_prompt_tokens: int | None, window: int) -> list[Any]:
        return _contents(
            build_prompt(
                instructions="",
                additional_instructions=None,
                history=history,
                truncation={"type": "auto"},
                max_prompt_tokens=max_prompt_tokens,
                context_tokens=window,
            )
        )

    assert kept(1500, 100_000) == ["d" * 4000]
    assert kept(100_000, 2100) == ["c" * 4000, "d" * 4000]


def test_last_messages_is_cut_further_when_it_overflows_the_window() -> None:
    history = [("user", text(letter * 4000)) for letter in "abcd"]
    prompt = build_prompt(
        instructions="",
        additional_instructions=None,
        history=history,
        truncation={"type": "last_messages", "last_messages": 3},
        max_prompt_tokens=None,
        context_tokens=1500,
    )
    assert _contents(prompt) == ["d" * 4000]
    assert not prompt.over_context


def test_a_newest_turn_bigger_than_the_window_is_over_context() -> None:
    prompt = build_prompt(
        instructions="",
        additional_instructions=None,
        history=[("user", text("small")), ("user", text("x" * 40_000))],
        truncation={"type": "auto"},
        max_prompt_tokens=None,
        context_tokens=5000,
    )
    assert prompt.over_context and not prompt.over_budget
    assert _contents(prompt) == ["x" * 40_000]  # the newest turn is never dropped


def test_the_run_s_own_turns_count_against_the_window() -> None:
    own: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "r" * 4000},
    ]  # fmt: skip
    prompt = build_prompt(
        instructions="",
        additional_instructions=None,
        history=[("user", text("a" * 4000)), ("user", text("b" * 40))],
        truncation={"type": "auto"},
        max_prompt_tokens=None,
        run_turns=own,
        context_tokens=1100,
    )
    assert _contents(prompt)[0] == "b" * 40
    assert prompt.messages[-2:] == own
    assert prompt.estimated_tokens <= 1100


def test_prompt_window_keeps_room_for_the_answer() -> None:
    assert prompt_window(128_000, 4096, None) == 123_904
    assert prompt_window(128_000, 4096, 1000) == 127_000  # the run's own completion budget
    assert prompt_window(128_000, 4096, 2**31 - 1) == 64_000  # never less than half the window


def test_non_ascii_text_counts_about_a_token_per_character() -> None:
    assert estimate_tokens("x" * 400) == 100
    assert estimate_tokens("你好" * 100) == 200
    assert estimate_tokens("ab你好") == 3
