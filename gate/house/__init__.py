"""The house-count service: ingest, counts, attendance log, dashboard, Home Assistant."""
