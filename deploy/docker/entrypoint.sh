#!/bin/sh
# The image's entrypoint: the first argument names what to run (the API when there is none).
# `exec` keeps the service as PID 1, so it receives SIGTERM itself and drains (every service
# handles it), and its command line (/proc/1/cmdline) tells deploy/docker/healthcheck.py which
# service to probe.
set -eu
[ "$#" -gt 0 ] || set -- api
case "$1" in
    api | fetcher | projector | scheduler)
        service="$1"
        shift
        exec python -m "services.$service" "$@"
        ;;
    migrate | sim | rebuild | users)
        exec osrs-diff "$@"
        ;;
    *)
        exec "$@" # anything else as given: `osrs-diff ...`, `python ...`, `sh`
        ;;
esac
