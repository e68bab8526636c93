"""Serving a run's durable event log as the Assistants API's server-sent events.

Streams are read from the store, never from the worker: a stream survives worker crashes and API
restarts, and a client that reconnects with `Last-Event-ID` gets exactly the events it missed.
"""
