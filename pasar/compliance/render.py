"""Rendering a compliance report: one CSV file per table and an HTML page with charts (matplotlib PNGs, embedded
as base64, so the page is one self-contained file). Pure functions of :class:`ReportData`: no database here."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from pasar.compliance.models import REPORT_TABLES, RenderedReport, ReportData, ReportFile

HTML_NAME = "report.html"
HTML_ROWS = 200  # rows per table shown in the page; the CSV files hold them all
_HIDDEN = frozenset({"tenant_id", "events", "details"})  # in the CSV files, not in the page


def cell(value: Any) -> str:
    """A value as report text: exact decimals, UTC ISO times, JSON for structures."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date | Decimal | UUID):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_bytes(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(column)) for column in columns])
    return buffer.getvalue().encode()


def _columns(data: ReportData, table: str) -> list[str]:
    rows = data.rows(table)
    return list(rows[0]) if rows else ["tenant_id"]


# Charts --------------------------------------------------------------------------------------------------------


def _bar_chart(title: str, labels: Sequence[str], values: Sequence[float], xlabel: str) -> str | None:
    """A horizontal bar chart as a base64 PNG (None when there is nothing to draw)."""
    if not labels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, max(1.6, 0.35 * len(labels) + 1)), dpi=100)
    try:
        axes.barh(list(labels)[::-1], list(values)[::-1], color="#2f6f9f")
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    finally:
        plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _line_chart(title: str, days: Sequence[date], values: Sequence[float], ylabel: str) -> str | None:
    if not days:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 2.8), dpi=100)
    try:
        positions = list(range(len(days)))
        axes.plot(positions, list(values), marker="o", color="#2f6f9f")
        axes.set_xticks(positions, [day.isoformat() for day in days])
        axes.axhline(0, color="#999999", linewidth=0.8)
        axes.set_title(title)
        axes.set_ylabel(ylabel)
        figure.autofmt_xdate()
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    finally:
        plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _totals(rows: Iterable[dict[str, Any]], key: str, value: str) -> list[tuple[str, float]]:
    sums: dict[str, float] = defaultdict(float)
    for row in rows:
        sums[cell(row[key])] += float(row[value] or 0)
    return sorted(sums.items(), key=lambda item: (-item[1], item[0]))[:15]


def charts(data: ReportData) -> list[tuple[str, str]]:
    """(caption, base64 PNG) of each chart that has data."""
    made: list[tuple[str, str | None]] = []
    notional = _totals(data.rows("activity"), "symbol", "notional")
    made.append(
        (
            "Traded notional by instrument",
            _bar_chart("Notional by instrument", [k for k, _ in notional], [v for _, v in notional], "currency units"),
        )
    )
    alerts = _totals(({"type": row["alert_type"], "n": 1} for row in data.rows("alerts")), "type", "n")
    made.append(
        (
            "Surveillance alerts by type",
            _bar_chart("Alerts by type", [k for k, _ in alerts], [v for _, v in alerts], "alerts"),
        )
    )
    denials = _totals(data.rows("risk_denials"), "reject_reason", "denials")
    made.append(
        (
            "Pre-trade risk denials by reason",
            _bar_chart("Denials by reason", [k for k, _ in denials], [v for _, v in denials], "denials"),
        )
    )
    pnl = data.rows("daily_pnl")
    made.append(
        (
            "Daily net P&L",
            _line_chart(
                "Net P&L per day", [row["pnl_date"] for row in pnl], [float(row["net_pnl"]) for row in pnl], "net P&L"
            ),
        )
    )
    return [(caption, png) for caption, png in made if png is not None]


