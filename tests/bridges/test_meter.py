"""Pure logic of the bridges: meter accounting, OCPP value parsing, frame ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ocpp.exceptions import OCPPError

from gridshare.bridges.meter import Sample, advance, reading_fields, register_step
from gridshare.bridges.ocpp_common import parse_meter_value
from gridshare.bridges.ocpp_frames import message_id
from gridshare.bridges.ocpp_schemas import validate_request
from gridshare.bridges.sunspec import Observation, energy_step
from gridshare.core.payloads import DeviceType, encode_reading, parse_telemetry

T = datetime(2026, 12, 1, 8, tzinfo=UTC)


def sample(seconds: int, step_mwh: int, transaction: str | None = None) -> Sample:
    return Sample(
        ts=T + timedelta(seconds=seconds),
        status="charging",
        energy_step_mwh=step_mwh,
        transaction=transaction,
    )


def test_register_step() -> None:
    assert register_step(None, 500) == 0
    assert register_step(100, 350) == 250
    assert register_step(100, 40) == 0  # replaced meter: new baseline
    assert register_step(2**32 - 10, 5, 2**32) == 15


def test_advance_accumulates_and_refuses_what_is_not_newer() -> None:
    first = advance(None, sample(0, 0, "tx"), 300)
    assert first is not None and first.sessions_total == 1
    assert first.last_seq == int(T.timestamp() * 1000)
    second = advance(first, sample(60, 1_234_567, "tx"), 300)
    assert second is not None
    assert second.energy_mwh_total == 1_234_567 and second.sessions_total == 1
    assert second.revenue_micro_total == 1_234_567 * 300  # 370.37 cents, carried exactly
    assert advance(second, sample(60, 5), 300) is None  # a retry
    assert advance(second, sample(30, 5), 300) is None  # older than the last reading
    third = advance(second, sample(120, 1_000_000, "tx-2"), None)
    assert third is not None and third.sessions_total == 2
    assert third.revenue_micro_total == second.revenue_micro_total  # no tariff, no revenue


def test_same_state_same_sample_same_signed_bytes() -> None:
    key = bytes(range(1, 33))
    state = advance(None, sample(0, 0, "tx"), 250)
    assert state is not None
    fields = reading_fields("cp-ocpp-x", DeviceType.CHARGING_PILE, state, "HKD", 7200.0, 55.5)
    one, two = encode_reading(fields, key), encode_reading(dict(fields), key)
    assert one == two
    reading, _ = parse_telemetry(one)
    assert reading.sessions_total == 1 and reading.soc_pct == 55.5


def test_ocpp_units_and_signed_values() -> None:
    v16 = parse_meter_value(
        {
            "timestamp": "2026-12-01T08:00:00Z",
            "sampled_value": [
                {"value": "12.5", "unit": "kWh"},
                {"value": "7", "unit": "kW", "measurand": "Power.Active.Import"},
                {"value": "230", "measurand": "Energy.Active.Import.Register", "phase": "L1"},
                {"value": "OCMF|{}|{}", "format": "SignedData"},
            ],
        },
        "1.6",
    )
    assert (v16.ts, v16.energy_mwh, v16.power_w) == (T, 12_500_000, 7000)
    assert [e.format for e in v16.evidence] == ["OCMF"]
    v201 = parse_meter_value(
        {
            "timestamp": "2026-12-01T08:00:00+00:00",
            "sampled_value": [
                {"value": 123, "unit_of_measure": {"unit": "Wh", "multiplier": 3}},
                {"value": 80, "measurand": "SoC", "unit_of_measure": {"unit": "Percent"}},
            ],
        },
        "2.0.1",
    )
    assert (v201.energy_mwh, v201.soc_pct, v201.evidence) == (123_000_000, 80, [])


def test_frame_ids() -> None:
    assert message_id(b"not json") == "-1"
    assert message_id('{"a": 1}') == "-1"
    assert message_id('[2, "abc", "Heartbeat"') == "-1"
    assert message_id('[2, "abc", "Heartbeat", 5]') == "abc"


def test_sunspec_energy_step_across_wrap_and_scale_change() -> None:
    def seen(raw: int, sf: int) -> Observation:
        return Observation(103, raw, sf, True, None, "generating")

    assert energy_step({}, seen(100, 0)) == 0
    assert energy_step({"counter": 2**32 - 1, "sf": 0, "model": 103}, seen(9, 0)) == 10_000
    assert energy_step({"counter": 1000, "sf": 0, "model": 103}, seen(100, 1)) == 0
    assert energy_step({"counter": 100, "sf": 1, "model": 103}, seen(1500, 0)) == 500_000
    assert energy_step({"counter": 5, "sf": -2, "model": 103}, seen(7, -2)) == 20
    assert energy_step({"counter": 5, "sf": 0, "model": 701}, seen(7, 0)) == 0  # new model


def test_requests_checked_against_the_librarys_schemas() -> None:
    good = {"connectorId": 1, "meterValue": [{"timestamp": "x", "sampledValue": [{"value": "1"}]}]}
    validate_request("1.6", "MeterValues", good)
    validate_request("1.6", "NoSuchAction", {})  # left to the router: NotImplemented
    validate_request("2.0.1", "../../etc", {})
    cases = [
        ("2.0.1", "Heartbeat", {"unexpected": 1}, "FormatViolation"),
        ("2.0.1", "StatusNotification", {"timestamp": "t"}, "ProtocolError"),
        ("1.6", "MeterValues", {**good, "connectorId": "one"}, "TypeConstraintViolation"),
    ]
    for version, action, payload, code in cases:
        with pytest.raises(OCPPError) as raised:
            validate_request(version, action, payload)
        assert raised.value.code == code
