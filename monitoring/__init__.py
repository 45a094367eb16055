"""Prometheus metrics bundle, /metrics and health endpoints, alert rules and dashboards."""
