"""`durable-assistants`: dev, api, worker, sandbox-worker, tools, codec-server, codec-key, init,
migrate, keys.

`dev` runs everything in one process for a laptop: an embedded Temporal dev server (persisted under
the data dir), the worker and the HTTP API (and the codec server when payloads are encrypted).
`api` and `worker` run the parts separately against an external Temporal and database, for
production (`init` sets up their database and Temporal namespace once per deploy); `sandbox-worker`
runs only a code_interpreter sandbox host. `tools` lists the function tools a worker would
register; `codec-server` lets the Temporal UI and CLI decrypt payloads; `codec-key` prints a new
encryption key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import uvicorn
import uvloop
from temporalio.worker import Worker

from assistants.api.app import build_services, create_app
from assistants.api.context import Services
from assistants.backends import ChatBackend
from assistants.backends.factory import backend_from_settings
from assistants.config import Settings
from assistants.devserver import TemporalDevServer
from assistants.files import close_blob_storage
from assistants.logging import configure_logging
from assistants.store import Store
from assistants.tools import ToolRegistry, ToolRegistryError


async def _serve_api(settings: Settings, services: Services) -> None:
    config = uvicorn.Config(
        create_app(services),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        # The C HTTP/1.1 parser: h11, uvicorn's pure-Python one, held the GIL an eighth of a
        # loaded `dev` process's time (py-spy, bench/mixed_load.py).
        http="httptools",
        timeout_graceful_shutdown=5,
        # Longer than httpx's 5 s idle-connection expiry (the SDK's client), so the server never
        # closes a kept-alive connection just as the client reuses it (a spurious ReadError).
        timeout_keep_alive=30,
    )
    await uvicorn.Server(config).serve()


async def _api(settings: Settings) -> None:
    services = await build_services(settings)
    try:
        if settings.api_worker:
            # A worker on the API's own client: Temporal hands a started run's first workflow
            # task back in the start response (eager start), and its model activity to the same
            # worker (eager activity execution), skipping two trips through matching.
            async with _embedded_worker(settings, services, backend_from_settings(settings)):
                await _serve_api(settings, services)
        else:
            await _serve_api(settings, services)
    finally:
        await close_blob_storage(services.blobs)
        await services.store.close()


def _embedded_worker(
    settings: Settings, services: Services, backend: ChatBackend, tools: ToolRegistry | None = None
) -> Worker:
    """A Temporal worker sharing the API's client and store (`dev`, `api` with `api_worker`)."""
    from worker import build_worker  # the top-level worker module

    return build_worker(
        services.launcher.client, settings, services.store, backend, tools, blobs=services.blobs
    )


def _dev_key(settings: Settings) -> str:
    if settings.bootstrap_api_key:
        return settings.bootstrap_api_key
    path = settings.data_dir / "dev-api-key"
    if path.exists():
        return path.read_text().strip()
    key = "sk-dev-" + secrets.token_urlsafe(24)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _banner(settings: Settings, key: str, backend: str, ui: str | None) -> str:
    lines = [
        "",
        "Durable Assistants (dev) is ready",
        f"  base URL      {settings.api_base_url}",
        f"  API key       {key}",
        f"  model backend {backend}",
        f"  Temporal      {settings.temporal_address} (namespace {settings.temporal_namespace})",
        f"  Temporal UI   {ui or 'disabled'}",
        f"  data dir      {settings.data_dir.resolve()}",
        "",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{settings.api_base_url}", api_key="{key}")',
        "",
    ]
    return "\n".join(lines)


