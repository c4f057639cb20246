"""`GET /api/v1/capacity/reports/export`: UTILIZATION | FORECASTS | THRESHOLDS |
COMPREHENSIVE as JSON, CSV (a header row, ISO 8601 times) or PDF (reportlab). The PDF draws
each forecast as a chart: its measured history, the forecast line and the 95 % interval band
out to 90 days, with the capacity when there is one."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pgfleet.core.documents import Report
from pgfleet.core.errors import ValidationFailed

REPORT_TYPES = ("UTILIZATION", "FORECASTS", "THRESHOLDS", "COMPREHENSIVE")
CONTENT_TYPES = {"JSON": "application/json", "CSV": "text/csv; charset=utf-8", "PDF": "application/pdf"}
UTILIZATION_COLUMNS = ("timestamp", "targetId", "resourceId", "resourceType", "usage", "capacity",
                       "utilizationPercentage", "unit", "samples")  # fmt: skip
FORECAST_COLUMNS = ("targetId", "resourceId", "resourceType", "patternType", "currentUsage", "capacity",
                    "forecast7d", "forecast30d", "forecast90d", "timeToCapacityDays", "confidenceLevel",
                    "recommendedAction", "analyzedAt")  # fmt: skip
THRESHOLD_COLUMNS = ("thresholdId", "thresholdName", "resourceType", "thresholdPercentage", "thresholdType",
                     "alertEnabled", "triggerCount24h", "lastTriggered", "effectiveness")  # fmt: skip
MAX_CHARTS = 12


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _rows(records: list[dict[str, Any]], columns: tuple[str, ...]) -> list[dict[str, Any]]:
    out = []
    for record in records:
        camel = {_camel(k): v for k, v in record.items()}
        camel.setdefault("thresholdId", record.get("id") if "threshold_name" in record else None)
        out.append({c: camel.get(c) for c in columns})
    return out


def _tables(
    report_type: str, data: dict[str, list[dict[str, Any]]]
) -> dict[str, tuple[tuple[str, ...], list[dict[str, Any]]]]:
    wanted = {"UTILIZATION": ("utilization",), "FORECASTS": ("forecasts",), "THRESHOLDS": ("thresholds",),
              "COMPREHENSIVE": ("utilization", "forecasts", "thresholds")}[report_type]  # fmt: skip
    columns = {
        "utilization": UTILIZATION_COLUMNS,
        "forecasts": FORECAST_COLUMNS,
        "thresholds": THRESHOLD_COLUMNS,
    }
    return {name: (columns[name], _rows(data.get(name) or [], columns[name])) for name in wanted}


def build(
    report_type: str, fmt: str, data: dict[str, list[dict[str, Any]]], start: datetime, end: datetime
) -> Report:
    if fmt not in CONTENT_TYPES:
        raise ValidationFailed(f"unknown format {fmt!r}: one of JSON, CSV, PDF", details={"field": "format"})
    if report_type not in REPORT_TYPES:
        raise ValidationFailed(f"unknown reportType {report_type!r}", details={"field": "reportType"})
    tables = _tables(report_type, data)
    stamp = f"{start.astimezone(UTC):%Y%m%dT%H%M%SZ}-{end.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    filename = f"capacity-{report_type.lower()}-{stamp}.{fmt.lower()}"
    if fmt == "JSON":
        body = json.dumps({
            "reportType": report_type, "format": "JSON", "generatedAt": _iso(datetime.now(UTC)),
            "timeRange": {"start": _iso(start), "end": _iso(end)}, **{name: rows for name, (_, rows) in tables.items()},
        }, default=str).encode()  # fmt: skip
    elif fmt == "CSV":
        body = _csv(tables)
    else:
        body = _pdf(report_type, tables, data.get("forecasts") or [], start, end)
    return Report(body, CONTENT_TYPES[fmt], filename)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _csv(tables: dict[str, tuple[tuple[str, ...], list[dict[str, Any]]]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    for n, (name, (columns, rows)) in enumerate(tables.items()):
        if len(tables) > 1:
            if n:
                writer.writerow([])
            writer.writerow([f"# {name}"])
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row[c] is None else row[c] for c in columns])
    return out.getvalue().encode()


def _chart(forecast: dict[str, Any]) -> Any:
    """History, forecast and its interval band of one series, days on the x axis (0 = now)."""
    from reportlab.graphics.charts.lineplots import LinePlot
    from reportlab.graphics.shapes import Drawing, String
    from reportlab.lib import colors

    analyzed = datetime.fromisoformat(str(forecast["analyzed_at"]).replace("Z", "+00:00"))
    history = [((datetime.fromisoformat(t.replace("Z", "+00:00")) - analyzed).total_seconds() / 86400, float(v))
               for t, v in forecast.get("history") or []]  # fmt: skip
    intervals = forecast.get("intervals") or {}
    ahead = [
        (
            0.0,
            float(forecast["current_usage"]),
            float(forecast["current_usage"]),
            float(forecast["current_usage"]),
        )
    ]
    for key, days in (("7d", 7), ("30d", 30), ("90d", 90)):
        value = forecast.get(f"forecast{key}")
        band = intervals.get(key) or {}
        if value is not None and band.get("low") is not None and band.get("high") is not None:
            ahead.append((float(days), float(value), float(band["low"]), float(band["high"])))
    drawing = Drawing(480, 170)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 50, 25, 410, 120
    lines = [history or [(0.0, float(forecast["current_usage"]))], [(d, v) for d, v, _, _ in ahead],
             [(d, lo) for d, _, lo, _ in ahead], [(d, hi) for d, _, _, hi in ahead]]  # fmt: skip
    if forecast.get("capacity"):
        xs = [p[0] for line in lines for p in line]
        lines.append([(min(xs), float(forecast["capacity"])), (max(xs), float(forecast["capacity"]))])
    plot.data = lines
    for i, (color, width) in enumerate(((colors.black, 1.2), (colors.blue, 1.5), (colors.lightblue, 0.8),
                                        (colors.lightblue, 0.8), (colors.red, 0.8))[: len(lines)]):  # fmt: skip
        plot.lines[i].strokeColor = color
        plot.lines[i].strokeWidth = width
    plot.xValueAxis.labelTextFormat = "%.0f d"
    drawing.add(plot)
    title = f"{forecast['resource_type']} of {forecast['resource_id']}: {forecast.get('pattern_type') or 'no pattern'}"
    drawing.add(String(50, 155, title, fontSize=9))
    drawing.add(
        String(50, 5, "black: measured; blue: forecast; light blue: 95 % interval; red: capacity", fontSize=7)
    )
    return drawing


def _pdf(report_type: str, tables: dict[str, tuple[tuple[str, ...], list[dict[str, Any]]]],
         forecasts: list[dict[str, Any]], start: datetime, end: datetime) -> bytes:  # fmt: skip
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=landscape(A4), title=f"pgfleet capacity {report_type}")
    story: list[Any] = [
        Paragraph(f"pgfleet capacity report: {report_type}", styles["Title"]),
        Paragraph(f"{_iso(start)} to {_iso(end)}; generated {_iso(datetime.now(UTC))}", styles["Normal"]),
        Spacer(1, 8),
    ]
    if report_type in ("FORECASTS", "COMPREHENSIVE"):
        story.append(Paragraph("Forecasts", styles["Heading2"]))
        charted = [f for f in forecasts if f.get("pattern_type")][:MAX_CHARTS]
        if not charted:
            story.append(
                Paragraph(
                    "No series has a forecast yet (run growth/analyze on enough history).", styles["Normal"]
                )
            )
        for forecast in charted:
            story += [
                _chart(forecast),
                Paragraph(str(forecast.get("recommended_action") or ""), styles["Normal"]),
                Spacer(1, 6),
            ]
    for name, (columns, rows) in tables.items():
        story.append(Paragraph(name.capitalize(), styles["Heading2"]))
        if not rows:
            story.append(Paragraph("None in this range.", styles["Normal"]))
            continue
        cells = [list(columns)] + [[_short(row[c]) for c in columns] for row in rows[:2000]]
        table = Table(cells, repeatRows=1)
        table.setStyle(TableStyle([("FONTSIZE", (0, 0), (-1, -1), 6), ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                                   ("GRID", (0, 0), (-1, -1), 0.25, colors.grey)]))  # fmt: skip
        story.append(table)
    doc.build(story)
    return out.getvalue()


def _short(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=7)
    if end <= start:
        raise ValidationFailed("endDate is not after startDate", details={"field": "endDate"})
    return start, end
