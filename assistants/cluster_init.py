"""`durable-assistants init`: the one-shot set-up of a cluster, for a Kubernetes Job or a compose
one-off service that runs before the API and the workers: apply the database migrations and
register the search attributes the workflows set on the Temporal namespace.

Idempotent, so it can run on every deploy: migrations already applied are skipped, attributes
already registered (with the right type) are left alone, and two runs at once are safe (the
migrations take a lock; a concurrent registration's ALREADY_EXISTS counts as done). Both
dependencies are retried for `wait_s` (in compose they may still be starting), then it fails
with a message naming what was unreachable.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from assistants.config import Settings
from assistants.store import Store
from assistants.temporal import connect
from workflows.search_attributes import NAMES


class InitError(Exception):
    """Set-up failed; the message says what and what to do, without secrets."""


@dataclass(frozen=True)
class InitResult:
    migrations: list[int]  # the versions applied now (empty: the schema was current)
    search_attributes: list[str] | None  # the names registered now (None: not managed)


def _describe(error: BaseException) -> str:
    """An error's class and first line: enough to act on, short, and without the URL."""
    first_line = (str(error).splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__


async def migrate(settings: Settings, wait_s: float) -> list[int]:
    deadline = time.monotonic() + wait_s
    while True:
        store = Store.from_url(settings.resolved_database_url)
        try:
            return await store.migrate()
        except Exception as error:  # unreachable, refused, not yet accepting connections, …
            if time.monotonic() >= deadline:
                raise InitError(f"could not migrate the database: {_describe(error)}") from None
        finally:
            await store.close()
        await asyncio.sleep(1.0)


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the missing search attributes on `namespace`; returns the names added. An
    attribute registered with another type is an error (the workflows' upserts would fail)."""
    try:
        listing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        existing = dict(listing.custom_attributes)
        wanted = {
            name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
            for name, kind in NAMES.items()
        }
        clashes = [
            f"{name} is {IndexedValueType.Name(existing[name])}"
            for name, kind in wanted.items()
            if name in existing and existing[name] != kind
        ]
        if clashes:
            raise InitError(
                f"search attributes of namespace '{namespace}' have other types than the "
                f"Keyword the workflows need: {', '.join(clashes)}"
            )
        missing = {name: kind for name, kind in wanted.items() if name not in existing}
        if missing:
            try:
                await client.operator_service.add_search_attributes(
                    AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
                )
            except RPCError as error:
                if error.status != RPCStatusCode.ALREADY_EXISTS:  # else: a concurrent init
                    raise
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise InitError(
                f"Temporal namespace '{namespace}' does not exist: create it first "
                f"(temporal operator namespace create --namespace {namespace})"
            ) from None
        raise InitError(
            f"could not register the search attributes on namespace '{namespace}' "
            f"({error.status.name if error.status else 'error'}: {error.message[:200]}). "
            "Register them another way (see the README) or set ASSISTANTS_SEARCH_ATTRIBUTES=false"
        ) from None
    return sorted(missing)


async def initialize(settings: Settings, *, wait_s: float) -> InitResult:
    migrations = await migrate(settings, wait_s)
    try:
        client = await connect(settings, attempts=max(1, round(wait_s)), delay_s=1.0)
    except RuntimeError:
        raise InitError(
            f"could not connect to Temporal at {settings.temporal_address} "
            f"(namespace '{settings.temporal_namespace}')"
        ) from None
    if not settings.search_attributes:
        return InitResult(migrations, None)
    added = await register_search_attributes(client, settings.temporal_namespace)
    return InitResult(migrations, added)
