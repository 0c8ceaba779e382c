"""Observability: Prometheus metrics (one module of names), JSON logs, health and the admin HTTP listener."""
