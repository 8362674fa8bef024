"""The osrs-diff services: scheduler, fetcher, projector and api, plus the `osrs-diff` CLI."""
