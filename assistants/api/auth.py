"""API keys → projects, and the `OpenAI-Beta` header check.

Key lookups are cached in memory for a short time (keys are hashed and the hash is the cache key),
so an authenticated request costs no database round trip in the common case.
"""

from __future__ import annotations

import time

from starlette.requests import Request

from assistants.errors import AuthenticationFailed, InvalidRequest
from assistants.store.projects import ProjectStore, hash_key

BETA_PREFIXES = ("/v1/assistants", "/v1/threads")


class Authenticator:
    def __init__(self, projects: ProjectStore, ttl_s: float = 30.0) -> None:
        self._projects = projects
        self._ttl = ttl_s
        self._cache: dict[str, tuple[str, float]] = {}

    async def project_for(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationFailed(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        digest = hash_key(key)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        project_id = await self._projects.project_for_key(key)
        if project_id is None:
            hint = f"{key[:3]}...{key[-4:]}" if len(key) > 8 else "***"
            raise AuthenticationFailed(
                f"Incorrect API key provided: {hint}. Create one with "
                "`durable-assistants keys create --project NAME`.",
                code="invalid_api_key",
            )
        self._cache[digest] = (project_id, now + self._ttl)
        return project_id


def require_beta_header(request: Request) -> None:
    # The scope's path, not `request.url.path`: building the URL object cost more than the
    # rest of the check on every request.
    if not request.scope["path"].startswith(BETA_PREFIXES):
        return
    if "assistants=v2" not in request.headers.get("openai-beta", ""):
        raise InvalidRequest(
            "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please try "
            "again by setting the header 'OpenAI-Beta: assistants=v2'.",
            code="invalid_beta",
        )
