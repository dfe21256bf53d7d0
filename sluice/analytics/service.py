"""The one entry point of the reports for the CLI, the JSON API and the console: options in as strings
(named as the CLI's), JSON rows out, a `ReportError` with a message for the user when an option is wrong."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

from sluice.analytics.attribution import MODELS, NoConversions, attribution
from sluice.analytics.email_events import email_schemas
from sluice.analytics.email_report import GROUPS, email_report
from sluice.analytics.periods import PeriodError, parse_duration, parse_time
from sluice.analytics.reader import Reader
from sluice.analytics.readers import reader_factory
from sluice.analytics.reconcile import reconcile
from sluice.settings import Settings
from sluice.warehouse.readonly import QueryLimits

KINDS = ("email", "attribution", "reconcile")
DEFAULTS = {"since": "30d", "window": "5d", "model": "last", "by": "campaign"}
PARAMS: dict[str, frozenset[str]] = {
    "email": frozenset({"source", "warehouse", "by", "since", "until"}),
    "attribution": frozenset({"source", "warehouse", "by", "since", "until", "conversion", "value", "window",
                              "model"}),
    "reconcile": frozenset({"source", "since", "until"}),
}
RECONCILE_SINCE = "7d"
ATTRIBUTION_GROUPS = ("campaign", "email")


class ReportError(ValueError):
    """A report asked for with a wrong option; the message is meant for the user."""


class SourceLookup(Protocol):
    def get_source(self, ref: str) -> Any: ...


@dataclass
class ReportContext:
    """`reader(None)` is the embedded warehouse; `reader(name)` a warehouse destination by id or name."""

    catalog: SourceLookup
    reader: Callable[[str | None], Reader]
    # Drip's own email metrics for a source's connected account and a range of days (reconcile).
    drip_metrics: Callable[[Any, date, date], dict[str, Any]] | None = None


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = params.get(name) or DEFAULTS[name]
    if value not in allowed:
        raise ReportError(f"--{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def run_report(kind: str, params: Mapping[str, str], context: ReportContext,
               now: datetime | None = None) -> list[dict[str, Any]]:
    if kind not in KINDS:
        raise ReportError(f"no report {kind!r}: one of {', '.join(KINDS)}")
    unknown = sorted(set(params) - PARAMS[kind])
    if unknown:
        takes = ", ".join(sorted(PARAMS[kind]))
        raise ReportError(f"the {kind} report takes no {', '.join(unknown)} (it takes {takes})")
    now = now or datetime.now(UTC)
    if kind == "reconcile":
        return _reconcile(params, context, now)
    try:
        since = parse_time(params.get("since") or DEFAULTS["since"], "--since", now)
        until = parse_time(params["until"], "--until", now) if params.get("until") else now
    except PeriodError as e:
        raise ReportError(str(e)) from None
    if since >= until:
        raise ReportError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    try:
        reader = context.reader(params.get("warehouse") or None)
    except (LookupError, ValueError) as e:
        raise ReportError(str(e)) from None
    schemas = _schemas(params.get("source"), context, reader)
    if kind == "email":
        return email_report(reader, schemas, _choice(params, "by", tuple(GROUPS)), since, until)
    conversion = (params.get("conversion") or "").strip()
    if not conversion:
        raise ReportError('--conversion is required: the event that counts as a conversion, e.g. "Order Completed"')
    try:
        window = parse_duration(params.get("window") or DEFAULTS["window"], "--window")
    except PeriodError as e:
        raise ReportError(str(e)) from None
    try:
        return attribution(reader, schemas, conversion, (params.get("value") or "").strip() or None, window,
                           _choice(params, "model", MODELS), _choice(params, "by", ATTRIBUTION_GROUPS), since, until)
    except NoConversions as e:
        raise ReportError(str(e)) from None


def _reconcile(params: Mapping[str, str], context: ReportContext, now: datetime) -> list[dict[str, Any]]:
    """Whole UTC days, as Drip's metrics endpoint takes them: from --since's day to --until's (today)."""
    if not params.get("source"):
        raise ReportError("--source is required: the Drip source whose account to compare with")
    try:
        first = parse_time(params.get("since") or RECONCILE_SINCE, "--since", now).date()
        last = parse_time(params["until"], "--until", now).date() if params.get("until") else now.date()
    except PeriodError as e:
        raise ReportError(str(e)) from None
    if first > last:
        raise ReportError(f"--since ({first}) must not be after --until ({last})")
    try:
        source = context.catalog.get_source(params["source"])
    except ValueError as e:
        raise ReportError(str(e)) from None
    if context.drip_metrics is None:
        raise ReportError("this process cannot reach Drip's API")
    drip = context.drip_metrics(source, first, last)
    start = datetime.combine(first, time(), UTC)
    end = datetime.combine(last + timedelta(days=1), time(), UTC)
    return reconcile(context.reader(None), [source.schema], drip, start, end)


def _schemas(source: str | None, context: ReportContext, reader: Reader) -> list[str]:
    """The source's schema, or every schema that holds email events."""
    if not source:
        return email_schemas(reader.columns())
    try:
        return [context.catalog.get_source(source).schema]
    except ValueError as e:  # CatalogError: no such source
        raise ReportError(str(e)) from None


def drip_metrics(settings: Settings) -> Callable[[Any, date, date], dict[str, Any]]:
    """Drip's metrics endpoint for a source's connected account (sluice/sources/drip_store.py)."""
    from sluice.sources.drip_api import DripAPI, DripAPIError
    from sluice.sources.drip_store import DripStore

    def fetch(source: Any, first: date, last: date) -> dict[str, Any]:
        connection = DripStore(settings.data_dir).get(source.id)
        if connection is None:
            raise ReportError(f"source {source.schema!r} is not connected to a Drip account:"
                              " `sluice sources connect-drip` first")
        try:
            with DripAPI(connection.account_id, connection.api_token, settings.drip_api_url) as api:
                answer = api.request("GET", "/metrics/email", params={"start_date": first.isoformat(),
                                                                      "end_date": last.isoformat()})
        except DripAPIError as e:
            raise ReportError(str(e)) from None
        return dict(answer or {})

    return fetch


def report_service(catalog: Any, embedded: Callable[[], Reader], limits: QueryLimits,
                   settings: Settings | None = None) -> Callable[[str, Mapping[str, str]], list[dict[str, Any]]]:
    """`AdminServices.reports` and the CLI's direct path: reports over the embedded warehouse (`embedded()`
    gives its reader) or a warehouse destination of `catalog`; with `settings`, reconcile too."""
    context = ReportContext(catalog, reader_factory(catalog, embedded, limits),
                            drip_metrics(settings) if settings is not None else None)
    return lambda kind, params: run_report(kind, params, context)
