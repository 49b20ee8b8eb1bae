"""Parameters parse exactly what the OpenAPI document promises, and nothing else."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.params import ParamError, area_param, int_param, parse_date, parse_datetime
from api.problems import Problem


def test_dates_are_full_dates_only() -> None:
    assert parse_date("2021-08-01") == date(2021, 8, 1)
    for bad in (
        "20210801",
        "2021-8-1",
        "2021-02-30",
        "2021-08-01T00:00:00Z",
        " 2021-08-01",
        "0001-01-01",
        "9999-12-31",
        "２０２１-08-01",
    ):
        with pytest.raises(ParamError):
            parse_date(bad)


def test_date_times_are_rfc3339_with_a_zone() -> None:
    assert parse_datetime("2021-08-01T10:00:00Z") == datetime(2021, 8, 1, 10, tzinfo=UTC)
    assert parse_datetime("2021-08-01t17:00:00.5+07:00") == datetime(
        2021, 8, 1, 10, 0, 0, 500000, tzinfo=UTC
    )
    assert parse_datetime("2016-12-31T23:59:60Z").second == 59  # a leap second
    for bad in (
        "2021-08-01",
        "2021-08-01T10:00:00",
        "2021-08-01 10:00:00Z",
        "2021-08-01T10:00Z",
        "2021-08-01T25:00:00Z",
        "2021-08-01T10:00:00+24:00",
        "0001-01-01T00:00:00+01:00",
    ):
        with pytest.raises(ParamError):
            parse_datetime(bad)


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-3, minutes=-30))]
        ),
    )
)
def test_any_rfc3339_time_round_trips(moment: datetime) -> None:
    assert parse_datetime(moment.isoformat()) == moment


def test_integers_are_digits_within_bounds() -> None:
    limit = int_param("limit", 1, 500, 100)
    assert limit.read("7") == 7 and limit.read(None) == 100
    for bad in ("0", "501", "+5", "5_0", " 5", "1.5", "-1", "", "٣"):
        with pytest.raises(Problem) as e:
            limit.read(bad)
        assert e.value.kind.slug == "invalid-parameter"
        assert e.value.extra == {"parameter": "limit"}


def test_areas_are_the_nation_or_one_of_63_provinces() -> None:
    area = area_param(required=True)
    assert area.read("VN") == "VN" and area.read("79") == "79"
    assert len(area.schema["enum"]) == 64
    for bad in (None, "99", "vn", "7"):
        with pytest.raises(Problem):
            area.read(bad)
