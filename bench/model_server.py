"""Run the scripted model server as its own process, for benchmarks (so the model's event loop
does not share a GIL with the benchmark's clients).

    python bench/model_server.py PORT [TTFT_SECONDS] [TOKENS_PER_SECOND] [tool-rounds]

`tool-rounds`: a request offering tools gets one call of the first tool (`python` gets
`print(1)`) and, once a tool answered, the text (bench/code_interpreter.py).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

from assistants.testing.scripted_model import Reply, ScriptedModel, ToolCallSpec


def tool_rounds(text: str) -> Any:
    def respond(request: dict[str, Any]) -> Reply:
        tools = request.get("tools") or []
        if not tools or request["messages"][-1]["role"] == "tool":
            return Reply(text=text)
        name = tools[0]["function"]["name"]
        arguments: dict[str, Any] = {"city": "Paris"}
        if name == "python":
            arguments = {"code": "print(1)"}
        elif name == "file_search":
            arguments = {"queries": ["emperor penguin colonies"]}
        return Reply(tool_calls=[ToolCallSpec(name, json.dumps(arguments))])

    return respond


def main() -> None:
    port = int(sys.argv[1])
    ttft = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    tps = float(sys.argv[3]) if len(sys.argv) > 3 and float(sys.argv[3]) > 0 else None
    model = ScriptedModel(port=port)
    model.default_reply = Reply(
        text="Penguins are flightless seabirds of the Southern Hemisphere.",
        ttft=ttft,
        tokens_per_second=tps,
    )
    if len(sys.argv) > 4 and sys.argv[4] == "tool-rounds":
        model.set_responder(tool_rounds(model.default_reply.text))
    model.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    model.stop()


if __name__ == "__main__":
    main()
