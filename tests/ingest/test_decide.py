"""Duplicates and meter monotonicity decided against neighbours by seq, not arrival order."""

from __future__ import annotations

import os

from gridshare.core.payloads import encode_reading, parse_telemetry
from gridshare.ingest.decide import Capacity, Point, Stored, decide
from tests.ingest.fleet import Device

DEVICE = Device("cp-decide-1", os.urandom(32))
OTHER = Device("cp-decide-2", os.urandom(32))


def reading(seq: int, device: Device = DEVICE, **overrides):
    return parse_telemetry(device.reading(seq, **overrides))[0]


def test_reordered_batch_is_accepted_whole() -> None:
    readings = [reading(s) for s in (5, 3, 4, 1, 2)]
    decision = decide(readings, [Stored()] * 5)
    assert decision.accepted == [0, 1, 2, 3, 4]
    assert not decision.duplicates and not decision.regressions


def test_duplicates_in_batch_and_stored() -> None:
    readings = [reading(1), reading(2), reading(1), reading(3)]
    stored = [Stored(), Stored(), Stored(), Stored(duplicate=True)]
    decision = decide(readings, stored)
    assert decision.accepted == [0, 1]
    assert decision.duplicates == [2, 3]


def test_regression_against_lower_and_higher_stored_neighbours() -> None:
    before = Point(10, 10_000, 3_000, 1)
    after = Point(20, 20_000, 6_000, 2)
    low = reading(15, energy_wh_total=9_999)
    high = reading(15, revenue_minor_total=6_001)
    fine = reading(15, energy_wh_total=15_000, revenue_minor_total=4_500, sessions_total=1)
    for candidate, ok in ((low, False), (high, False), (fine, True)):
        decision = decide([candidate], [Stored(before=before, after=after)])
        assert (decision.accepted == [0]) is ok
        assert (0 in decision.regressions) is not ok


def test_regression_inside_one_batch_keeps_the_consistent_readings() -> None:
    # seq 3 reports less energy than seq 2 in the same batch, whatever the arrival order
    readings = [reading(3, energy_wh_total=1500), reading(1), reading(2), reading(4)]
    decision = decide(readings, [Stored()] * 4)
    assert decision.accepted == [1, 2, 3]
    assert list(decision.regressions) == [0]
    assert "energy_wh_total 1500 at seq 3 < 2000 at seq 2" in decision.regressions[0]


def test_equal_meters_are_not_a_regression_and_devices_are_independent() -> None:
    readings = [reading(2, energy_wh_total=1000), reading(1), reading(1, device=OTHER)]
    decision = decide(readings, [Stored()] * 3)
    assert decision.accepted == [0, 1, 2]


def test_pv_readings_without_sessions_meter() -> None:
    pv = Device("pv-decide-1", os.urandom(32))
    readings = []
    for seq in (2, 1):
        fields = pv.fields(seq, type="pv_plant", status="generating")
        del fields["soc_pct"], fields["sessions_total"]
        readings.append(parse_telemetry(encode_reading(fields, pv.key))[0])
    decision = decide(readings, [Stored(before=Point(0, 0, 0, None))] * 2)
    assert decision.accepted == [0, 1]


def test_same_seq_with_other_signed_bytes_conflicts_identical_bytes_are_duplicates() -> None:
    first, copy, other = reading(1), reading(1), reading(1, energy_wh_total=1500)
    signed = [b"first", b"first", b"other"]
    decision = decide([first, copy, other], [Stored()] * 3, signed)
    assert decision.accepted == [0]
    assert decision.duplicates == [1]
    assert list(decision.conflicts) == [2]
    stored = [Stored(duplicate=True, signed=b"kept"), Stored(duplicate=True, signed=b"")]
    decision = decide([reading(2), reading(3)], stored, [b"other", b"other"])
    assert list(decision.conflicts) == [0]
    assert decision.duplicates == [1]  # stored without evidence: cannot tell, a duplicate


def test_meters_rising_beyond_rated_capacity_are_implausible() -> None:
    # fleet readings are a minute apart; 7 kW for 60 s + 900 s slack, x1.5: 2,800 Wh
    bound = {DEVICE.device_id: Capacity(7000, 1000, margin=1.5, slack_seconds=900)}
    before = Point.of(reading(1))
    fine = reading(2, energy_wh_total=1000 + 2800, revenue_minor_total=300 + 2800)
    too_much_energy = reading(2, energy_wh_total=1000 + 2801)
    too_much_revenue = reading(2, revenue_minor_total=300 + 2801)
    for candidate, ok in ((fine, True), (too_much_energy, False), (too_much_revenue, False)):
        decision = decide([candidate], [Stored(before=before)], capacity=bound)
        assert (decision.accepted == [0]) is ok, decision
        assert (0 in decision.implausible) is not ok
    # against the next reading by seq as well, and not for devices without a bound
    after = Point.of(reading(3, energy_wh_total=10**9))
    decision = decide([reading(2)], [Stored(before=before, after=after)], capacity=bound)
    assert "energy_wh_total rose" in decision.implausible[0]
    other = reading(2, device=OTHER, energy_wh_total=10**9)
    assert decide([other], [Stored(before=before)], capacity=bound).accepted == [0]
