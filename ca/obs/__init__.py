"""Observability (issue #16, point 3): JSON-lines logs (``logs``) and the service's Prometheus
metrics (``metrics``). ``logs`` is pure standard library, so clients may use it too."""
