"""What a developer sees when `make up`'s services go wrong, driven through
scripts/services.sh (what `make up` runs) with ports, logs, a topic, consumer groups and an
S3 prefix of each test's own, so that the running `make up` system is never touched: a
port another program holds, a service that stops at start, and a consumer killed with
kill -9 and started again at once.

Needs the local stack: `make up` or `scripts/stack.sh up`."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import (  # noqa: E402
    LOCAL_ENV,
    REPO,
    S3_ENDPOINT,
    build_binaries,
    free_port,
    get,
    metric_values,
    require,
    run_binary,
    wait_for,
)

SERVICES = REPO / "scripts" / "services.sh"
HOW_TO_START = "start the local stack with `make up` or `scripts/stack.sh up`"


class Local:
    """One isolated `make up`: its own ports, state folder, topic, groups and S3 prefix."""

    def __init__(self, tmp_path: Path, **extra: str):
        tag = f"test-services-{uuid.uuid4().hex[:8]}"
        self.tag = tag
        self.state = tmp_path / "state"
        self.ports = {
            "producer": free_port(),
            "sales-consumer": free_port(),
            "inventory-consumer": free_port(),
        }
        self.env = {
            **os.environ,
            **LOCAL_ENV,
            "SERVICES_STATE": str(self.state),
            "PRODUCER_PORT": str(self.ports["producer"]),
            "SALES_CONSUMER_PORT": str(self.ports["sales-consumer"]),
            "INVENTORY_CONSUMER_PORT": str(self.ports["inventory-consumer"]),
            "STORE_EVENTS_TOPIC": tag,
            "S3_PREFIX": tag,
            "S3_ENDPOINT": S3_ENDPOINT,
            "CONSUMER_GROUP_PREFIX": tag,
            "GENERATOR_RATE": "50",
            "BATCH_MAX_AGE": "2s",
            # As many Rust developers have it: no backtrace must reach the summary.
            "RUST_BACKTRACE": "1",
            **extra,
        }

    def services(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SERVICES), command], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO
        )

    def pid(self, name: str) -> int:
        return int((self.state / "pids" / name).read_text())

    def metrics(self, name: str) -> str:
        status, text = get(f"http://127.0.0.1:{self.ports[name]}/metrics")
        return text if status == 200 else ""

    def ready(self, name: str) -> bool:
        return get(f"http://127.0.0.1:{self.ports[name]}/readyz")[0] == 200


@pytest.fixture
def local(tmp_path):
    require("127.0.0.1:9092", "Apache Kafka", HOW_TO_START)
    require("127.0.0.1:9000", "The S3 server", HOW_TO_START)
    build_binaries()
    made: list[Local] = []

    def make(**extra: str) -> Local:
        made.append(Local(tmp_path, **extra))
        return made[-1]

    yield make
    for one in made:
        one.services("down", timeout=120)



def test_a_taken_port_stops_it_before_anything_starts_naming_the_program(local):
    one = local()
    holder = socket.socket()
    holder.bind(("127.0.0.1", one.ports["sales-consumer"]))
    holder.listen()
    try:
        answer = one.services("up")
    finally:
        holder.close()
    assert answer.returncode == 1, answer.stderr
    port = one.ports["sales-consumer"]
    comm = Path("/proc/self/comm").read_text().strip()
    assert (
        f"[services] port {port}, where sales-consumer would listen, is taken by {comm} (pid {os.getpid()}): stop it, "
        f"or give sales-consumer another port (SALES_CONSUMER_PORT=<port> make up)"
    ) in answer.stderr, answer.stderr
    assert "[services] Nothing started." in answer.stderr, answer.stderr
    assert not (one.state / "pids").exists() or not any((one.state / "pids").iterdir()), "a service was started"


def test_a_service_that_stops_at_start_shows_its_error_block_not_a_backtrace(local):
    # A consumer that cannot write to S3 is a configuration error; a runtime failure prints
    # the same kind of block (the binaries' tests check both).
    one = local(S3_ENDPOINT="s3.example.com")
    answer = one.services("up")
    assert answer.returncode == 1, answer.stderr
    lines = answer.stderr.splitlines()
    at = lines.index(f"[services] sales-consumer exited at start; its error, from {one.state}/logs/sales-consumer.log:")
    assert lines[at + 1] == (
        '    configuration error: S3_ENDPOINT: "s3.example.com" must start with http:// or https://'
    ), answer.stderr
    assert not any(re.match(r"\s+\d+: ", line) for line in lines), answer.stderr


def test_kill_9_then_up_starts_it_again_at_once_as_the_same_static_member(local):
    one = local()
    first = one.services("up")
    assert first.returncode == 0, first.stderr

    def reading() -> float:
        return sum(metric_values(one.metrics("sales-consumer"), "consumer_position").values())

    wait_for("the sales consumer reading the generator's events", lambda: reading() > 0, every=0.2)
    generation = metric_values(one.metrics("sales-consumer"), "consumer_group_generation")[""]
    killed = one.pid("sales-consumer")
    os.kill(killed, signal.SIGKILL)

    start = time.monotonic()
    again = one.services("up")
    assert again.returncode == 0, again.stderr
    assert f"[services] sales-consumer is not running (pid {killed} exited); starting it again." in again.stderr, again.stderr
    assert "[services] producer already runs" in again.stderr and "[services] inventory-consumer already runs" in again.stderr
    assert one.pid("sales-consumer") != killed
    wait_for("the restarted sales consumer reading again", lambda: reading() > 0, every=0.2)
    restart_to_reading = time.monotonic() - start
    # A static member (CONSUMER_GROUP_INSTANCE_ID) that comes back takes its partitions
    # without a rebalance: the group keeps its generation. A dynamic one would wait for
    # its dead predecessor's session to time out (45 s) and then rebalance.
    after = metric_values(one.metrics("sales-consumer"), "consumer_group_generation")[""]
    assert after == generation, f"the group rebalanced: generation {generation} -> {after}"
    print(f"\n[services] kill -9 -> services.sh up -> reading again: {restart_to_reading:.1f} s (generation {after})")

    down = one.services("down", timeout=120)
    assert down.returncode == 0, down.stderr
    audit = run_binary(
        "sales-consumer", {"S3_PREFIX": one.tag, "STORE_EVENTS_TOPIC": one.tag, "S3_ENDPOINT": S3_ENDPOINT}, "audit"
    )
    assert audit.returncode == 0, f"audit after kill -9 and restart:\n{audit.stdout}{audit.stderr}"
