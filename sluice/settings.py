"""Every limit and default in one place, each a named setting (DESIGN: "Every limit ... is a named setting").

Values can be overridden with environment variables named SLUICE_<FIELD> (upper case),
e.g. SLUICE_DEDUP_WINDOW_SECONDS=3600. docs/configuration.md lists them with their defaults.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

KB = 1024


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("SLUICE_DATA_DIR", "./sluice-data")))
    host: str = "127.0.0.1"
    port: int = 8088
    # Base URL printed in webhook URLs; defaults to http://host:port.
    public_url: str = ""
    # The admin API (and, later, the console): a listener of its own, so exposing ingest never exposes it.
    admin_host: str = "127.0.0.1"
    admin_port: int = 8089

    # Processes (`sluice serve`): ingest processes sharing the ingest port; 0 means one per core.
    workers: int = 0
    # The delivery process (loader, workers, admin) runs at this nice value, so that under contention ingest,
    # whose senders wait for their answer, goes first, and a backlog drains when ingest is quiet.
    deliver_nice: int = 10
    # A child that dies is restarted at once, then after doubling delays up to this, while it keeps dying.
    restart_backoff_max_seconds: float = 10.0
    # How often the delivery process looks for new events in the log (it is written by another process).
    log_poll_seconds: float = 0.05
    # How often the delivery process publishes what /health and /metrics show about destinations.
    status_interval_seconds: float = 0.5

    # Backpressure on what the machine can hold (never on a destination): /v1 answers 503, Drip's webhook 429.
    min_free_disk_bytes: int = 1024 * 1024 * 1024  # free space the data dir's disk keeps; 0: no check
    max_log_bytes: int = 0  # pages in use in log.db; 0: no limit
    pressure_check_seconds: float = 1.0  # how often each ingest process looks (and so how soon it recovers)
    retry_after_seconds: int = 30  # the Retry-After of those answers

    # The HTTP edge, for both listeners: what a client may hold of the server before it is cut off.
    max_header_bytes: int = 32 * KB  # request line and headers together; more gets 431
    max_header_count: int = 100  # more gets 431
    header_timeout_seconds: float = 10.0  # from connecting (or the previous answer) to the end of the headers
    body_timeout_seconds: float = 30.0  # from the end of the headers to the end of the body
    keep_alive_timeout_seconds: float = 5.0  # an idle kept-alive connection is closed after this
    max_connections: int = 1000  # per listener; a connection beyond it gets 503 and is closed

    # Browsers (analytics.js) and proxies. How long a browser may cache a CORS preflight's answer (Chromium
    # caps it at 7,200 s, Firefox at 86,400 s), so that a page sends one OPTIONS per path, not one per event.
    cors_max_age_seconds: int = 7200
    # Proxies whose X-Forwarded-For (and X-Forwarded-Proto) is believed: comma-separated addresses or networks
    # (`10.0.0.5, 172.16.0.0/12`). Empty: the connection's peer is the client, and the header is ignored, so a
    # client cannot choose its own context.ip.
    trusted_proxies: str = ""

    # Segment's documented limits (reference/segment-http-api.md).
    max_message_bytes: int = 32 * KB
    max_request_bytes: int = 500 * KB
    max_batch_events: int = 2500
    max_message_id_chars: int = 100
    # Segment's Webhooks (Actions) destination batches up to 1,000 events by default and 4,000 at most per request,
    # more than a Tracking API batch: its path has limits of its own.
    max_segment_webhook_bytes: int = 8 * 1024 * KB
    max_segment_webhook_events: int = 4000

    # Log.
    dedup_window_seconds: int = 24 * 3600
    log_retention_seconds: int = 7 * 24 * 3600
    prune_interval_seconds: float = 60.0  # how often delivered events past the retention are dropped

    # Backends (docs/scale-out.md), each chosen by its URL's scheme: empty means the embedded default in the
    # data dir (log.db, catalog.db). `nats://h1:4222,h2:4222` puts the log in a JetStream stream;
    # `postgresql://...` puts the catalog and the delivery state in PostgreSQL.
    log: str = ""
    catalog: str = ""
    # What `sluice serve` runs with the scale-out backends: ingest, deliver (workers and the admin API), or all.
    role: str = "all"

    # The JetStream log (sluice/log/nats.py): the stream is created with these when it does not exist yet.
    nats_stream: str = "SLUICE"
    nats_replicas: int = 1  # 3 on a cluster: an acknowledged append is then on a quorum of 2
    nats_duplicate_window_seconds: float = 120.0  # JetStream keeps every id of the window in memory
    nats_max_bytes: int = -1  # the stream's size limit; when reached, ingest answers 503 (never drops)
    nats_request_timeout_seconds: float = 5.0  # a publish's acknowledgement, or any JetStream request
    nats_ack_wait_seconds: float = 60.0  # a destination cursor's unacknowledged position is offered again after
    nats_head_poll_seconds: float = 0.1  # how often an idle delivery worker asks the stream for new events

    # The PostgreSQL catalog: changes arrive by NOTIFY at once; this re-check covers a lost notification.
    catalog_poll_seconds: float = 5.0

    # Warehouse caps (docs/warehouse-schema.md): what is over them goes to discards. 500 columns stay
    # well under PostgreSQL's 1,600 and keep a row of 8-byte values inside its 8 KB page.
    max_columns_per_table: int = 500
    max_event_tables: int = 1000

    # Loading: a batch is flushed at most this long after its first event arrived.
    load_linger_seconds: float = 0.5
    load_batch_max_events: int = 20_000
    # ... and at most this many bytes of messages: a batch's memory stays bounded whatever the events' size.
    load_batch_max_bytes: int = 32 * 1024 * 1024
    # The embedded warehouse's DuckDB: threads (one leaves the other cores to ingest) and memory; 0: DuckDB's default.
    warehouse_threads: int = 1
    warehouse_memory_limit_mb: int = 0

    # Delivery to destinations.
    retry_window_seconds: int = 4 * 3600
    retry_initial_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    delivery_timeout_seconds: float = 10.0

    # A destination failing for this long shows as "degraded" in /health (and stalled in status).
    stall_seconds: float = 60.0

    # Admin SQL (sluice query, /admin/query): read-only, and bounded so that one query never stalls loading.
    query_time_limit_seconds: float = 30.0
    query_max_rows: int = 10_000

    # Drip's REST API (connect-drip, the catalog sync, reconcile): its base URL, and how often the catalog is synced.
    drip_api_url: str = "https://api.getdrip.com"
    drip_sync_interval_seconds: float = 3600.0
    # The web console (docs/console.md): how long a signed-in session lasts, and a `sluice console` link.
    console_session_seconds: float = 12 * 3600
    console_link_seconds: float = 300.0

    # Routes POST /bench/noop (the benchmark's no-op baseline on the same stack).
    bench_endpoints: bool = False

    def __post_init__(self) -> None:
        self.trusted_proxy_list  # noqa: B018 - a typo is refused at start, never a proxy silently not trusted

    @property
    def trusted_proxy_list(self) -> list[str]:
        """`trusted_proxies` as a list, each entry checked to be an IP address or network."""
        entries = [e.strip() for e in self.trusted_proxies.split(",") if e.strip()]
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted_proxies: {entry!r} is not an IP address or network (like 10.0.0.5 or 172.16.0.0/12)"
                ) from None
        return entries

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin_host}:{self.admin_port}"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from SLUICE_* environment variables, then explicit overrides (CLI flags)."""
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"SLUICE_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(getattr(cls(), f.name))
            if kind is bool:
                values[f.name] = raw.lower() in ("1", "true", "yes")
                continue
            try:
                values[f.name] = Path(raw) if f.name == "data_dir" else kind(raw)
            except ValueError:
                raise ValueError(f"SLUICE_{f.name.upper()} must be a {kind.__name__}, got {raw!r}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(str(values["data_dir"]))
        return cls(**values)  # type: ignore[arg-type]