async def _dev(settings: Settings) -> None:
    from worker import sandbox_host_if_enabled  # the top-level worker module

    # Load the tools first: a bad module is reported before anything starts.
    tools = ToolRegistry.from_modules(settings.tool_module_list)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    port = int(settings.temporal_address.rsplit(":", 1)[1])
    codec_url = f"http://{settings.codec_server_host}:{settings.codec_server_port}"
    server = TemporalDevServer(
        port=port,
        ui_port=settings.temporal_ui_port,
        db_file=settings.data_dir / "temporal.db",
        log_file=settings.data_dir / "temporal.log",
        namespace=settings.temporal_namespace,
        ui_codec_endpoint=codec_url if settings.payload_encryption_keys else None,
    )
    server.start()  # from the event loop's thread: the child is bound to it (see devserver)
    try:
        key = _dev_key(settings)
        settings = settings.model_copy(update={"bootstrap_api_key": key})
        services = await build_services(settings)
        backend = backend_from_settings(settings)
        worker = _embedded_worker(settings, services, backend, tools)
        print(_banner(settings, key, backend.name, server.ui_url), flush=True)
        codec: asyncio.Task[None] | None = None
        if settings.payload_encryption_keys:
            # Payloads are encrypted: serve the codec server the UI was pointed at.
            from assistants.codec_server import serve_codec_server

            codec = asyncio.create_task(serve_codec_server(settings))
            print(f"  codec server  {codec_url} (payloads are encrypted)\n", flush=True)
        sandboxes = sandbox_host_if_enabled(
            services.launcher.client, settings, services.store, services.blobs
        )
        async with worker, sandboxes:
            await _serve_api(settings, services)
        if codec is not None:
            codec.cancel()
        await close_blob_storage(services.blobs)
        await services.store.close()
    finally:
        await asyncio.to_thread(server.stop)


async def _migrate(settings: Settings) -> None:
    store = Store.from_url(settings.resolved_database_url)
    try:
        applied = await store.migrate()
        print(f"schema is current (applied: {applied or 'nothing'})")
    finally:
        await store.close()


async def _init(settings: Settings, wait_s: float) -> None:
    from assistants.cluster_init import initialize

    result = await initialize(settings, wait_s=wait_s)
    print(f"schema is current (applied: {result.migrations or 'nothing'})")
    namespace = settings.temporal_namespace
    if result.search_attributes is None:
        print("search attributes: not managed (ASSISTANTS_SEARCH_ATTRIBUTES=false)")
    else:
        added = ", ".join(result.search_attributes) or "nothing, all present"
        print(f"search attributes of namespace '{namespace}' are registered (added: {added})")


async def _create_key(settings: Settings, project: str) -> None:
    store = Store.from_url(settings.resolved_database_url)
    try:
        await store.migrate()
        key = await store.projects.add_key(project)
    finally:
        await store.close()
    print(key)
    print(f"(a new API key for project '{project}'; it is shown only once)", file=sys.stderr)


def _list_tools(settings: Settings) -> None:
    registry = ToolRegistry.from_modules(settings.tool_module_list)
    if not len(registry):
        print("no function tools registered (set ASSISTANTS_TOOL_MODULES or pass --tools)")
        return
    for tool in registry:
        policy = tool.policy
        print(f"{tool.name}: {tool.description or '(no description)'}")
        runs_as = (
            "local activity"
            if policy.local
            else f"activity, heartbeat timeout {policy.heartbeat_timeout_s:g}s"
        )
        print(
            f"  timeout {policy.timeout_s:g}s, {policy.max_attempts} attempt(s), "
            f"{runs_as}, on error: {policy.on_error}"
        )
        print(f"  parameters {json.dumps(tool.parameters)}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="durable-assistants", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tools_help = "comma-separated modules of @function_tool functions (ASSISTANTS_TOOL_MODULES)"
    dev = commands.add_parser("dev", help="Temporal dev server + worker + API in one process")
    dev.add_argument("--tools", help=tools_help)
    commands.add_parser("api", help="the HTTP API (external Temporal and database)")
    worker = commands.add_parser(
        "worker", help="the Temporal worker (external Temporal and database)"
    )
    worker.add_argument("--tools", help=tools_help)
    commands.add_parser(
        "sandbox-worker", help="a code_interpreter sandbox host only (external Temporal, database)"
    )
    listing = commands.add_parser("tools", help="list the function tools the worker registers")
    listing.add_argument("--tools", help=tools_help)
    init = commands.add_parser(
        "init",
        help="one-shot cluster set-up: apply migrations, register the Temporal search attributes",
    )
    init.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="keep retrying an unreachable database or Temporal this long (default 60)",
    )
    commands.add_parser("migrate", help="apply database schema migrations")
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create an API key for a project")
    create.add_argument("--project", default="default")
    commands.add_parser(
        "codec-server", help="the Temporal codec server (decrypts payloads for the UI and CLI)"
    )
    commands.add_parser("codec-key", help="print a new payload encryption key")
    args = parser.parse_args(argv)

    # SIGTERM (systemd, docker, a benchmark's terminate()) unwinds like Ctrl-C, so `finally`
    # blocks run and `dev` never leaves its Temporal server behind. Uvicorn re-raises the signal
    # after its graceful shutdown, which lands here too.
    signal.signal(signal.SIGTERM, _interrupt)
    settings = Settings()
    if getattr(args, "tools", None):
        settings = settings.model_copy(update={"tool_modules": args.tools})
    fmt = (
        "console"
        if args.command == "dev" and settings.log_format == "json"
        else settings.log_format
    )
    configure_logging(fmt, settings.log_level)
    try:
        _run(args, settings, parser)
    except ToolRegistryError as error:  # a bad ASSISTANTS_TOOL_MODULES / --tools: say so plainly
        parser.exit(2, f"durable-assistants {args.command}: {error}\n")


