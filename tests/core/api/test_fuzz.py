"""Property-based fuzzing of the HTTP API against its own OpenAPI document (schemathesis).

A real ``nabat run`` process serves the API; the test reads ``/schema/openapi.json`` from it,
and for every operation sends Hypothesis-generated requests that fit the document (positive)
and that break it (negative), with an admin token. Every response must be no 5xx, carry a
documented status code, Content-Type and headers, and match the documented schema. Distinct
failures are collected (not stopped at the first) and reported together with a curl command
that reproduces each one; failures already reported and awaiting a fix (``KNOWN``) make the
test an expected failure instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from nabat.testing import free_port, run_cli
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# `GET /api/v1/events/stream` is a Server-Sent Events stream that never ends on its own (it
# waits for new events and sends keep-alives until the client goes away or the hub stops):
# a synchronous client would block on every generated case until its read timeout, and its
# body cannot be validated against a schema anyway. It is covered by its own tests.
SKIPPED = {("GET", "/api/v1/events/stream")}

# Per operation and generation mode: every operation (but SKIPPED) is fuzzed in both modes,
# the REGRESSIONS sent first on top. 20 x ~146 cases: ~3,000 requests (40 took about a
# minute on a loaded 2-core VM, 60 two; the fixed seed makes each run send the same ones).
MAX_EXAMPLES = 20
SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,  # requests cross a process boundary; their latency is not the point here
    derandomize=True,  # a fixed seed, not a random one per run: CI failures reproduce locally
    database=None,  # nothing written to .hypothesis/, nothing replayed from earlier runs
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # collect, do not shrink
    suppress_health_check=list(HealthCheck),  # slow or filtered generation is expected here
    print_blob=False,
)

CONFIG = """
[hub]
language = "en"
data_dir = "{data}"
log_level = "info"
log_format = "json"

[api]
listen = "127.0.0.1:{port}"
# Generated subscription URLs reach nothing but the loopback (no public address either).
webhook_destinations = ["127.0.0.1/32"]
webhook_allow_public = false

[plugins.watch]
enabled = false

[plugins.eventlog]
enabled = false

