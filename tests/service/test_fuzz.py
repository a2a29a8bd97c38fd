"""Malformed requests of every kind get a 4xx error body, and the server keeps answering."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autolrs import AutoLRSConfig
from autolrs.service.wire import ERROR_STATUS

pytestmark = pytest.mark.slow  # about 3000 malformed requests in all

FUZZ = settings(
    max_examples=600,
    deadline=None,
    derandomize=True,  # the same cases on every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Numbers that break naive code: beyond int64, beyond a double, NaN, infinities, -0.0.
AWKWARD_NUMBERS = st.sampled_from(
    [
        2**63,
        -(2**63) - 1,
        2**64,
        10**30,
        1e308,
        -1e308,
        5e-324,
        -0.0,
        0,
        -1,
        float("nan"),
        float("inf"),
        float("-inf"),
    ]  # fmt: skip
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | AWKWARD_NUMBERS
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)
# Bodies Python's json can write, plus spellings it cannot: integers too long to parse, 1e400.
RAW_NUMBERS = st.sampled_from([b"1" * 5000, b"1e400", b"-1e400", b"1" * 401, b"[" * 5000])

CONFIG = AutoLRSConfig(
    min_lr=1e-3, max_lr=1.0, stage_steps=20, max_stage_steps=40, trial_fraction=0.25,
    num_candidates=3, val_every=2, gp_fit_hyperparameters=False,
).to_dict()  # fmt: skip


class Connection:
    """A kept-alive connection to the shared server, reopened when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def send(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def target(service):
    """A job the fuzzing aims at, and a connection."""
    job_id = "fuzz-" + uuid.uuid4().hex
    conn = Connection(service.port)
    body = json.dumps({"config": CONFIG, "validation": False, "job_id": job_id}).encode()
    status, _ = conn.send("POST", "/jobs", body)
    assert status == 201
    yield job_id, conn
    conn.conn.close()


def check(status: int, body: bytes, allowed: set[int]) -> None:
    """A refusal is a 4xx with a well-formed error body; nothing is a 5xx."""
    assert status in allowed, (status, body[:300])
    if status >= 400:
        error = json.loads(body)["error"]
        assert ERROR_STATUS[error["code"]] == status, error
        assert isinstance(error["message"], str) and error["message"]


CREATE_OK = {200, 201, 400, 409, 413, 422}
REPORT_OK = {200, 400, 409, 413, 422}
STATE_OK = {200, 201, 400, 413, 422}


@FUZZ
@given(body=st.binary(max_size=300) | RAW_NUMBERS)
def test_random_bytes(target, body):
    job_id, conn = target
    check(*conn.send("POST", "/jobs", body), CREATE_OK)
    check(*conn.send("POST", f"/jobs/{job_id}/reports", body), REPORT_OK)


@FUZZ
@given(value=JSON)
def test_random_json(target, value):
    job_id, conn = target
    body = json.dumps(value).encode()  # NaN and Infinity as Python writes them
    check(*conn.send("POST", "/jobs", body), CREATE_OK)
    check(*conn.send("POST", f"/jobs/{job_id}/reports", body), REPORT_OK)
    check(*conn.send("PUT", f"/jobs/{job_id}/state", body), STATE_OK)


@FUZZ
@given(
    field=st.sampled_from(sorted(CONFIG)),
    value=JSON,
    validation=st.booleans() | JSON,
    job_id=st.none() | st.text(max_size=140) | JSON,
)
def test_configs_with_one_field_wrong(target, field, value, validation, job_id):
    _, conn = target
    body = {"config": {**CONFIG, field: value}, "validation": validation}
    if job_id is not None:
        body["job_id"] = job_id
    check(*conn.send("POST", "/jobs", json.dumps(body).encode()), CREATE_OK)


@FUZZ
@given(
    seq=st.integers(min_value=-2, max_value=3) | AWKWARD_NUMBERS | JSON,
    losses=st.lists(LEAVES, max_size=12) | JSON,
    val_losses=st.none() | st.lists(LEAVES, max_size=4) | JSON,
)
def test_reports_with_wrong_types_and_awkward_numbers(target, seq, losses, val_losses):
    job_id, conn = target
    body = {"seq": seq, "losses": losses}
    if val_losses is not None:
        body["val_losses"] = val_losses
    check(*conn.send("POST", f"/jobs/{job_id}/reports", json.dumps(body).encode()), REPORT_OK)


@FUZZ
@given(job_id=st.text(min_size=1, max_size=60), method=st.sampled_from(["GET", "DELETE"]))
def test_arbitrary_job_ids_in_the_path(target, job_id, method):
    _, conn = target
    path = "/jobs/" + urllib.parse.quote(job_id, safe="")
    suffix = "/state" if method == "GET" and len(job_id) % 2 else ""
    status, body = conn.send(method, path + suffix, None)
    check(status, body, {200, 404, 405})


def test_after_the_fuzzing_the_target_job_still_takes_its_report(target, helpers, service):
    job_id, _ = target
    _, _, view = helpers.call(service.url, "GET", f"/jobs/{job_id}")
    pending = view["pending"]
    report = {"seq": pending["seq"], "losses": [2.0 - 0.1 * i for i in range(pending["steps"])]}
    status, _, reply = helpers.call(service.url, "POST", f"/jobs/{job_id}/reports", report)
    assert status == 200 and reply["state"]["seq"] == pending["seq"] + 1
    assert service.process.poll() is None
