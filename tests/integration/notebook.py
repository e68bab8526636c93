"""The seed notebook's streaming code, kept verbatim (untyped, as users wrote it), so the tests
prove that this exact code works against the server. Only collecting the statuses is added."""

from typing import Any

from openai import AssistantEventHandler
from typing_extensions import override


class EventHandler(AssistantEventHandler):
    """Custom event handler for processing assistant events."""

    @override
    def on_text_created(self, text) -> None:
        print("\nassistant text > ", end="", flush=True)

    @override
    def on_text_delta(self, delta, snapshot):
        print(delta.value, end="", flush=True)

    def on_tool_call_created(self, tool_call):
        print(f"\nassistant tool > {tool_call.type}\n", flush=True)

    def on_tool_call_delta(self, delta, snapshot):
        if delta.type == "code_interpreter":
            if delta.code_interpreter.input:
                print(delta.code_interpreter.input, end="", flush=True)
            if delta.code_interpreter.outputs:
                print("\n\noutput >", flush=True)
            for output in delta.code_interpreter.outputs:
                if output.type == "logs":
                    print(f"\n{output.logs}", flush=True)


def stream_and_cancel(client: Any, thread: Any, assistant: Any) -> tuple[Any, list[Any]]:
    """In [27]: create a streaming run and cancel it from inside the loop once in progress."""
    stream_run = client.beta.threads.runs.create(
        thread_id=thread.id,
        assistant_id=assistant.id,
        stream=True,
    )
    cancelled_run = None
    statuses = []
    for event in stream_run:
        if hasattr(event.data, "status"):
            statuses.append((event.event, event.data.status))
            if event.data.status == "in_progress":
                cancelled_run = client.beta.threads.runs.cancel(
                    thread_id=thread.id, run_id=event.data.id
                )
    return cancelled_run, statuses
