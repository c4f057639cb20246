"""Maintenance reports (maintenance.reports): the JSON fields and summary figures of a small
hand-made list, the CSV read back, the PDF rendered by poppler's pdftoppm, the bad inputs."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pgfleet.core.errors import ValidationFailed
from pgfleet.domains.maintenance import reports

START = datetime(2026, 12, 2, 10, 15, tzinfo=UTC)
END = datetime(2026, 12, 3, 10, 15, tzinfo=UTC)
GENERATED = datetime(2026, 12, 3, 10, 20, 5, tzinfo=UTC)
MIB = 1024 * 1024
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
PDFTOPPM = shutil.which("pdftoppm")


def _executions() -> list[dict[str, Any]]:
    """Five records, out of order: one with an offset, a failure, a run still going, an
    optimization with two results, one without a start time or a type."""
    return [
        {
            "id": "mex-000000000001", "task_id": "mtk-000000000001", "task_name": "vacuum orders",
            "task_type": "VACUUM", "kind": "task", "status": "COMPLETED", "target_id": "pgi-000000000001",
            "start_time": "2026-12-02T13:00:00+02:00", "end_time": "2026-12-02T11:00:10Z", "duration": 10.0,
            "rows_affected": 100, "space_reclaimed": 2 * MIB, "performance_impact": 30.0,
            "resource_usage": {"cpu_usage_percent": 20.0, "peak_values": {}}, "error_message": None,
        },
        {
            "id": "mex-000000000002", "task_id": "mtk-000000000002", "task_name": "=analyze everything",
            "task_type": "ANALYZE", "kind": "task", "status": "FAILED", "target_id": "pgi-000000000001",
            "start_time": "2026-12-02T10:30:00Z", "end_time": "2026-12-02T10:30:04Z", "duration": 4.0,
            "space_reclaimed": None, "resource_usage": None, "error_message": "canceling statement due to timeout",
        },
        {
            "id": "mex-000000000003", "task_name": "reindex", "task_type": "VACUUM", "status": "RUNNING",
            "start_time": "2026-12-03T09:00:00Z",
        },
        {
            "id": "mex-000000000004", "task_name": "optimize db", "task_type": "OPTIMIZE", "kind": "optimization",
            "status": "COMPLETED", "target_id": "pgi-000000000002", "start_time": "2026-12-02T12:00:00.250Z",
            "end_time": "2026-12-02T12:00:20.250Z", "duration": 20.0, "space_reclaimed": MIB,
            "performance_impact": 50.0,
            "resource_usage": {
                "cpu_usage_percent": 40.0, "memory_usage_mb": 256.0, "disk_io_mb": 12.5,
                "peak_values": {"cpu": 90.0, "memory": 300.0, "disk_io": 20.0},
            },
            "optimizations": [
                {"type": "VACUUM", "objects_processed": 3, "space_reclaimed_mb": 1.5,
                 "performance_improvement_percent": None, "duration": 12.0, "status": "COMPLETED", "details": "3 tables"},
                {"type": "ANALYZE", "objects_processed": 2, "space_reclaimed_mb": 0.0,
                 "performance_improvement_percent": 4.5, "duration": 8.0, "status": "COMPLETED", "details": "2 tables"},
            ],
        },
        {"id": "mex-000000000005", "status": "COMPLETED"},
    ]  # fmt: skip


def _json(report_type: str, executions: list[dict[str, Any]]) -> dict[str, Any]:
    report = reports.build(report_type, "JSON", executions, START, END, GENERATED)
    assert report.content_type == "application/json"
    return json.loads(report.body)


def _render(body: bytes, tmp_path: Path, name: str) -> list[Path]:
    """The PNG pages pdftoppm makes of `body` at 50 dpi."""
    if PDFTOPPM is None:
        pytest.skip("pdftoppm is missing: apt-get install poppler-utils (make system-packages)")
    pdf = tmp_path / f"{name}.pdf"
    pdf.write_bytes(body)
    subprocess.run([PDFTOPPM, "-png", "-r", "50", str(pdf), str(tmp_path / name)], check=True, timeout=60)
    pages = sorted(tmp_path.glob(f"{name}*.png"))
    assert pages and all(page.stat().st_size > 0 for page in pages)
    return pages


def _pdf_text(body: bytes, tmp_path: Path) -> str | None:
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        return None
    pdf = tmp_path / "text.pdf"
    pdf.write_bytes(body)
    return subprocess.run([pdftotext, str(pdf), "-"], check=True, capture_output=True, text=True).stdout


def test_execution_summary_json_has_the_rows_in_time_order_and_the_figures() -> None:
    doc = _json("EXECUTION_SUMMARY", _executions())
    assert doc["reportType"] == "EXECUTION_SUMMARY" and doc["format"] == "JSON"
    assert doc["timeRange"] == {"start": "2026-12-02T10:15:00Z", "end": "2026-12-03T10:15:00Z"}
    assert doc["generatedAt"] == "2026-12-03T10:20:05Z"
    assert [r["executionId"][-1] for r in doc["rows"]] == ["2", "1", "4", "3", "5"]
    first, second = doc["rows"][0], doc["rows"][1]
    assert list(first) == list(reports.EXECUTION_COLUMNS)
    assert (
        first["errorMessage"] == "canceling statement due to timeout" and first["spaceReclaimedBytes"] is None
    )
    assert second == {
        "executionId": "mex-000000000001", "taskId": "mtk-000000000001", "taskName": "vacuum orders",
        "taskType": "VACUUM", "targetId": "pgi-000000000001", "status": "COMPLETED",
        "startTime": "2026-12-02T11:00:00Z", "endTime": "2026-12-02T11:00:10Z", "durationSeconds": 10.0,
        "rowsAffected": 100, "spaceReclaimedBytes": 2 * MIB, "errorMessage": None,
    }  # fmt: skip
    assert doc["rows"][2]["startTime"] == "2026-12-02T12:00:00.250Z"
    assert doc["rows"][4]["startTime"] is None and doc["rows"][4]["durationSeconds"] is None
    assert doc["summary"] == {
        "total": 5, "completed": 3, "failed": 1, "successRate": 75.0, "avgDurationSeconds": 11.333,
        "totalSpaceReclaimedBytes": 3 * MIB, "byTaskType": {"ANALYZE": 1, "OPTIMIZE": 1, "UNKNOWN": 1, "VACUUM": 2},
    }  # fmt: skip


def test_performance_impact_json_averages_only_what_was_recorded() -> None:
    doc = _json("PERFORMANCE_IMPACT", _executions())
    assert list(doc["rows"][0]) == list(reports.PERFORMANCE_COLUMNS)
    optimize = doc["rows"][2]
    assert optimize["executionId"] == "mex-000000000004"
    assert (optimize["cpuUsagePercent"], optimize["memoryUsageMB"], optimize["diskIOMB"]) == (
        40.0,
        256.0,
        12.5,
    )
    assert (optimize["peakCpuPercent"], optimize["peakMemoryMB"], optimize["peakDiskIOMB"]) == (
        90.0,
        300.0,
        20.0,
    )
    assert doc["rows"][0]["cpuUsagePercent"] is None  # resource_usage None
    s = doc["summary"]
    assert s["total"] == 5
    assert (s["avgPerformanceImpact"], s["maxPerformanceImpact"]) == (40.0, 50.0)
    assert (s["avgCpuUsagePercent"], s["maxCpuUsagePercent"]) == (30.0, 40.0)
    assert (s["avgMemoryUsageMB"], s["maxPeakCpuPercent"], s["avgPeakDiskIOMB"]) == (256.0, 90.0, 20.0)
    assert (s["avgDurationSeconds"], s["maxDurationSeconds"]) == (11.333, 20.0)


def test_optimization_results_json_has_one_row_per_result_and_totals_per_type() -> None:
    doc = _json("OPTIMIZATION_RESULTS", _executions())
    assert [(r["executionId"], r["type"]) for r in doc["rows"]] == [
        ("mex-000000000004", "VACUUM"),
        ("mex-000000000004", "ANALYZE"),
    ]
    assert doc["rows"][0] == {
        "executionId": "mex-000000000004", "startTime": "2026-12-02T12:00:00.250Z", "targetId": "pgi-000000000002",
        "type": "VACUUM", "objectsProcessed": 3, "spaceReclaimedMB": 1.5, "performanceImprovementPercent": None,
        "durationSeconds": 12.0, "status": "COMPLETED", "details": "3 tables",
    }  # fmt: skip
    s = doc["summary"]
    assert (s["executions"], s["results"], s["totalObjectsProcessed"]) == (1, 2, 5)
    assert (s["totalSpaceReclaimedMB"], s["totalDurationSeconds"]) == (1.5, 20.0)
    assert s["byType"]["VACUUM"] == {
        "results": 1, "byStatus": {"COMPLETED": 1}, "objectsProcessed": 3, "spaceReclaimedMB": 1.5,
        "durationSeconds": 12.0, "avgPerformanceImprovementPercent": None,
    }  # fmt: skip
    assert s["byType"]["ANALYZE"]["avgPerformanceImprovementPercent"] == 4.5


def test_csv_reads_back_with_its_header_and_iso_timestamps() -> None:
    report = reports.build("EXECUTION_SUMMARY", "CSV", _executions(), START, END, GENERATED)
    assert report.content_type == "text/csv; charset=utf-8"
    assert report.filename == "maintenance-execution-summary-20261202T101500Z-20261203T101500Z.csv"
    assert report.content_disposition == f'attachment; filename="{report.filename}"'
    reader = csv.DictReader(io.StringIO(report.body.decode("utf-8"), newline=""))
    rows = list(reader)
    assert reader.fieldnames == list(reports.EXECUTION_COLUMNS)
    assert [r["executionId"] for r in rows] == [f"mex-00000000000{n}" for n in (2, 1, 4, 3, 5)]
    assert all(ISO_Z.match(r["startTime"]) for r in rows[:4]) and rows[4]["startTime"] == ""
    assert rows[1]["startTime"] == "2026-12-02T11:00:00Z" and rows[1]["spaceReclaimedBytes"] == str(2 * MIB)
    assert rows[0]["spaceReclaimedBytes"] == "" and rows[3]["endTime"] == ""
    assert rows[0]["taskName"] == "'=analyze everything"  # no formula for the spreadsheet to run
    optimizations = reports.build("OPTIMIZATION_RESULTS", "CSV", _executions(), START, END, GENERATED)
    reader = csv.DictReader(io.StringIO(optimizations.body.decode("utf-8"), newline=""))
    assert reader.fieldnames == list(reports.OPTIMIZATION_COLUMNS)
    assert [r["performanceImprovementPercent"] for r in reader] == ["", "4.5"]


def test_pdf_renders_with_chart_and_a_table_across_pages(tmp_path: Path) -> None:
    report = reports.build("EXECUTION_SUMMARY", "PDF", _executions(), START, END, GENERATED)
    assert report.body.startswith(b"%PDF") and report.content_type == "application/pdf"
    assert report.filename.endswith(".pdf")
    assert len(_render(report.body, tmp_path, "small")) >= 1
    text = _pdf_text(report.body, tmp_path)
    if text is not None:
        assert "Maintenance execution summary" in text and "Space reclaimed (MB) per execution" in text
    many = [
        {
            **_executions()[0],
            "id": f"mex-{i:012x}",
            "start_time": f"2026-12-02T{10 + i // 60:02d}:{i % 60:02d}:00Z",
        }
        for i in range(120)
    ]
    for report_type in reports.REPORT_TYPES:
        body = reports.build(report_type, "PDF", many, START, END, GENERATED).body
        assert body.startswith(b"%PDF")
    pages = _render(
        reports.build("EXECUTION_SUMMARY", "PDF", many, START, END, GENERATED).body, tmp_path, "many"
    )
    assert len(pages) >= 2


def test_unknown_format_and_report_type_are_refused() -> None:
    with pytest.raises(ValidationFailed) as bad_format:
        reports.build("EXECUTION_SUMMARY", "XML", [], START, END)
    assert bad_format.value.details == {"field": "format"}
    with pytest.raises(ValidationFailed) as bad_type:
        reports.build("EVERYTHING", "JSON", [], START, END)
    assert bad_type.value.details == {"field": "reportType"}
    with pytest.raises(ValidationFailed) as backwards:
        reports.build("EXECUTION_SUMMARY", "JSON", [], END, START)
    assert backwards.value.details == {"field": "timeRange"}


def test_no_executions_renders_every_format(tmp_path: Path) -> None:
    for report_type in reports.REPORT_TYPES:
        doc = _json(report_type, [])
        assert doc["rows"] == [] and doc["timeRange"]["start"] == "2026-12-02T10:15:00Z"
        header = reports.build(report_type, "CSV", [], START, END, GENERATED).body.decode("utf-8")
        assert header.strip().split(",") == list(reports._SPECS[report_type].columns)
        pdf = reports.build(report_type, "PDF", [], START, END, GENERATED).body
        assert pdf.startswith(b"%PDF")
        assert len(_render(pdf, tmp_path, report_type.lower())) >= 1
        text = _pdf_text(pdf, tmp_path)
        if text is not None:
            assert "No chart:" in text and "There were no" in text
    summary = _json("EXECUTION_SUMMARY", [])["summary"]
    assert summary["total"] == 0 and summary["successRate"] is None and summary["avgDurationSeconds"] is None
    assert _json("PERFORMANCE_IMPACT", [])["summary"]["maxCpuUsagePercent"] is None
    # executions, but no optimization among them
    assert _json("OPTIMIZATION_RESULTS", _executions()[:3])["summary"]["results"] == 0
