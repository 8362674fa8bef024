"""The image's HEALTHCHECK: GET /health/live when the container runs the API, else pass.

Workers (fetcher, projector, scheduler) serve no port and report nothing a probe could read: a
worker that loses NATS reconnects by itself, one that fails exits, and the restart policy acts
on the exit. A check against NATS or Postgres would mark healthy workers sick during an outage
of either, and restarting them would not help.
"""

import os
import sys
import urllib.request

with open("/proc/1/cmdline", "rb") as cmdline:  # the entrypoint execs the service as PID 1
    args = cmdline.read().split(b"\0")
runs_api = any(arg == b"services.api" or arg.endswith(b"osrs-api") for arg in args)

if runs_api:
    port = os.environ.get("API_PORT", "8000")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=4) as answer:
        sys.exit(0 if answer.status == 200 else 1)
