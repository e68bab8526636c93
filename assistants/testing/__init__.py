"""Test helpers: a scripted OpenAI-compatible model server and a throw-away PostgreSQL cluster."""