[plugins.simulator]
enabled = false
"""


@dataclass
class HubProcess:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


_nabat = run_cli


@contextmanager
def running_hub(tmp_path: Path) -> Iterator[HubProcess]:
    """``nabat run`` on a free port with an admin token; killed at the end if still running."""
    port = free_port()
    config = tmp_path / "plugins.toml"
    config.write_text(CONFIG.format(data=tmp_path / "data", port=port))
    # A rate limit far above what the fuzzer sends: 429 is documented, but would hide the rest.
    created = _nabat(
        *("tokens", "create", "--config", str(config), "--name", "fuzz", "--scopes", "admin"),
        *("--rate", "100000", "--burst", "100000", "--json"),
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["secret"]
    log = tmp_path / "hub.log"
    with log.open("wb") as stderr:  # a file, not a pipe: thousands of access lines never block
        proc = subprocess.Popen(
            [sys.executable, "-m", "nabat", "run", "--config", str(config)],
            cwd=tmp_path,
            env={**os.environ, "NABAT_LANG": "en"},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    hub = HubProcess(url=f"http://127.0.0.1:{port}", token=token, proc=proc, log=log)
    try:
        _wait_ready(hub)
        yield hub
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait_ready(hub: HubProcess, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if hub.proc.poll() is not None:
            pytest.fail(f"nabat run exited with {hub.proc.returncode}:\n{hub.log.read_text()}")
        try:
            if requests.get(f"{hub.url}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the API did not answer within {timeout:g} s:\n{hub.log.read_text()}")
        time.sleep(0.05)


def _seed_events(hub: HubProcess, session: requests.Session) -> None:
    """Events in the journal, so that reads return real documents to check."""
    event = {
        "specversion": "1.0",
        "id": "seed-1",
        "source": "/fuzz",
        "type": "fuzz.seeded",
        "municipality": "krasnodar",
        "data": {"n": 1},
    }
    got = session.post(
        f"{hub.url}/api/v1/events",
        json=[event, {**event, "id": "seed-2", "subject": "cam-1", "severity": "info"}],
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert got.status_code == 202, got.text


def _existing(hub: HubProcess, session: requests.Session, names: set[str]) -> dict[str, str] | None:
    """Path parameters naming a resource that exists (a fresh one for each operation, so a
    DELETE fuzzed earlier does not leave the later operations only 404s)."""
    if names != {"sub_id"}:
        return None
    sub = session.post(
        f"{hub.url}/api/v1/subscriptions",
        json={"url": "http://127.0.0.1:9/hook", "types": ["fuzz.>"]},
    )
    assert sub.status_code == 201, sub.text
    return {"sub_id": sub.json()["id"]}


# Inputs that once broke the API, sent first (Hypothesis' explicit phase) in negative mode:
# the generator found each by chance, a regression must not depend on that chance again.
REGRESSIONS: dict[str, list[dict[str, Any]]] = {
    "POST /api/v1/events": [
        # An extension attribute sends the event down the slow decoding path, where a
        # `data_base64` that is not a string reached base64.b64decode: TypeError, 500.
        {
            "media_type": "application/cloudevents+json",
            "body": {
                "specversion": "1.0",
                "id": "r1",
                "source": "/fuzz",
                "type": "fuzz.regression",
                "ext": "a",
                "data_base64": {},
            },
        },
    ],
}


@dataclass
class Found:
    operation: str
    mode: str
    title: str
    message: str
    status: int
    response: str
    curl: str

    def __str__(self) -> str:
        return (
            f"{self.operation} [{self.mode}] {self.title} -> {self.status}\n{self.message}\n"
            f"response: {self.response}\n{self.curl}"
        )


@dataclass
class Findings:
    """Each distinct failure (operation, check, status) with its shortest reproduction, and
    the request ids of every response that failed it."""

    found: dict[tuple[str, str, int], Found] = field(default_factory=dict)
    request_ids: dict[tuple[str, str, int], set[str]] = field(default_factory=dict)

    def record(
        self,
        case: schemathesis.Case,
        response: schemathesis.Response,
        failure: Failure,
        mode: GenerationMode,
        hub: HubProcess,
    ) -> None:
        key = (case.operation.label, failure.title, response.status_code)
        self.request_ids.setdefault(key, set()).update(response.headers.get("x-request-id", []))
        curl = case.as_curl_command(headers=hub.auth, base_url=hub.url)
        if key in self.found and len(self.found[key].curl) <= len(curl):
            return
        self.found[key] = Found(
            operation=case.operation.label,
            mode=mode.value,
            title=failure.title,
            message=failure.message,
            status=response.status_code,
            response=response.text[:500],
            curl=curl,
        )

    def report(self) -> str:
        return "\n\n".join(str(f) for f in self.found.values())


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    hub: HubProcess,
    session: requests.Session,
    findings: Findings,
) -> int:
    """Send the generated cases of one operation in one mode; record each failure. Returns
    the number of requests sent."""
    strategy = operation.as_strategy(generation_mode=mode)
    names = {p.name for p in operation.path_parameters}
    if mode is GenerationMode.POSITIVE and names:
        existing = _existing(hub, session, names)
        if existing is not None:  # random ids only reach the 404 branch: aim at a real one too
            strategy = st.one_of(strategy, operation.as_strategy(mode, path_parameters=existing))
    sent = 0
    # Its own session without default headers, so a negative case's missing token stays missing.
    bare = requests.Session()

    @SETTINGS
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        nonlocal sent
        # A kept-alive session, as real clients use. `headers=` puts the admin token on every
        # case, except negative cases that leave the Authorization header out on purpose:
        # those must get a conforming 401.
        response = case.call(base_url=hub.url, headers=hub.auth, timeout=10, session=bare)
        sent += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=hub.auth)
        except FailureGroup as group:
            for failure in group.exceptions:
                findings.record(case, response, failure, mode, hub)
        except Failure as failure:
            findings.record(case, response, failure, mode, hub)
        if "x-request-id" not in response.headers:  # promised by the document's description
            missing = Failure(
                operation=operation.label,
                title="Missing X-Request-ID",
                message="every response must carry X-Request-ID",
            )
            findings.record(case, response, missing, mode, hub)

    if mode is GenerationMode.NEGATIVE:
        for known in REGRESSIONS.get(operation.label, []):
            run = hypothesis.example(case=operation.Case(**known))(run)
    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # The operation has nothing to make invalid (`GET /health`: no parameters, no body,
        # no security): negative mode has no case to send.
        assert mode is GenerationMode.NEGATIVE and sent == 0, operation.label
    finally:
        bare.close()
    return sent


# Failures found, reported and not yet fixed in the API: while these (and only these) remain,
# the test is an expected failure (xfail); any other failure fails it. Empty: every failure the
# fuzzer found so far (a 500 on a non-string data_base64, Litestar's own 400 shape documented,
# an under-specified subscription body) is fixed, and the test passes only on a clean run.
KNOWN: set[tuple[str, str, int]] = set()


@pytest.mark.timeout(300)  # ~3,000 requests: about half a minute alone, longer when busy
def test_the_api_conforms_to_its_openapi_document_under_fuzzing(tmp_path):
    started = time.monotonic()
    findings = Findings()
    counts: dict[str, int] = {}
    with running_hub(tmp_path) as hub, requests.Session() as session:
        session.headers.update(hub.auth)
        _seed_events(hub, session)
        raw = session.get(f"{hub.url}/schema/openapi.json", timeout=10)
        assert raw.status_code == 200, raw.text
        # A default configuration, not whatever schemathesis.toml the working directory holds.
        schema = schemathesis.openapi.from_dict(raw.json(), config=schemathesis.Config())
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                pytest.fail(f"schemathesis cannot read an operation: {result.err()}")
            operation = result.ok()
            if (operation.method.upper(), operation.path) in SKIPPED:
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                counts[f"{operation.label} [{mode.value}]"] = _fuzz(
                    operation, mode, hub, session, findings
                )
        hub.proc.send_signal(signal.SIGTERM)
        code = hub.proc.wait(timeout=30)
    log = hub.log.read_text()
    print(f"{sum(counts.values())} requests in {time.monotonic() - started:.1f} s: {counts}")

    assert sum(1 for label in counts if label.endswith("[positive]")) >= 13, counts
    assert code == 0, log[-3000:]
    found = findings.found
    assert found.keys() <= KNOWN, f"{len(found)} distinct failures:\n\n{findings.report()}"
    # No handler error the checks did not see; those of known failures are tolerated with them.
    tolerated = set().union(*(findings.request_ids[key] for key in found))
    unhandled = [
        line
        for line in log.splitlines()
        if "http.unhandled_error" in line and json.loads(line).get("request_id") not in tolerated
    ]
    assert not unhandled, "\n".join(unhandled)
    if found:
        pytest.xfail(f"known failures, reported and not yet fixed:\n\n{findings.report()}")