def _serve(settings: Settings, main: Coroutine[Any, Any, None]) -> None:
    """Run a server process (`dev`, `api`, `worker`, `sandbox-worker`) on the configured event
    loop. Under load, these processes are bound by their event loop's own overhead (selecting,
    scheduling callbacks, socket reads and writes): uvloop does that work in C."""
    factory = uvloop.new_event_loop if settings.event_loop == "uvloop" else None
    _tune_gc()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def _tune_gc() -> None:
    """Fewer, cheaper cyclic garbage collections in a server process. By default Python runs a
    young-generation collection every 700 net allocations, and the full ones walk every object
    alive, most of them the modules and the app built at startup: 3-4 % of a loaded `dev`
    process's CPU (about 690 collections, 1.1-1.2 s of 29-36 s, in a `bench.run_latency` run,
    measured with `gc.callbacks`). Freezing what startup built moves it out of every collection,
    and a 20,000-allocation young generation makes collections rare (10 in that run, 0.1 s).
    Garbage in cycles lives a little longer; everything else is freed by reference counting as
    before."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def _run(args: argparse.Namespace, settings: Settings, parser: argparse.ArgumentParser) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        if args.command == "dev":
            _serve(settings, _dev(settings))
        elif args.command == "api":
            _serve(settings, _api(settings))
        elif args.command == "worker":
            from worker import run_worker

            _serve(settings, run_worker(settings))
        elif args.command == "sandbox-worker":
            from sandbox_worker import run_sandbox_worker

            _serve(settings, run_sandbox_worker(settings))
        elif args.command == "tools":
            _list_tools(settings)
        elif args.command == "init":
            from assistants.cluster_init import InitError

            code = 0
            try:
                asyncio.run(_init(settings, args.wait))
            except InitError as error:
                print(f"durable-assistants init: {error}", file=sys.stderr)
                code = 1
            # The Temporal client's core threads can abort the interpreter's finalization
            # (SIGABRT, temporalio/sdk-python#300): a one-shot command whose work is done (and
            # whose output is flushed) skips it, so its exit code is the one it chose.
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "keys":
            asyncio.run(_create_key(settings, args.project))
        elif args.command == "codec-server":
            from assistants.codec_server import CodecServerConfigError, serve_codec_server

            try:
                asyncio.run(serve_codec_server(settings))
            except CodecServerConfigError as exc:
                parser.exit(2, f"durable-assistants codec-server: {exc}\n")
        elif args.command == "codec-key":
            from assistants.codec import generate_key

            print(generate_key())
            print(
                "(a new AES-256 key: add it to ASSISTANTS_PAYLOAD_ENCRYPTION_KEYS as "
                "`key_id:<key>`, first in the list to encrypt with it)",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
