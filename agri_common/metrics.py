"""Prometheus metrics: where a long-running process serves them.

Each module defines its own metrics (prometheus-client's module-level Counter, Gauge,
Histogram in the default registry) next to what it counts; this is the one place that
exposes them. `agri ingest` and `agri gateway run` serve them on a port of their own
(``--metrics-port``); `agri serve` answers ``GET /metrics`` in the API itself.
"""

import prometheus_client


def serve_metrics(port: int | None, host: str = "127.0.0.1") -> None:
    """Serve this process's metrics at http://HOST:PORT/metrics from a daemon thread;
    nothing when ``port`` is None. Loopback by default: metrics say how busy a bank's
    farms are, so exposing them wider is the operator's decision (--metrics-host)."""
    if port is not None:
        prometheus_client.start_http_server(port, addr=host)


def exposition() -> tuple[bytes, str]:
    """The metrics page and its content type, for a web framework to answer with."""
    return prometheus_client.generate_latest(), prometheus_client.CONTENT_TYPE_LATEST