# HTML ----------------------------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2733; }
h1 { margin-bottom: 0.2rem; } .meta { color: #5b6673; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #d5dbe1; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #eef2f6; } .summary td:first-child { font-weight: 600; }
figure { display: inline-block; margin: 0 1rem 1rem 0; } figcaption { color: #5b6673; font-size: 0.85rem; }
.empty { color: #5b6673; font-style: italic; }
"""


def _table_html(rows: Sequence[dict[str, Any]], csv_name: str) -> str:
    if not rows:
        return '<p class="empty">None in this period.</p>'
    columns = [column for column in rows[0] if column not in _HIDDEN]
    head = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(row.get(column)))}</td>" for column in columns) + "</tr>"
        for row in rows[:HTML_ROWS]
    )
    more = (
        f'<p class="empty">{len(rows) - HTML_ROWS} more rows in {html.escape(csv_name)}.</p>'
        if len(rows) > HTML_ROWS
        else ""
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def summary_of(data: ReportData) -> dict[str, Any]:
    alerts = data.rows("alerts")
    return {
        "orders": sum(int(row["orders"]) for row in data.rows("activity")),
        "fills": sum(int(row["fills"]) for row in data.rows("activity")),
        "notional": str(sum((Decimal(row["notional"]) for row in data.rows("activity")), Decimal(0))),
        "alerts": len(alerts),
        "open_alerts": sum(1 for row in alerts if row["status"] != "closed"),
        "high_severity_alerts": sum(1 for row in alerts if row["severity"] == "high"),
        "risk_denials": sum(int(row["denials"]) for row in data.rows("risk_denials")),
        "limit_events": len(data.rows("limit_events")),
        "best_execution_outliers": sum(1 for row in data.rows("best_execution") if row["is_outlier"]),
    }


def html_page(data: ReportData, summary: dict[str, Any], generated_at: datetime) -> str:
    title = f"Compliance report — {data.tenant_name} — {data.period}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>Tenant {html.escape(data.tenant_slug)} · period {data.period} (WIB months) · generated "
        f"{html.escape(cell(generated_at))} · surveillance thresholds in each alert's evidence</p>",
        "<h2>Summary</h2><table class='summary'>",
        *(f"<tr><td>{html.escape(key)}</td><td>{html.escape(cell(value))}</td></tr>" for key, value in summary.items()),
        "</table>",
    ]
    figures = charts(data)
    if figures:
        parts.append("<h2>Charts</h2>")
        parts += [
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{png}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            for caption, png in figures
        ]
    for table, heading in REPORT_TABLES:
        csv_name = f"{table}.csv"
        parts.append(f"<h2>{html.escape(heading)}</h2><p class='meta'>Data: <a href='{csv_name}'>{csv_name}</a></p>")
        parts.append(_table_html(data.rows(table), csv_name))
    parts.append("</body></html>")
    return "\n".join(parts)


# Files ---------------------------------------------------------------------------------------------------------


def _file(name: str, payload: bytes, media_type: str) -> ReportFile:
    return ReportFile(name, len(payload), hashlib.sha256(payload).hexdigest(), media_type)


def write_report(data: ReportData, directory: Path, *, generated_at: datetime | None = None) -> RenderedReport:
    """Write the CSV files and the HTML page to ``directory``, replacing what was there (built in a sibling
    temporary directory and moved into place, so a reader never sees half a report)."""
    generated_at = generated_at or datetime.now(UTC)
    summary = summary_of(data)
    payloads: list[tuple[str, bytes, str]] = [
        (f"{table}.csv", csv_bytes(data.rows(table), _columns(data, table)), "text/csv") for table, _ in REPORT_TABLES
    ]
    payloads.insert(0, (HTML_NAME, html_page(data, summary, generated_at).encode(), "text/html"))
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        for name, payload, _ in payloads:
            (staging / name).write_bytes(payload)
        if directory.exists():
            retired = directory.with_name(f".{directory.name}-old-{os.getpid()}")
            shutil.rmtree(retired, ignore_errors=True)
            directory.rename(retired)
            staging.rename(directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = tuple(_file(name, payload, media_type) for name, payload, media_type in payloads)
    checksum = hashlib.sha256("".join(f"{f.name}:{f.sha256}\n" for f in files).encode()).hexdigest()
    return RenderedReport(directory, files, checksum, summary)
