"""Anju hub: ingest, time-series storage, risk detection, device registry, API and dashboards."""
