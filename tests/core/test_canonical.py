"""The canonical signing bytes are exactly the standard library's, whichever path made them."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridshare.core.payloads import canonical_bytes, parse_telemetry

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)


def reference(obj: dict) -> bytes:
    unsigned = {k: v for k, v in obj.items() if k != "sig"}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@settings(max_examples=3000, deadline=None)
@given(st.dictionaries(st.text(), scalars | st.lists(scalars, max_size=3), max_size=8))
def test_same_bytes_as_the_standard_library(obj: dict) -> None:
    assert canonical_bytes(obj) == reference(obj)


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 1e-4, 9.99e-5, 1e-5, 1e16, 9999999999999998.0, 1e22, 7200.0, 63.5, 5e7, 2**64],
)
def test_the_edges_of_the_fast_path(value: float) -> None:
    obj = {"power_w": value, "sig": "0x00", "device_id": "cp-1"}
    assert canonical_bytes(obj) == reference(obj)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(ValueError):
        canonical_bytes({"power_w": value})


def test_parse_refuses_what_the_standard_parser_refuses() -> None:
    """orjson's refusals fall through to the standard parser's decision."""
    for raw in (b'{"a":NaN}', b'{"a":1', b"\xff", b'{"a":1}x'):
        with pytest.raises(ValueError):
            parse_telemetry(raw)
