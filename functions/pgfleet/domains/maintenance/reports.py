"""Maintenance reports: the executions of a time range as a JSON document, a CSV sheet or a PDF.

Pure functions: `build` takes the stored execution records (snake_case dicts, any field missing
or None) and returns the bytes with their content type and file name; it reads nothing and
writes nothing. It does not filter by the time range either: the caller passes the executions
of the range, the range is printed on the report.

Three reports, one row each:
- EXECUTION_SUMMARY: per execution (status, times, rows affected, space reclaimed, error);
- PERFORMANCE_IMPACT: per execution (duration, the impact, the resource usage and its peaks);
- OPTIMIZATION_RESULTS: per result of the executions of kind "optimization" (one per kind of
  work: VACUUM, ANALYZE, REINDEX).

Rows go by start time (those without one last). A value the record lacks is null in JSON, an
empty cell in CSV and a dash in the PDF: never a number made up. The summaries' averages, maxima
and totals are null when no record holds the value. The PDF (landscape A4, reportlab's platypus)
has the summary, a chart of space reclaimed (MB, 2^20 bytes) and duration (s) over time (per
execution up to 40 of them, else per day, else per week) and the rows as a table whose header
repeats on every page; long text is cut there (with an ellipsis), JSON and CSV keep it whole.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pgfleet.core.documents import Report
from pgfleet.core.errors import ValidationFailed

REPORT_TYPES = ("EXECUTION_SUMMARY", "PERFORMANCE_IMPACT", "OPTIMIZATION_RESULTS")
FORMATS = ("JSON", "CSV", "PDF")

CONTENT_TYPES = {"JSON": "application/json", "CSV": "text/csv; charset=utf-8", "PDF": "application/pdf"}
MB = 1024 * 1024

Row = dict[str, Any]


def build(
    report_type: str,
    fmt: str,
    executions: list[dict[str, Any]],
    start: datetime,
    end: datetime,
    generated_at: datetime | None = None,
) -> Report:
    """The report of `executions` (stored records) over [start, end] in `fmt`.

    `report_type` and `fmt` are matched without regard to case; naive datetimes are taken as UTC.
    Raises ValidationFailed (details.field: format, reportType or timeRange)."""
    fmt_key = fmt.upper() if isinstance(fmt, str) else ""
    if fmt_key not in FORMATS:
        raise ValidationFailed(
            f"unknown report format {fmt!r}: one of {', '.join(FORMATS)}", details={"field": "format"}
        )
    type_key = report_type.upper() if isinstance(report_type, str) else ""
    if type_key not in REPORT_TYPES:
        raise ValidationFailed(
            f"unknown report type {report_type!r}: one of {', '.join(REPORT_TYPES)}",
            details={"field": "reportType"},
        )
    range_start, range_end = _parse_time(start), _parse_time(end)
    if range_start is None or range_end is None:
        raise ValidationFailed("the time range needs a start and an end", details={"field": "timeRange"})
    if range_end < range_start:
        raise ValidationFailed("the time range ends before it starts", details={"field": "timeRange"})
    generated = _parse_time(generated_at) or datetime.now(UTC)

    records = _in_time_order([e for e in executions if isinstance(e, dict)])
    spec = _SPECS[type_key]
    rows = spec.rows(records)
    context = _Context(
        type_key, spec, records, rows, spec.summary(records, rows), range_start, range_end, generated
    )
    if fmt_key == "JSON":
        body = _json(context)
    elif fmt_key == "CSV":
        body = _csv(context)
    else:
        body = _pdf(context)
    stem = type_key.lower().replace("_", "-")
    filename = f"maintenance-{stem}-{_stamp(range_start)}-{_stamp(range_end)}.{fmt_key.lower()}"
    return Report(body, CONTENT_TYPES[fmt_key], filename)


# -- values of the records ----------------------------------------------------------------------


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        if text[-1] in "zZ":
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    micro = moment.microsecond
    spec = "seconds" if micro == 0 else "milliseconds" if micro % 1000 == 0 else "microseconds"
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _num(value: object) -> float | int | None:
    """A finite int or float as stored; anything else (None, bool, text, NaN) is no value."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _int(value: object) -> int | None:
    number = _num(value)
    if number is None:
        return None
    if isinstance(number, float):
        return int(number) if number.is_integer() else None
    return number


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    return json.dumps(value, default=str, sort_keys=True)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _execution_id(record: dict[str, Any]) -> str | None:
    return _text(record.get("id") if record.get("id") is not None else record.get("execution_id"))


