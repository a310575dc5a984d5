"""Times on the driver: always UTC-aware, whatever the Python process's local zone (TZ).

Spark hands timestamps to Python as naive datetimes in the *process's* local time, and reads a
naive datetime literal in that same local time. A driver that took `max(ts)` through `.first()`
and put a cut-off back with `F.lit` would move the cut-off by the process's UTC offset. So the
driver reads timestamps as epoch microseconds and writes literals from UTC-aware datetimes; a
naive datetime given to these helpers means UTC (the tables' zone).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column
from pyspark.sql import functions as F

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def utc(value: dt.datetime) -> dt.datetime:
    """`value` as a UTC-aware datetime; a naive one is taken to be UTC already."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def from_micros(micros: int) -> dt.datetime:
    """The UTC-aware datetime of epoch microseconds (what `F.unix_micros` returns)."""
    return EPOCH + dt.timedelta(microseconds=micros)


def day_start(day: dt.date) -> dt.datetime:
    """Midnight UTC at the start of `day`."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def ts_literal(value: dt.datetime) -> Column:
    """A timestamp literal for `value` (naive = UTC), independent of the process's zone."""
    return F.timestamp_micros(F.lit((utc(value) - EPOCH) // dt.timedelta(microseconds=1)))
