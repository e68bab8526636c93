"""Run the scripted model server as its own process, for benchmarks (so the model's event loop
does not share a GIL with the benchmark's clients).

    python bench/model_server.py PORT [TTFT_SECONDS] [TOKENS_PER_SECOND]
"""

from __future__ import annotations

import signal
import sys
import threading

from assistants.testing.scripted_model import Reply, ScriptedModel


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
    model.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    model.stop()


if __name__ == "__main__":
    main()