def _in_time_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(record: dict[str, Any]) -> tuple[bool, datetime, str]:
        moment = _parse_time(record.get("start_time"))
        return moment is None, moment or datetime.min.replace(tzinfo=UTC), _execution_id(record) or ""

    return sorted(records, key=key)


def _mean(values: Iterable[float | int | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(math.fsum(present) / len(present), 3) if present else None


def _max(values: Iterable[float | int | None]) -> float | int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _total(values: Iterable[float | int | None]) -> float | int | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, int) for v in present):
        return sum(present)
    return round(math.fsum(present), 3)


# -- rows and summaries -------------------------------------------------------------------------

EXECUTION_COLUMNS = (
    "executionId", "taskId", "taskName", "taskType", "targetId", "status", "startTime", "endTime",
    "durationSeconds", "rowsAffected", "spaceReclaimedBytes", "errorMessage",
)  # fmt: skip
PERFORMANCE_METRICS = (
    "durationSeconds", "performanceImpact", "cpuUsagePercent", "memoryUsageMB", "diskIOMB",
    "peakCpuPercent", "peakMemoryMB", "peakDiskIOMB",
)  # fmt: skip
PERFORMANCE_COLUMNS = (
    "executionId", "taskId", "taskName", "taskType", "targetId", "status", "startTime", *PERFORMANCE_METRICS,
)  # fmt: skip
OPTIMIZATION_COLUMNS = (
    "executionId", "startTime", "targetId", "type", "objectsProcessed", "spaceReclaimedMB",
    "performanceImprovementPercent", "durationSeconds", "status", "details",
)  # fmt: skip


def _execution_rows(records: list[dict[str, Any]]) -> list[Row]:
    return [
        {
            "executionId": _execution_id(r),
            "taskId": _text(r.get("task_id")),
            "taskName": _text(r.get("task_name")),
            "taskType": _text(r.get("task_type")),
            "targetId": _text(r.get("target_id")),
            "status": _text(r.get("status")),
            "startTime": _iso(_parse_time(r.get("start_time"))),
            "endTime": _iso(_parse_time(r.get("end_time"))),
            "durationSeconds": _num(r.get("duration")),
            "rowsAffected": _int(r.get("rows_affected")),
            "spaceReclaimedBytes": _int(r.get("space_reclaimed")),
            "errorMessage": _text(r.get("error_message")),
        }
        for r in records
    ]


def _execution_summary(records: list[dict[str, Any]], rows: list[Row]) -> dict[str, Any]:
    completed = sum(1 for row in rows if row["status"] == "COMPLETED")
    failed = sum(1 for row in rows if row["status"] == "FAILED")
    by_type: dict[str, int] = {}
    for row in rows:
        key = row["taskType"] or "UNKNOWN"
        by_type[key] = by_type.get(key, 0) + 1
    return {
        "total": len(rows),
        "completed": completed,
        "failed": failed,
        "successRate": round(100 * completed / (completed + failed), 2) if completed + failed else None,
        "avgDurationSeconds": _mean(row["durationSeconds"] for row in rows),
        "totalSpaceReclaimedBytes": _total(row["spaceReclaimedBytes"] for row in rows),
        "byTaskType": dict(sorted(by_type.items())),
    }


