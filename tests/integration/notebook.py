"""The seed notebook's streaming code, kept verbatim (untyped, as users wrote it), so the tests
prove that this exact code works against the server. One function per cell, in the notebook's
order; only collecting the statuses and returning what the next cell uses are added."""

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


# --- Part 9's streaming cells, in the notebook's order ---------------------------------------


def stream_run(client: Any, thread: Any, assistant: Any) -> None:
    """In [7]: stream a run with the event handler."""
    with client.beta.threads.runs.stream(
        thread_id=thread.id,  # ID of the thread to run.
        assistant_id=assistant.id,  # ID of the assistant to use.
        event_handler=EventHandler(),  # Custom event handler for processing events.
    ) as stream:
        # Process the stream until it is complete.
        stream.until_done()


def count_messages(client: Any, thread: Any) -> None:
    """In [8] (and In [18]): list the thread's messages and count them."""
    messages = client.beta.threads.messages.list(
        thread_id=thread.id  # ID of the thread to list messages from.
    )
    message_count = 0
    for message in messages:
        print(message.id)  # Print the ID of the message.
        print(message.content)  # Print the content of the message.
        print("\n")  # Print a newline for readability.
        message_count += 1  # Increment the message count.
    print(f"Total number of messages: {message_count}")


def dump_runs(client: Any, thread: Any) -> None:
    """In [9]: print the runs page, then each run's id and status."""
    runs = client.beta.threads.runs.list(
        thread_id=thread.id  # ID of the thread to list runs from.
    )
    print(runs)
    print("\n\n")
    for run in runs:
        print(run.id)  # Print the ID of the run.
        print(run.status)  # Print the status of the run.
        print("\n")  # Print a newline for readability.


def stream_limiting_completion_tokens(client: Any, thread: Any, assistant: Any) -> None:
    """In [13]: a run limited to 16 completion tokens."""
    with client.beta.threads.runs.stream(
        thread_id=thread.id,  # ID of the thread to run.
        assistant_id=assistant.id,  # ID of the assistant to use.
        # max_completion_tokens=16,  # Limit the maximum number of completion tokens to get an error
        max_completion_tokens=16,  # Limit the maximum number of completion tokens.
        event_handler=EventHandler(),  # Custom event handler for processing events.
    ) as stream:
        # Process the stream until it is complete.
        stream.until_done()


def list_runs_with_details(client: Any, thread: Any) -> None:
    """In [14]: each run's id, status and incomplete_details."""
    runs = client.beta.threads.runs.list(thread_id=thread.id)
    for run in runs:
        print(run.id)
        print(run.status)
        print(run.incomplete_details)
        print("\n")


def stream_with_last_messages(client: Any, thread: Any, assistant: Any) -> None:
    """In [16]: a `last_messages` truncation strategy."""
    with client.beta.threads.runs.stream(
        thread_id=thread.id,  # ID of the thread to run.
        assistant_id=assistant.id,  # ID of the assistant to use.
        max_prompt_tokens=1000,  # Limit the maximum number of prompt tokens.
        truncation_strategy={  # Adding a truncation strategy to control the context.
            "type": "last_messages",  # Strategy to keep only the most recent messages.
            "last_messages": 5,  # Keep the last 5 messages in the context window.
        },
        event_handler=EventHandler(),  # Custom event handler for processing events.
    ) as stream:
        # Process the stream until it is complete.
        stream.until_done()


def stream_with_auto_truncation(client: Any, thread: Any, assistant: Any) -> None:
    """In [17]: the `auto` truncation strategy."""
    with client.beta.threads.runs.stream(
        thread_id=thread.id,  # ID of the thread to run.
        assistant_id=assistant.id,  # ID of the assistant to use.
        max_prompt_tokens=1000,  # Limit the maximum number of prompt tokens.
        truncation_strategy={  # Adding a truncation strategy to control the context.
            "type": "auto"  # Strategy where the system decides which messages to keep.
        },
        event_handler=EventHandler(),  # Custom event handler for processing events.
    ) as stream:
        # Process the stream until it is complete.
        stream.until_done()


def stream_json_with_additional_instructions(client: Any, thread: Any, assistant: Any) -> None:
    """In [19]: JSON mode, asked for through `additional_instructions`."""
    with client.beta.threads.runs.stream(
        thread_id=thread.id,  # ID of the thread to run.
        assistant_id=assistant.id,  # ID of the assistant to use.
        additional_instructions="Make sure your output is in JSON format.",  # JSON output.
        response_format={"type": "json_object"},  # Specify response format as JSON object.
        tool_choice=None,
        event_handler=EventHandler(),  # Custom event handler for processing events.
    ) as stream:
        stream.until_done()  # Process the stream until complete.


def list_runs_descending(client: Any, thread: Any) -> None:
    """In [20]: the runs, newest first, with their incomplete_details."""
    runs = client.beta.threads.runs.list(
        thread_id=thread.id,
        order="desc",  # Order runs in descending order
    )
    for run in runs:
        print(run.id)
        print(run.status)
        print(run.incomplete_details)
        print("\n")


def last_run_id(client: Any, thread: Any) -> list[Any]:
    """In [21]: the runs as a list; the first one is the last run."""
    runs = client.beta.threads.runs.list(
        thread_id=thread.id,
        order="desc",  # Order runs in descending order
    )
    runs_list = list(runs)
    if runs_list:
        last_run_id = runs_list[0].id
        print("Last run ID:", last_run_id)
    for run in runs_list:
        print(run.id)
        print(run.status)
        print(run.incomplete_details)
        print("\n")
    return runs_list


def retrieve_last_run(client: Any, thread: Any, runs_list: list[Any]) -> Any:
    """In [22]: retrieve the last run and print it."""
    run = client.beta.threads.runs.retrieve(
        thread_id=thread.id,
        run_id=runs_list[0].id,  # The first run of the descending list: the last one to happen
    )
    print(run)
    return run
