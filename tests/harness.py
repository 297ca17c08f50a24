"""What the Python system tests share: the local stack's addresses and credentials, our
binaries run as services with their own logs, and small HTTP and Prometheus helpers.

`tests/interop` (what lands in S3, read with the AWS CLI, boto3 and DuckDB) and
`tests/cluster` (a three-broker cluster: faults and authorization) both import it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
S3_ENDPOINT = "http://127.0.0.1:9000"
BUCKET = "store-events"
LOCAL_ENV = {
    "AWS_ACCESS_KEY_ID": "store-events-local",
    "AWS_SECRET_ACCESS_KEY": "store-events-local-secret",
    "AWS_REGION": "us-east-1",
    # The producer's open access, chosen explicitly for the local runs (README, Security).
    "PRODUCER_AUTH": "none",
}


def require(addr: str, what: str, how_to_start: str) -> None:
    """Fails the test, saying how to start `what`, when nothing listens on `addr`."""
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        pytest.fail(f"{what} is not reachable on {addr}: {how_to_start}", pytrace=False)


def wait_for(what: str, probe, seconds: float = 90, every: float = 0.5):
    """Polls `probe` every `every` seconds until it returns something true, and returns
    that; fails naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up after {seconds}s waiting for: {what}"
        time.sleep(every)


def store_event(kind: str, n: int) -> dict:
    """A valid event of type `kind` (`sale_event`, `inventory_event`), the `n`th of a test:
    a new request_id, one of seven stores, stamped now."""
    return {
        "request_id": str(uuid.uuid4()),
        "event_type": kind,
        "store_id": n % 7 + 1,
        "cust_id": 42,
        "category": "Laptops",
        "sku": 1000 + n,
        "price": 19.99,
        "qty": 2,
        "discount": 5.0,
        "gift_wrap": False,
        "variant": "black",
        "priority_shipping": True,
        "ts": datetime.now(timezone.utc).isoformat(),
    }


def build_binaries() -> None:
    # What `make up` builds (scripts/services.sh says why all targets): one set of dependencies.
    subprocess.run(["cargo", "build", "--quiet", "--workspace", "--all-targets"], cwd=REPO, check=True, timeout=1800)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_client(service: str, endpoint: str, **kwargs):
    """A boto3 client of `service` at `endpoint`, with the local stack's keys and region."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        aws_access_key_id=LOCAL_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=LOCAL_ENV["AWS_REGION"],
        **kwargs,
    )


def s3_client():
    return local_client("s3", S3_ENDPOINT, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))


def stored_lines(prefix: str) -> list[dict]:
    """Every JSON line of every gzip object under `prefix`, read with boto3."""
    s3 = s3_client()
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            lines.extend(json.loads(line) for line in gzip.decompress(body).decode().splitlines())
    return lines


def aws(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The AWS CLI from PyPI (beside this Python), pointed at the local S3 server."""
    cli = Path(sys.executable).parent / "aws"
    env = {**os.environ, **LOCAL_ENV}
    return subprocess.run(
        [str(cli), "--endpoint-url", S3_ENDPOINT, *args], env=env, capture_output=True, text=True, check=check, timeout=300
    )


def metric_values(text: str, name: str) -> dict[str, float]:
    """Samples of one Prometheus metric by their label text, e.g. {'partition="0"': 12.0}."""
    values = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            values[match.group(1) or ""] = float(match.group(2))
    return values


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def post(url: str, body, timeout: float = 30) -> tuple[int, str]:
    """POSTs `body` as JSON; the status and body of the answer (0 and the error when none)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def post_json(url: str, body) -> dict:
    status, text = post(url, body)
    assert status == 200, f"POST {url}: {status} {text}"
    return json.loads(text)


def run_binary(name: str, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """One of our binaries as a command (`audit`, `check-kafka`, ...), with the local S3 credentials."""
    full_env = {**os.environ, **LOCAL_ENV, "LOG_FORMAT": "text", "RUST_LOG": "warn", **env}
    return subprocess.run(
        [str(REPO / "target" / "debug" / name), *args], env=full_env, capture_output=True, text=True, timeout=timeout
    )


class Service:
    """One of our binaries, started natively with its own environment and log file."""

    def __init__(self, name: str, env: dict[str, str], logs: Path, *args: str, label: str | None = None):
        self.name = name
        self.port = free_port()
        self.log = logs / f"{label or name}.log"
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, **LOCAL_ENV, **env, "HTTP_ADDR": f"127.0.0.1:{self.port}", "LOG_FORMAT": "json"}
        if name.endswith("-consumer") and "CONSUMER_GROUP_ID" not in env:
            # A group of the test's own: the default one is `make up`'s, which may be running.
            full_env["CONSUMER_GROUP_ID"] = f"test-{name}-{full_env.get('STORE_EVENTS_TOPIC', uuid.uuid4().hex)}"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [str(REPO / "target" / "debug" / name), *args], env=full_env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            status, body = get(f"{self.url}/readyz")
            if status == 200:
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name} is not ready ({status} {body}); its log:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)

    def metrics(self) -> str:
        status, body = get(f"{self.url}/metrics")
        assert status == 200, f"{self.name} /metrics: {status} {body}"
        return body

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
