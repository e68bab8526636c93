"""Durable Assistants: the OpenAI Assistants API v2 on Temporal."""
