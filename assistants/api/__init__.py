"""The HTTP API: OpenAI's Assistants v2 routes on Starlette."""