def _performance_rows(records: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for r in records:
        usage = _dict(r.get("resource_usage"))
        peaks = _dict(usage.get("peak_values"))
        rows.append(
            {
                "executionId": _execution_id(r),
                "taskId": _text(r.get("task_id")),
                "taskName": _text(r.get("task_name")),
                "taskType": _text(r.get("task_type")),
                "targetId": _text(r.get("target_id")),
                "status": _text(r.get("status")),
                "startTime": _iso(_parse_time(r.get("start_time"))),
                "durationSeconds": _num(r.get("duration")),
                "performanceImpact": _num(r.get("performance_impact")),
                "cpuUsagePercent": _num(usage.get("cpu_usage_percent")),
                "memoryUsageMB": _num(usage.get("memory_usage_mb")),
                "diskIOMB": _num(usage.get("disk_io_mb")),
                "peakCpuPercent": _num(peaks.get("cpu")),
                "peakMemoryMB": _num(peaks.get("memory")),
                "peakDiskIOMB": _num(peaks.get("disk_io")),
            }
        )
    return rows


def _performance_summary(records: list[dict[str, Any]], rows: list[Row]) -> dict[str, Any]:
    summary: dict[str, Any] = {"total": len(rows)}
    for metric in PERFORMANCE_METRICS:
        name = metric[0].upper() + metric[1:]
        summary[f"avg{name}"] = _mean(row[metric] for row in rows)
        summary[f"max{name}"] = _max(row[metric] for row in rows)
    return summary


def _optimizations(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("kind") == "optimization"]


def _optimization_rows(records: list[dict[str, Any]]) -> list[Row]:
    rows = []
    for r in _optimizations(records):
        execution_id, started = _execution_id(r), _iso(_parse_time(r.get("start_time")))
        target = _text(r.get("target_id"))
        results = r.get("optimizations")
        for item in results if isinstance(results, list) else []:
            if not isinstance(item, dict):
                continue
            rows.append(
                {
                    "executionId": execution_id,
                    "startTime": started,
                    "targetId": target,
                    "type": _text(item.get("type")),
                    "objectsProcessed": _int(item.get("objects_processed")),
                    "spaceReclaimedMB": _num(item.get("space_reclaimed_mb")),
                    "performanceImprovementPercent": _num(item.get("performance_improvement_percent")),
                    "durationSeconds": _num(item.get("duration")),
                    "status": _text(item.get("status")),
                    "details": _text(item.get("details")),
                }
            )
    return rows


def _optimization_summary(records: list[dict[str, Any]], rows: list[Row]) -> dict[str, Any]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row["type"] or "UNKNOWN", []).append(row)
    by_type: dict[str, Any] = {}
    for kind, items in sorted(groups.items()):
        statuses: dict[str, int] = {}
        for row in items:
            status = row["status"] or "UNKNOWN"
            statuses[status] = statuses.get(status, 0) + 1
        by_type[kind] = {
            "results": len(items),
            "byStatus": dict(sorted(statuses.items())),
            "objectsProcessed": _total(row["objectsProcessed"] for row in items),
            "spaceReclaimedMB": _total(row["spaceReclaimedMB"] for row in items),
            "durationSeconds": _total(row["durationSeconds"] for row in items),
            "avgPerformanceImprovementPercent": _mean(row["performanceImprovementPercent"] for row in items),
        }
    return {
        "executions": len(_optimizations(records)),
        "results": len(rows),
        "totalObjectsProcessed": _total(row["objectsProcessed"] for row in rows),
        "totalSpaceReclaimedMB": _total(row["spaceReclaimedMB"] for row in rows),
        "totalDurationSeconds": _total(row["durationSeconds"] for row in rows),
        "byType": by_type,
    }


# -- the chart's points: (start, space reclaimed in MB, duration in s) ---------------------------

Point = tuple[datetime, float | None, float | None]


def _execution_points(records: list[dict[str, Any]]) -> list[Point]:
    points = []
    for r in records:
        moment = _parse_time(r.get("start_time"))
        if moment is not None:
            space = _int(r.get("space_reclaimed"))
            points.append((moment, None if space is None else space / MB, _float(r.get("duration"))))
    return points


