"""A setting's value checked against its pg_settings row (pgfleet.domains.system.configuration):
units converted into the setting's own, ranges and enum values enforced with what is allowed
in the message, and the settings no API caller may touch refused by name."""

from __future__ import annotations

import pytest

from pgfleet.core.errors import ValidationFailed
from pgfleet.domains.system import configuration as c

WORK_MEM = ("work_mem", "4096", "kB", "integer", "64", "2147483647", None)
SHARED_BUFFERS = ("shared_buffers", "16384", "8kB", "integer", "16", "1073741823", None)
RANDOM_PAGE_COST = ("random_page_cost", "4", None, "real", "0", "1.79769e+308", None)
SYNCHRONOUS_COMMIT = (
    "synchronous_commit",
    "on",
    None,
    "enum",
    None,
    None,
    ["local", "remote_write", "on", "off"],
)
TIMEOUT = ("statement_timeout", "0", "ms", "integer", "0", "2147483647", None)


@pytest.mark.parametrize(
    ("row", "value", "written"),
    [
        (WORK_MEM, "8MB", "8192kB"),
        (WORK_MEM, "8192", "8192"),
        (WORK_MEM, "0.5MB", "512kB"),
        (SHARED_BUFFERS, "256MB", "262144kB"),
        (RANDOM_PAGE_COST, "1.5", "1.5"),
        (SYNCHRONOUS_COMMIT, "OFF", "off"),
        (TIMEOUT, "2s", "2000ms"),
        (TIMEOUT, "1min", "60000ms"),
    ],
)
def test_values_are_written_in_the_settings_own_unit(row: tuple, value: str, written: str) -> None:  # type: ignore[type-arg]
    assert c.normalized(row, value)[0] == written


@pytest.mark.parametrize(
    ("row", "value", "said"),
    [
        (WORK_MEM, "4TB", "outside its range"),
        (WORK_MEM, "5 apples", "not a memory unit"),
        (WORK_MEM, "32", "outside its range"),
        (RANDOM_PAGE_COST, "fast", "not a number"),
        (SYNCHRONOUS_COMMIT, "sometimes", "local, remote_write, on, off"),
        (TIMEOUT, "1.5ms", "not a whole number"),
    ],
)
def test_bad_values_name_the_setting_and_what_it_allows(row: tuple, value: str, said: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationFailed) as caught:
        c.normalized(row, value)
    assert said in str(caught.value) and row[0] in str(caught.value) and "allowed" in str(caught.value)


@pytest.mark.parametrize(
    "name",
    ["archive_cleanup_command", "recovery_end_command", "ssl_passphrase_command", "shared_preload_libraries",
     "session_preload_libraries", "dynamic_library_path", "ssl_cert_file", "fsync", "full_page_writes", "wal_level",
     "port", "archive_mode", "data_directory", "log_directory", "superuser_reserved_connections"],
)  # fmt: skip
def test_settings_no_caller_may_touch(name: str) -> None:
    assert c.forbidden(name)


@pytest.mark.parametrize(
    "name", ["work_mem", "max_connections", "shared_buffers", "random_page_cost", "autovacuum_naptime"]
)
def test_tuning_settings_are_allowed(name: str) -> None:
    assert not c.forbidden(name)
