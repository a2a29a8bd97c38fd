"""The published schema, the wire's number spellings, and the serve command's options."""

from __future__ import annotations

import argparse
import json
import math
import socket

import pytest

from autolrs.service import cli as service_cli
from autolrs.service import wire


def test_the_openapi_schema_lists_every_endpoint_and_body(service, helpers):
    status, _, schema = helpers.call(service.url, "GET", "/openapi.json")

    assert status == 200 and schema["openapi"].startswith("3.")
    paths = {path: sorted(ops) for path, ops in schema["paths"].items()}
    assert paths == {
        "/health": ["get"],
        "/jobs": ["post"],
        "/jobs/{job_id}": ["delete", "get"],
        "/jobs/{job_id}/reports": ["post"],
        "/jobs/{job_id}/state": ["get", "put"],
    }
    components = schema["components"]["schemas"]
    for name in ("CreateJob", "ReportBody", "JobView", "CreatedJob", "JobDetail", "ErrorBody",
                 "TrainCommand", "StageRecord", "CandidateRecord"):  # fmt: skip
        assert name in components, name
    assert set(components["CreateJob"]["properties"]["config"]["properties"]) >= {
        "min_lr", "max_lr", "stage_steps", "num_candidates", "kappa", "seed",
    }  # fmt: skip
    report = schema["paths"]["/jobs/{job_id}/reports"]["post"]
    assert "409" in report["responses"] and "422" in report["responses"]


def test_encoding_writes_strict_json_with_non_finite_numbers_as_strings():
    data = {"a": [1.5, math.nan, math.inf, -math.inf], "b": (2, -0.0), "c": None}
    text = wire.encode(data)
    assert text == b'{"a":[1.5,"NaN","Infinity","-Infinity"],"b":[2,-0.0],"c":null}'
    decoded = wire.decode_non_finite(json.loads(text))
    assert math.isnan(decoded["a"][1]) and decoded["a"][2:] == [math.inf, -math.inf]
    assert decoded["c"] is None and decoded["b"] == [2, -0.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, math.nan),
        ("NaN", math.nan),
        ("Infinity", math.inf),
        ("-Infinity", -math.inf),
        (3, 3.0),
        (0.25, 0.25),
    ],  # fmt: skip
)
def test_every_spelling_of_a_loss_reads_as_a_float(value, expected):
    got = wire.loss_from_wire(value)
    assert isinstance(got, float)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_integers_beyond_64_bits_are_named_where_they_are():
    wire.check_int64({"a": [2**63 - 1, -(2**63)], "b": True}, "body")
    with pytest.raises(ValueError, match=r"body\.a\[1\] must fit in a signed 64-bit integer"):
        wire.check_int64({"a": [0, 2**63]}, "body")


def test_serve_defaults_to_loopback_port_8765_and_a_local_database():
    parser = argparse.ArgumentParser()
    service_cli.configure_parser(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, str(args.db), args.token) == (
        "127.0.0.1", 8765, "autolrs-service.db", None,
    )  # fmt: skip
    assert args.max_body_mib == 4.0


@pytest.mark.parametrize("argv", [["--port", "70000"], ["--port", "x"], ["--max-body-mib", "0"]])
def test_serve_refuses_bad_options(argv, capsys):
    parser = argparse.ArgumentParser()
    service_cli.configure_parser(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(argv)
    assert "must be" in capsys.readouterr().err


def test_serve_fails_with_1_when_the_port_is_taken_or_the_database_unusable(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    service_cli.configure_parser(parser)
    (tmp_path / "bad.db").write_bytes(b"garbage " * 100)
    assert service_cli.main(parser.parse_args(["--db", str(tmp_path / "bad.db")])) == 1
    assert "cannot use" in capsys.readouterr().err

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        args = parser.parse_args(["--db", str(tmp_path / "ok.db"), "--port", port])
        assert service_cli.main(args) == 1