def _optimization_points(records: list[dict[str, Any]]) -> list[Point]:
    points = []
    for r in _optimizations(records):
        moment = _parse_time(r.get("start_time"))
        if moment is None:
            continue
        results = r.get("optimizations")
        space = _total(
            _num(_dict(i).get("space_reclaimed_mb")) for i in (results if isinstance(results, list) else [])
        )
        points.append((moment, None if space is None else float(space), _float(r.get("duration"))))
    return points


def _float(value: object) -> float | None:
    number = _num(value)
    return None if number is None else float(number)


# -- the reports' specifications ----------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    key: str
    header: str
    width: float  # points; 0: what the others leave of the frame
    kind: str = "text"  # text, time, int, num, mb (bytes shown in MB)


@dataclass(frozen=True)
class _Spec:
    title: str
    columns: tuple[str, ...]
    rows: Callable[[list[dict[str, Any]]], list[Row]]
    summary: Callable[[list[dict[str, Any]], list[Row]], dict[str, Any]]
    points: Callable[[list[dict[str, Any]]], list[Point]]
    pdf_columns: tuple[_Column, ...]
    rows_heading: str
    none_sentence: str


_SPECS = {
    "EXECUTION_SUMMARY": _Spec(
        "Maintenance execution summary", EXECUTION_COLUMNS, _execution_rows, _execution_summary,
        _execution_points,
        (
            _Column("executionId", "Execution", 64), _Column("taskId", "Task", 64),
            _Column("taskName", "Task name", 92), _Column("taskType", "Type", 46),
            _Column("targetId", "Target", 64), _Column("status", "Status", 50),
            _Column("startTime", "Start (UTC)", 70, "time"), _Column("endTime", "End (UTC)", 70, "time"),
            _Column("durationSeconds", "Duration s", 44, "num"), _Column("rowsAffected", "Rows", 46, "int"),
            _Column("spaceReclaimedBytes", "Space MB", 46, "mb"), _Column("errorMessage", "Error", 0),
        ),
        "Executions", "There were no maintenance executions in this time range.",
    ),
    "PERFORMANCE_IMPACT": _Spec(
        "Maintenance performance impact", PERFORMANCE_COLUMNS, _performance_rows, _performance_summary,
        _execution_points,
        (
            _Column("executionId", "Execution", 64), _Column("taskName", "Task name", 0),
            _Column("taskType", "Type", 46), _Column("targetId", "Target", 64),
            _Column("status", "Status", 50), _Column("startTime", "Start (UTC)", 70, "time"),
            _Column("durationSeconds", "Duration s", 44, "num"),
            _Column("performanceImpact", "Impact %", 38, "num"),
            _Column("cpuUsagePercent", "CPU %", 34, "num"), _Column("memoryUsageMB", "Mem MB", 40, "num"),
            _Column("diskIOMB", "Disk IO MB", 44, "num"), _Column("peakCpuPercent", "Peak CPU %", 44, "num"),
            _Column("peakMemoryMB", "Peak mem MB", 48, "num"),
            _Column("peakDiskIOMB", "Peak IO MB", 44, "num"),
        ),
        "Executions", "There were no maintenance executions in this time range.",
    ),
    "OPTIMIZATION_RESULTS": _Spec(
        "Maintenance optimization results", OPTIMIZATION_COLUMNS, _optimization_rows, _optimization_summary,
        _optimization_points,
        (
            _Column("executionId", "Execution", 64), _Column("startTime", "Start (UTC)", 70, "time"),
            _Column("targetId", "Target", 64), _Column("type", "Type", 48),
            _Column("objectsProcessed", "Objects", 38, "int"), _Column("spaceReclaimedMB", "Space MB", 46, "num"),
            _Column("performanceImprovementPercent", "Improvement %", 56, "num"),
            _Column("durationSeconds", "Duration s", 44, "num"), _Column("status", "Status", 50),
            _Column("details", "Details", 0),
        ),
        "Optimization results", "There were no database optimization results in this time range.",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class _Context:
    report_type: str
    spec: _Spec
    records: list[dict[str, Any]]
    rows: list[Row]
    summary: dict[str, Any]
    start: datetime
    end: datetime
    generated_at: datetime


# -- JSON and CSV ------------------------------------------------------------------------------


def _json(ctx: _Context) -> bytes:
    document = {
        "reportType": ctx.report_type,
        "format": "JSON",
        "timeRange": {"start": _iso(ctx.start), "end": _iso(ctx.end)},
        "generatedAt": _iso(ctx.generated_at),
        "summary": ctx.summary,
        "rows": ctx.rows,
    }
    return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")


_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    """A CSV cell: empty for None; text a spreadsheet would run as a formula gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_PREFIXES) else value
    return str(value)


def _csv(ctx: _Context) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(ctx.spec.columns)
    writer.writerows([_cell(row[key]) for key in ctx.spec.columns] for row in ctx.rows)
    return out.getvalue().encode("utf-8")


# -- PDF ---------------------------------------------------------------------------------------

_FONT, _BOLD, _CELL_SIZE, _PAD = "Helvetica", "Helvetica-Bold", 6.5, 2.0
_MARGIN = 30.0
_PER_EXECUTION_MAX, _PER_DAY_MAX = 40, 62
_DASH, _ELLIPSIS = "\u2014", "\u2026"


def _shown(value: object, kind: str) -> str:
    if value is None or value == "":
        return _DASH
    if kind == "time" and isinstance(value, str):
        return value.removesuffix("Z").partition(".")[0].replace("T", " ")
    if kind == "mb" and isinstance(value, int | float):
        return f"{value / MB:,.2f}"
    if kind == "int" and isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float) or (kind == "num" and isinstance(value, int)):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return " ".join(str(value).split())


def _fit(text: str, width: float, font: str, size: float, measure: Callable[[str, str, float], float]) -> str:
    """`text` cut to `width` points (with an ellipsis when cut)."""
    if measure(text, font, size) <= width:
        return text
    keep = max(1, int(len(text) * width / measure(text, font, size)))
    while keep > 1 and measure(text[:keep] + _ELLIPSIS, font, size) > width:
        keep -= 1
    return text[:keep].rstrip() + _ELLIPSIS


def _pdf(ctx: _Context) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.platypus import (
        CondPageBreak,
        LongTable,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    page_width, page_height = landscape(A4)
    frame_width = page_width - 2 * _MARGIN
    styles = getSampleStyleSheet()
    body, heading = styles["BodyText"], styles["Heading2"]
    span = f"{_shown(_iso(ctx.start), 'time')} to {_shown(_iso(ctx.end), 'time')} UTC"

    story: list[Any] = [
        Paragraph(ctx.spec.title, styles["Title"]),
        Paragraph(f"Time range: {span}", body),
        Paragraph(f"Generated at {_shown(_iso(ctx.generated_at), 'time')} UTC by pgfleet", body),
        Spacer(1, 6),
        Paragraph("Summary", heading),
    ]
    story.extend(
        _summary_flowables(ctx, lambda text: Paragraph(text, body), Table, TableStyle, colors, stringWidth)
    )
    story.append(CondPageBreak(260))  # the heading stays with its chart
    story.append(Paragraph("Space reclaimed and duration over time", heading))
    chart, sentence = _chart(ctx, frame_width, colors)
    story.append(Paragraph(sentence, body))
    if chart is not None:
        story.append(chart)
    story.append(CondPageBreak(90))  # the heading stays with the table's first rows
    story.append(Paragraph(ctx.spec.rows_heading, heading))
    if not ctx.rows:
        story.append(Paragraph(ctx.spec.none_sentence, body))
    else:
        story.append(
            Paragraph(
                f"{len(ctx.rows):,} rows by start time (UTC). Long text is cut here ({_ELLIPSIS}); the JSON "
                f"and CSV reports hold it whole. {_DASH}: not recorded.",
                body,
            )
        )
        story.append(_rows_table(ctx, frame_width, LongTable, TableStyle, colors, stringWidth))

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(_FONT, 7)
        canvas.setFillColor(colors.grey)
        canvas.drawString(_MARGIN, 16, f"pgfleet \u00b7 {ctx.spec.title} \u00b7 {span}")
        canvas.drawRightString(page_width - _MARGIN, 16, f"Page {doc.page}")
        canvas.restoreState()

    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out, pagesize=(page_width, page_height), leftMargin=_MARGIN, rightMargin=_MARGIN,
        topMargin=_MARGIN, bottomMargin=_MARGIN + 6, title=ctx.spec.title, author="pgfleet",
        subject=f"{ctx.report_type} {span}", creator="pgfleet",
    )  # fmt: skip
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()


def _small_table(
    data: list[list[str]],
    widths: list[float],
    table: Any,
    style: Any,
    colors: Any,
    numeric_from: int | None = 1,
) -> Any:
    """A summary table: a header row, then right-aligned figures from column `numeric_from` on."""
    commands: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, -1), _FONT, 8),
        ("FONT", (0, 0), (-1, 0), _BOLD, 8),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e2e8f0")),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#a0aec0")),
        ("TOPPADDING", (0, 0), (-1, -1), 1.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
    ]
    if numeric_from is not None:
        commands.append(("ALIGN", (numeric_from, 1), (-1, -1), "RIGHT"))
    result = table(data, colWidths=widths, hAlign="LEFT")
    result.setStyle(style(commands))
    return result


def _summary_flowables(
    ctx: _Context, paragraph: Callable[[str], Any], table: Any, style: Any, colors: Any, measure: Any
) -> list[Any]:
    s = ctx.summary

    def pct(value: object) -> str:
        return _DASH if value is None else f"{_shown(value, 'num')} %"

    if ctx.report_type == "EXECUTION_SUMMARY":
        space = s["totalSpaceReclaimedBytes"]
        by_type = ", ".join(f"{k} {v:,}" for k, v in s["byTaskType"].items()) or _DASH
        data = [
            ["Executions", f"{s['total']:,}"],
            ["Completed", f"{s['completed']:,}"],
            ["Failed", f"{s['failed']:,}"],
            ["Success rate (of finished)", pct(s["successRate"])],
            [
                "Average duration",
                _DASH if s["avgDurationSeconds"] is None else f"{s['avgDurationSeconds']:,.2f} s",
            ],
            ["Space reclaimed", _DASH if space is None else f"{space / MB:,.2f} MB ({space:,} bytes)"],
            ["By task type", _fit(by_type, 470 - 2 * 6, _FONT, 8, measure)],
        ]
        return [
            _small_table([["Figure", "Value"], *data], [150, 470], table, style, colors, numeric_from=None)
        ]
    if ctx.report_type == "PERFORMANCE_IMPACT":
        labels = {
            "durationSeconds": "Duration (s)", "performanceImpact": "Performance impact (%)",
            "cpuUsagePercent": "CPU usage (%)", "memoryUsageMB": "Memory (MB)", "diskIOMB": "Disk IO (MB)",
            "peakCpuPercent": "Peak CPU (%)", "peakMemoryMB": "Peak memory (MB)", "peakDiskIOMB": "Peak disk IO (MB)",
        }  # fmt: skip
        data = [["Metric", "Average", "Maximum"]]
        for metric in PERFORMANCE_METRICS:
            name = metric[0].upper() + metric[1:]
            data.append([labels[metric], _shown(s[f"avg{name}"], "num"), _shown(s[f"max{name}"], "num")])
        return [
            paragraph(f"{s['total']:,} executions; averages and maxima over those that recorded the value."),
            _small_table(data, [150, 80, 80], table, style, colors),
        ]
    data = [["Type", "Results", "By status", "Objects", "Space MB", "Duration s", "Avg improvement %"]]
    for kind, item in s["byType"].items():
        statuses = ", ".join(f"{k} {v:,}" for k, v in item["byStatus"].items())
        data.append(
            [
                _fit(kind, 70 - 12, _FONT, 8, measure), f"{item['results']:,}", _fit(statuses, 170 - 12, _FONT, 8, measure),
                _shown(item["objectsProcessed"], "int"), _shown(item["spaceReclaimedMB"], "num"),
                _shown(item["durationSeconds"], "num"), _shown(item["avgPerformanceImprovementPercent"], "num"),
            ]
        )  # fmt: skip
    data.append(
        [
            "All", f"{s['results']:,}", f"from {s['executions']:,} optimizations",
            _shown(s["totalObjectsProcessed"], "int"), _shown(s["totalSpaceReclaimedMB"], "num"),
            _shown(s["totalDurationSeconds"], "num"), "",
        ]
    )  # fmt: skip
    result = _small_table(data, [70, 50, 170, 60, 60, 60, 90], table, style, colors)
    result.setStyle(style([("ALIGN", (2, 1), (2, -1), "LEFT"), ("FONT", (0, -1), (-1, -1), _BOLD, 8)]))
    return [result]


def _rows_table(ctx: _Context, frame_width: float, table: Any, style: Any, colors: Any, measure: Any) -> Any:
    columns = ctx.spec.pdf_columns
    fixed = sum(c.width for c in columns)
    widths = [c.width or (frame_width - fixed) for c in columns]
    data = [[c.header for c in columns]]
    for row in ctx.rows:
        data.append(
            [
                _fit(_shown(row[c.key], c.kind), w - 2 * _PAD, _FONT, _CELL_SIZE, measure)
                for c, w in zip(columns, widths, strict=True)
            ]
        )
    commands: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, -1), _FONT, _CELL_SIZE),
        ("FONT", (0, 0), (-1, 0), _BOLD, _CELL_SIZE),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e2e8f0")),
        ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.HexColor("#4a5568")),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f7fafc")]),
        ("LEFTPADDING", (0, 0), (-1, -1), _PAD),
        ("RIGHTPADDING", (0, 0), (-1, -1), _PAD),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
    ]
    for i, c in enumerate(columns):
        if c.kind in ("int", "num", "mb"):
            commands.append(("ALIGN", (i, 0), (i, -1), "RIGHT"))
    status = next((i for i, c in enumerate(columns) if c.key == "status"), None)
    if status is not None:
        for n, row in enumerate(ctx.rows, start=1):
            if row["status"] == "FAILED":
                commands.append(("TEXTCOLOR", (status, n), (status, n), colors.HexColor("#c53030")))
    result = table(
        data, colWidths=widths, rowHeights=[_CELL_SIZE + 4] * len(data), repeatRows=1, hAlign="LEFT"
    )
    result.setStyle(style(commands))
    return result


def _buckets(points: list[Point]) -> tuple[list[str], list[float | None], list[float | None], str, str]:
    """Category labels, space (MB) and duration (s) per category, the panels' suffix, the caption."""
    ordered = sorted(points, key=lambda p: p[0])
    if len(ordered) <= _PER_EXECUTION_MAX:
        labels = [p[0].strftime("%m-%d %H:%M") for p in ordered]
        return (
            labels, [p[1] for p in ordered], [p[2] for p in ordered], "per execution",
            f"Per execution ({len(ordered):,}), by start time (UTC). No bar: the execution did not record the value.",
        )  # fmt: skip
    first, last = ordered[0][0].date(), ordered[-1][0].date()
    weekly = (last - first).days + 1 > _PER_DAY_MAX

    def bucket(day: date) -> date:
        return day - timedelta(days=day.weekday()) if weekly else day

    step = timedelta(days=7 if weekly else 1)
    keys, cursor = [], bucket(first)
    while cursor <= bucket(last):
        keys.append(cursor)
        cursor += step
    spaces: dict[date, list[float]] = {k: [] for k in keys}
    durations: dict[date, list[float]] = {k: [] for k in keys}
    for moment, space, duration in ordered:
        key = bucket(moment.date())
        if space is not None:
            spaces[key].append(space)
        if duration is not None:
            durations[key].append(duration)
    unit = "week" if weekly else "day"
    caption = (
        f"Per {unit} (UTC{', weeks from Monday' if weekly else ''}), {len(ordered):,} executions: space "
        f"reclaimed is the {unit}'s total, duration the mean of its executions. No bar: no value that {unit}."
    )
    return (
        [k.isoformat() for k in keys],
        [math.fsum(spaces[k]) if spaces[k] else None for k in keys],
        [math.fsum(durations[k]) / len(durations[k]) if durations[k] else None for k in keys],
        f"per {unit}",
        caption,
    )


def _chart(ctx: _Context, frame_width: float, colors: Any) -> tuple[Any, str]:
    """The chart (None when there is nothing to draw) and the sentence that goes with it."""
    if ctx.report_type == "OPTIMIZATION_RESULTS":
        if not _optimizations(ctx.records):
            return None, "No chart: there were no database optimizations in this time range."
    elif not ctx.records:
        return None, "No chart: there were no maintenance executions in this time range."
    points = ctx.spec.points(ctx.records)
    if not points:
        return None, "No chart: none of the executions has a start time to place it on."
    if all(space is None and duration is None for _, space, duration in points):
        return None, "No chart: none of the executions recorded space reclaimed or a duration."
    labels, spaces, durations, suffix, caption = _buckets(points)

    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing, String

    height, gap = 185.0, 50.0
    panel = (frame_width - gap) / 2
    drawing = Drawing(frame_width, height)
    step = max(1, math.ceil(len(labels) / 24))
    shown = [label if i % step == 0 else "" for i, label in enumerate(labels)]
    panels = (
        (f"Space reclaimed (MB) {suffix}", spaces, "#2b6cb0"),
        (f"Duration (s) {suffix}", durations, "#dd6b20"),
    )
    for n, (title, values, color) in enumerate(panels):
        x = n * (panel + gap)
        drawing.add(
            String(x + panel / 2, height - 10, title, fontName=_BOLD, fontSize=9, textAnchor="middle")
        )
        present = [v for v in values if v is not None]
        if not present:
            drawing.add(
                String(x + panel / 2, height / 2, "Not recorded by any execution", fontName=_FONT, fontSize=8,
                       textAnchor="middle", fillColor=colors.grey)
            )  # fmt: skip
            continue
        chart = VerticalBarChart()
        chart.x, chart.y, chart.width, chart.height = x + 40, 52, panel - 48, height - 72
        chart.data = [values]
        chart.bars[0].fillColor = colors.HexColor(color)
        chart.bars[0].strokeColor = None
        chart.valueAxis.valueMin = 0
        chart.valueAxis.valueMax = None if max(present) > 0 else 1
        chart.valueAxis.labels.fontName, chart.valueAxis.labels.fontSize = _FONT, 7
        chart.valueAxis.gridStrokeColor = colors.HexColor("#e2e8f0")
        chart.valueAxis.visibleGrid = True
        chart.categoryAxis.categoryNames = shown
        chart.categoryAxis.labels.fontName, chart.categoryAxis.labels.fontSize = _FONT, 6
        chart.categoryAxis.labels.angle = 45
        chart.categoryAxis.labels.boxAnchor = "ne"
        chart.categoryAxis.labels.dx, chart.categoryAxis.labels.dy = 2, -2
        chart.categoryAxis.tickDown = 2
        chart.barSpacing = 0.5
        drawing.add(chart)
    return drawing, caption
