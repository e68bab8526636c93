"""code_interpreter in runs: what the model sees (tool.py) and the shared payloads (shared.py).

The sandbox itself is `assistants.sandbox`; the activities that drive it are
`activities/code_interpreter.py`; the per-thread session lifetime is
`workflows/code_session.py`; the run's side is `workflows/code_calls.py`.
"""
