"""Pure logic of the Toxiproxy-compatible proxy: addresses, toxic JSON, slicing."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.toxiproxy.addresses import AddressPolicy, HostPort, format_host_port, parse_host_port
from chaos.toxiproxy.errors import ApiError
from chaos.toxiproxy.toxics import (
    TOXIC_TYPES,
    LatencyToxic,
    Stream,
    apply_update,
    slice_bounds,
    toxic_from_json,
)

# -- addresses --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8474", HostPort("127.0.0.1", 8474)),
        ("localhost:0", HostPort("localhost", 0)),
        ("[::1]:5672", HostPort("::1", 5672)),
        ("example.com:80", HostPort("example.com", 80)),
    ],
)
def test_parse_host_port(text: str, expected: HostPort) -> None:
    assert parse_host_port(text, "listen") == expected
    assert str(expected) == format_host_port(expected.host, expected.port)


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:", "127.0.0.1:x", ":::1:80", "[::1]80", "h:70000"])
def test_parse_host_port_rejects_malformed(text: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_host_port(text, "upstream")
    assert err.value.status == 400
    assert "upstream" in err.value.message


@pytest.mark.parametrize(
    "address", ["127.0.0.1:1", "127.1.2.3:1", "[::1]:1", "localhost:1", "LOCALHOST:1", "[::ffff:127.0.0.1]:1"]
)
def test_policy_allows_loopback(address: str) -> None:
    assert AddressPolicy().check(address, "listen").port == 1


@pytest.mark.parametrize(
    "address", ["0.0.0.0:1", ":1", "10.0.0.1:1", "[::]:1", "[fe80::1]:1", "example.com:1", "128.0.0.1:1"]
)
def test_policy_refuses_everything_else(address: str) -> None:
    with pytest.raises(ApiError) as err:
        AddressPolicy().check(address, "upstream")
    assert err.value.status == 400
    assert "not a loopback address" in err.value.message
    assert address in err.value.message


def test_policy_extra_networks_are_the_only_extension() -> None:
    policy = AddressPolicy(extra_networks=(ipaddress.ip_network("10.200.0.0/24"),))
    assert policy.check("10.200.0.7:5672", "upstream").host == "10.200.0.7"
    with pytest.raises(ApiError):
        policy.check("10.200.1.7:5672", "upstream")


# -- toxic JSON -------------------------------------------------------------------------------------


def test_toxic_defaults_follow_toxiproxy() -> None:
    toxic = toxic_from_json({"type": "latency", "attributes": {"latency": 100}})
    assert toxic.to_json() == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 100, "jitter": 0},
    }


@pytest.mark.parametrize("type_name", sorted(TOXIC_TYPES))
def test_every_toxic_type_serialises_all_attributes(type_name: str) -> None:
    toxic = toxic_from_json({"type": type_name, "stream": "upstream", "name": "t", "toxicity": 0.5})
    out = toxic.to_json()
    assert out["type"] == type_name
    assert out["stream"] == "upstream"
    assert out["toxicity"] == 0.5
    assert set(out["attributes"]) == set(TOXIC_TYPES[type_name].defaults)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"type": "nope"}, 400, "invalid toxic type"),
        ({"type": "latency", "stream": "sideways"}, 400, "stream was invalid"),
        ({"type": "latency", "toxicity": 1.5}, 400, "toxicity"),
        ({"type": "latency", "toxicity": True}, 400, "toxicity"),
        ({"type": "latency", "attributes": {"latancy": 5}}, 400, "unknown attribute 'latancy'"),
        ({"type": "latency", "attributes": {"latency": -1}}, 400, "non-negative integer"),
        ({"type": "latency", "attributes": {"latency": 1.5}}, 400, "non-negative integer"),
        ({"type": "latency", "attributes": [1]}, 400, "attributes must be an object"),
        (["latency"], 400, "expected a JSON object"),
    ],
)
def test_invalid_toxics_are_refused(body: object, status: int, fragment: str) -> None:
    with pytest.raises(ApiError) as err:
        toxic_from_json(body)
    assert err.value.status == status
    assert fragment in err.value.message


def test_update_merges_attributes_and_refuses_identity_changes() -> None:
    toxic = LatencyToxic("lat", Stream.DOWNSTREAM, 1.0, {"latency": 100, "jitter": 10})
    toxicity, attributes = apply_update(toxic, {"attributes": {"latency": 300}})
    assert (toxicity, attributes) == (1.0, {"latency": 300, "jitter": 10})
    toxicity, _ = apply_update(toxic, {"toxicity": 0.25, "type": "latency", "stream": "downstream"})
    assert toxicity == 0.25
    for change in ({"type": "bandwidth"}, {"stream": "upstream"}, {"name": "other"}):
        with pytest.raises(ApiError, match="cannot be changed"):
            apply_update(toxic, change)


# -- slicer -----------------------------------------------------------------------------------------


@given(
    size=st.integers(min_value=0, max_value=20_000),
    average=st.integers(min_value=0, max_value=2_000),
    variation=st.integers(min_value=0, max_value=2_000),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_slice_bounds_cover_the_buffer_in_bounded_pieces(
    size: int, average: int, variation: int, seed: int
) -> None:
    bounds = slice_bounds(size, average, variation, random.Random(seed))
    # Contiguous, in order, non-empty, covering exactly [0, size).
    assert [b for _, b in bounds[:-1]] == [a for a, _ in bounds[1:]]
    assert all(a < b for a, b in bounds)
    assert (bounds[0][0], bounds[-1][1]) == (0, size) if size else bounds == []
    assert sum(b - a for a, b in bounds) == size
    if average > 0:
        limit = max(1, average + min(variation, average - 1))
        assert max((b - a for a, b in bounds), default=0) <= limit


def test_slice_bounds_make_pieces_near_the_average() -> None:
    bounds = slice_bounds(10_000, 100, 0, random.Random(1))
    sizes = [b - a for a, b in bounds]
    assert len(bounds) >= 80
    assert min(sizes) >= 50 and max(sizes) <= 100
