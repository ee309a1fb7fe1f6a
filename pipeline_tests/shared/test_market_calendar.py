"""The NYSE calendar the coverage gap rules (and, later, the sample source) rely on."""

from __future__ import annotations

import datetime as dt

import numpy as np

from pipeline import market_calendar as mc


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def test_good_friday_is_closed() -> None:
    assert not mc.is_session(day("2024-03-29"))
    assert mc.is_session(day("2024-03-28"))
    assert mc.next_session(day("2024-03-28")) == day("2024-04-01")


def test_closed_after_september_11_2001() -> None:
    for d in ("2001-09-11", "2001-09-12", "2001-09-13", "2001-09-14"):
        assert not mc.is_session(day(d)), d
    assert mc.is_session(day("2001-09-10"))
    assert mc.next_session(day("2001-09-10")) == day("2001-09-17")
    assert mc.sessions(day("2001-09-10"), day("2001-09-17")).tolist() == [day("2001-09-10"), day("2001-09-17")]


def test_juneteenth_closed_from_2022_only() -> None:
    assert not mc.is_session(day("2022-06-20"))  # Sunday the 19th, observed Monday
    assert not mc.is_session(day("2023-06-19"))
    assert not mc.is_session(day("2024-06-19"))
    assert mc.is_session(day("2021-06-18"))  # a federal holiday in 2021, but the NYSE traded


def test_ordinary_weekday_is_open_and_weekend_closed() -> None:
    assert mc.is_session(day("2024-06-12"))
    assert mc.is_session(np.datetime64("2000-01-03"))
    assert not mc.is_session(day("2024-06-15"))
    assert mc.next_session(day("2024-06-14")) == day("2024-06-17")


def test_sessions_are_inclusive_days_and_empty_when_reversed() -> None:
    got = mc.sessions(day("2024-07-01"), day("2024-07-08"))
    assert got.dtype == np.dtype("datetime64[D]")
    assert [d.isoformat() for d in got.tolist()] == [
        "2024-07-01",
        "2024-07-02",
        "2024-07-03",
        "2024-07-05",
        "2024-07-08",
    ]
    assert len(mc.sessions(day("2024-07-08"), day("2024-07-01"))) == 0


def test_dates_outside_the_first_span_widen_it() -> None:
    assert mc.is_session(day("1999-12-31"))
    assert not mc.is_session(day("1999-12-24"))  # Christmas 1999 fell on a Saturday
    far = dt.date.today().year + 5
    assert len(mc.sessions(dt.date(far, 1, 1), dt.date(far, 12, 31))) > 240


def test_federal_holidays_add_the_days_the_treasury_is_closed() -> None:
    holidays = {d.isoformat() for d in mc.federal_holidays(day("2024-01-01"), day("2024-12-31")).tolist()}
    assert {"2024-10-14", "2024-11-11"} <= holidays  # Columbus and Veterans Day
    assert mc.is_session(day("2024-10-14")) and mc.is_session(day("2024-11-11"))
    assert "2024-03-29" not in holidays  # Good Friday is an exchange closure only
