"""The scripted model server, checked from the real openai SDK (sync and async)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec

QUESTION = "What is the weather in Paris?"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]


def _eventually(check: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.01)
    return check()


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedModel]:
    with ScriptedModel() as model:
        yield model


@pytest.fixture
def model(server: ScriptedModel) -> ScriptedModel:
    server.reset()
    return server


@pytest.fixture
def client(model: ScriptedModel) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=model.base_url, api_key="x", max_retries=0) as sdk:
        yield sdk


def test_streams_text_in_chunks_with_usage(model: ScriptedModel, client: openai.OpenAI) -> None:
    model.enqueue(Reply(text="Hello, durable world!", chunk_chars=5))
    stream = client.chat.completions.create(
        model="gpt-test",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    first, *middle, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert [c.choices[0].delta.content for c in middle] == ["Hello", ", dur", "able ", "world", "!"]
    assert finish.choices[0].finish_reason == "stop"
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens == 5
    assert usage.usage.prompt_tokens == len(QUESTION) // 4 + 1
    assert usage.usage.total_tokens == usage.usage.prompt_tokens + 5
    assert {c.model for c in chunks} == {"gpt-test"} and len({c.id for c in chunks}) == 1
    assert model.requests[0]["messages"] == USER


def test_usage_chunk_only_when_requested(model: ScriptedModel, client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == model.default_reply.text


def test_non_streamed_completion(model: ScriptedModel, client: openai.OpenAI) -> None:
    model.enqueue(Reply(text="Plain answer.", prompt_tokens=11, completion_tokens=3))
    completion = client.chat.completions.create(model="gpt-test", messages=USER)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Plain answer."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.total_tokens) == (11, 14)


def test_non_streamed_tool_calls(model: ScriptedModel, client: openai.OpenAI) -> None:
    model.enqueue(Reply(tool_calls=[ToolCallSpec("lookup", '{"q": "x"}', id="call_fixed")]))
    message = client.chat.completions.create(model="m", messages=USER).choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.id == "call_fixed" and call.type == "function"
    assert (call.function.name, call.function.arguments) == ("lookup", '{"q": "x"}')


@pytest.mark.asyncio
async def test_streamed_tool_calls_assemble(model: ScriptedModel) -> None:
    calls = [
        ToolCallSpec("get_weather", json.dumps({"city": "Paris", "unit": "celsius"})),
        ToolCallSpec("get_time", json.dumps({"tz": "Europe/Paris"}), id="call_given"),
    ]
    model.enqueue(Reply(text="Checking.", tool_calls=calls, chunk_chars=3))
    async with openai.AsyncOpenAI(base_url=model.base_url, api_key="x", max_retries=0) as sdk:
        stream = await sdk.chat.completions.create(model="m", messages=USER, stream=True)
        text, finish = "", None
        assembled: dict[int, tuple[str, str, str]] = {}  # index -> (id, name, arguments)
        fragments: dict[int, int] = {}
        async for chunk in stream:
            choice = chunk.choices[0]
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                assert delta.function is not None
                if delta.id is not None:  # the first delta of a call names it
                    assert delta.type == "function" and delta.function.arguments == ""
                    assembled[delta.index] = (delta.id, delta.function.name or "", "")
                else:
                    assert delta.function.name is None
                    fragments[delta.index] = fragments.get(delta.index, 0) + 1
                    call_id, name, arguments = assembled[delta.index]
                    assembled[delta.index] = (
                        call_id,
                        name,
                        arguments + (delta.function.arguments or ""),
                    )

    assert text == "Checking." and finish == "tool_calls"
    assert assembled[0][0].startswith("call_") and assembled[1][0] == "call_given"
    assert [(name, json.loads(args)) for _, name, args in assembled.values()] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}),
        ("get_time", {"tz": "Europe/Paris"}),
    ]
    assert fragments[0] > 1  # arguments really arrive in pieces


def test_finish_reason_length(model: ScriptedModel, client: openai.OpenAI) -> None:
    model.enqueue(Reply(text="cut sho", finish_reason="length"), Reply(finish_reason="length"))
    chunks = list(client.chat.completions.create(model="m", messages=USER, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"
    completion = client.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].finish_reason == "length"


def test_token_limit_cuts_the_answer(model: ScriptedModel, client: openai.OpenAI) -> None:
    text = "A penguin is a flightless seabird."  # 9 chunks of 4 characters
    model.enqueue(Reply(text=text), Reply(text=text), Reply(text=text))
    stream = client.chat.completions.create(
        model="m",
        messages=USER,
        stream=True,
        max_completion_tokens=3,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    assert "".join(d or "" for d in deltas) == "A penguin is"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    completion = client.chat.completions.create(model="m", messages=USER, max_tokens=2)
    assert completion.choices[0].message.content == "A pengui"
    assert completion.choices[0].finish_reason == "length"
    # A limit the answer fits in changes nothing.
    whole = client.chat.completions.create(model="m", messages=USER, max_completion_tokens=9)
    assert whole.choices[0].message.content == text
    assert whole.choices[0].finish_reason == "stop"


def test_error_replies(model: ScriptedModel, client: openai.OpenAI) -> None:
    model.enqueue(
        Reply(status=500, error_message="boom"),
        Reply(status=429, error_message="slow down", retry_after=2),
        Reply(status=400, error_message="bad messages"),
    )
    with pytest.raises(openai.InternalServerError) as server_error:
        client.chat.completions.create(model="m", messages=USER, stream=True)
    assert server_error.value.status_code == 500
    assert server_error.value.body == {
        "message": "boom",
        "type": "server_error",
        "param": None,
        "code": None,
    }

    with pytest.raises(openai.RateLimitError) as rate_limited:
        client.chat.completions.create(model="m", messages=USER)
    assert rate_limited.value.response.headers["retry-after"] == "2"
    assert rate_limited.value.code == "rate_limit_exceeded"

    with pytest.raises(openai.BadRequestError) as bad_request:
        client.chat.completions.create(model="m", messages=USER)
    assert bad_request.value.message.endswith("bad messages")
    assert len(model.requests) == 3


def test_sdk_retries_honour_retry_after(model: ScriptedModel) -> None:
    model.enqueue(Reply(status=429, retry_after=0.3), Reply(text="after retry"))
    with openai.OpenAI(base_url=model.base_url, api_key="x", max_retries=1) as sdk:
        started = time.monotonic()
        completion = sdk.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.content == "after retry"
    assert time.monotonic() - started >= 0.3
    assert len(model.requests) == 2


def test_drop_after_chunks_breaks_the_stream(model: ScriptedModel, client: openai.OpenAI) -> None:
    model.enqueue(Reply(text="abcdefghijklmnop", chunk_chars=2, drop_after_chunks=3))
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="m", messages=USER, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "abcdef"

    # The server is unharmed: the next request works normally.
    completion = client.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.content == model.default_reply.text


def test_models_endpoint(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["scripted-model"]


def test_responder_default_reply_and_reset(model: ScriptedModel, client: openai.OpenAI) -> None:
    def echo(body: dict[str, Any]) -> Reply:
        return Reply(text=f"echo: {body['messages'][-1]['content']}")

    model.default_reply = Reply(text="fallback")
    model.enqueue(Reply(text="queued"))
    model.set_responder(echo)

    def ask(text: str) -> str | None:
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": text}]
        return (
            client.chat.completions.create(model="m", messages=messages).choices[0].message.content
        )

    assert [ask("one"), ask("two")] == ["queued", "echo: two"]
    model.set_responder(None)
    assert ask("three") == "fallback"
    model.wait_for_requests(3, timeout=0.1)
    with pytest.raises(TimeoutError):
        model.wait_for_requests(4, timeout=0.05)

    model.reset()
    assert model.requests == [] and ask("four") == "Hello from the scripted model."


@pytest.mark.asyncio
async def test_in_flight_counts_requests_being_served(model: ScriptedModel) -> None:
    model.enqueue(Reply(text="slow", ttft=0.3))
    async with openai.AsyncOpenAI(base_url=model.base_url, api_key="x", max_retries=0) as sdk:
        task = asyncio.create_task(sdk.chat.completions.create(model="m", messages=USER))
        await asyncio.to_thread(model.wait_for_requests, 1)
        assert model.in_flight == 1
        await task
    # The server finishes its bookkeeping just after the client has the body.
    assert await asyncio.to_thread(_eventually, lambda: model.in_flight == 0)


@pytest.mark.asyncio
async def test_many_concurrent_slow_streams(model: ScriptedModel) -> None:
    streams, ttft, tps, chunks = 200, 0.2, 50.0, 5
    model.default_reply = Reply(text="x" * 4 * chunks, ttft=ttft, tokens_per_second=tps)
    expected = ttft + (chunks - 1) / tps  # the first content chunk follows the TTFT directly

    async with openai.AsyncOpenAI(base_url=model.base_url, api_key="x", max_retries=0) as sdk:

        async def one() -> tuple[float, str]:
            started = time.monotonic()
            stream = await sdk.chat.completions.create(model="m", messages=USER, stream=True)
            text, first_token = "", 0.0
            async for chunk in stream:
                content = chunk.choices[0].delta.content if chunk.choices else None
                if content and not first_token:
                    first_token = time.monotonic() - started
                text += content or ""
            return first_token, text

        started = time.monotonic()
        results = await asyncio.gather(*(one() for _ in range(streams)))
        elapsed = time.monotonic() - started

    assert all(text == "x" * 4 * chunks for _, text in results)
    assert min(ttft_seen for ttft_seen, _ in results) >= ttft
    # One after another this would take streams * expected = 56 s. The server alone
    # needs about `expected` + 0.2 s; most of the rest is the SDK parsing 1,800 chunks
    # in this process, sharing the GIL with the server thread.
    assert expected <= elapsed < expected + 5.0, f"{streams} streams took {elapsed:.2f}s"
    assert len(model.requests) == streams


def test_stop_is_fast_with_a_slow_stream_in_flight() -> None:
    model = ScriptedModel().start()
    model.default_reply = Reply(text="never sent", ttft=30)
    failures: list[Exception] = []

    def consume() -> None:
        with openai.OpenAI(base_url=model.base_url, api_key="x", max_retries=0) as sdk:
            try:
                list(sdk.chat.completions.create(model="m", messages=USER, stream=True))
            except openai.APIError as error:
                failures.append(error)

    consumer = threading.Thread(target=consume)
    consumer.start()
    model.wait_for_requests(1)
    started = time.monotonic()
    model.stop()
    assert time.monotonic() - started < 1.0
    consumer.join(timeout=5)
    assert len(failures) == 1

    with model, openai.OpenAI(base_url=model.base_url, api_key="x") as sdk:  # restartable
        assert [m.id for m in sdk.models.list()] == ["scripted-model"]
