"""Contracts and helpers shared by the osrs-diff services: events, subjects, settings, the
hiscores model (metrics, names, xp table) and the NATS and Postgres helpers."""
