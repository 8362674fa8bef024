"""The image's HEALTHCHECK: GET /health/live of the API, or /live of a worker's metrics server
(OSRS_METRICS_PORT, else the worker's own default), whichever service the container runs.

Liveness only: a check against NATS or Postgres would mark healthy services sick during an
outage of either, and restarting them would not help (each reconnects by itself). Anything else
the image runs (`migrate`, `sim`, a shell) passes, as does a worker whose metrics server is off
(OSRS_METRICS_PORT=0).
"""

import os
import sys
import urllib.request

from shared.settings import Settings

with open("/proc/1/cmdline", "rb") as cmdline:  # the entrypoint execs the service as PID 1
    args = cmdline.read().split(b"\0")


def runs(name: str) -> bool:
    """`python -m services.NAME` (the entrypoint's way) or the console script `osrs-NAME`."""
    return f"services.{name}".encode() in args or any(
        arg.endswith(f"osrs-{name}".encode()) for arg in args
    )


service = next((s for s in ("api", "fetcher", "projector", "scheduler") if runs(s)), None)
settings = Settings.from_env(os.environ)
if service == "api":
    url = f"http://127.0.0.1:{settings.api_port}/health/live"
elif service and settings.metrics_port_for(service):
    # The server listens on OSRS_METRICS_HOST: the image's 0.0.0.0 answers on the loopback.
    host = settings.metrics_host
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    url = f"http://{host}:{settings.metrics_port_for(service)}/live"
else:
    sys.exit(0)
with urllib.request.urlopen(url, timeout=4) as answer:
    sys.exit(0 if answer.status == 200 else 1)
