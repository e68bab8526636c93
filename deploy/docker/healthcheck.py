"""The container images' HEALTHCHECK: is this container's process alive?

One image serves several roles, chosen by its command, and Docker's HEALTHCHECK cannot see the
command. So this asks, on 127.0.0.1, each health endpoint a role may serve, and is healthy as
soon as one answers 200: the API's `/healthz`, a worker's (or sandbox worker's) `/healthz` on
`ASSISTANTS_WORKER_HEALTH_PORT`, and, as a TCP connect, the codec server's port (it has no
health route). `python healthcheck.py api|worker|codec` checks only that role, and `--ready`
asks `/readyz` instead (store, schema and Temporal reachable: what the compose file waits on).
Ports come from the one settings object, so they follow the same variables as the server.
"""

from __future__ import annotations

import socket
import sys
import urllib.request

from assistants.config import Settings

TIMEOUT_S = 3.0


def http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT_S) as r:
            return bool(r.status == 200)
    except OSError:  # refused, timed out, or an HTTP error status (HTTPError is an OSError)
        return False


def tcp_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S):
            return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    settings = Settings()
    path = "/readyz" if "--ready" in argv else "/healthz"
    checks = {
        "api": lambda: http_ok(settings.api_port, path),
        "worker": lambda: (
            bool(settings.worker_health_port) and http_ok(settings.worker_health_port, path)
        ),
        "codec": lambda: tcp_ok(settings.codec_server_port),
    }
    roles = [arg for arg in argv if arg != "--ready"] or list(checks)
    unknown = [role for role in roles if role not in checks]
    if unknown:
        print(f"unknown role(s) {unknown}; expected some of {list(checks)}", file=sys.stderr)
        return 2
    for role in roles:
        if checks[role]():
            return 0
    print(f"unhealthy: no answer from {', '.join(roles)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
