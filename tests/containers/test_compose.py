"""docker-compose.yml end to end, as a user runs it: `up --wait`, events POSTed from the host
read back from S3 with the AWS CLI, the audit as a container, `--scale sales-consumer=3`
seen by Kafka's own kafka-consumer-groups.sh and by Prometheus, scaling back, a Kafka
restart, and `down -v` leaving nothing. The tests share one compose project of their own
(its own name, volumes, network and host ports), in file order; Grafana is left out (no
image of it can be made here).

Needs a Docker engine, the image and the stand-ins for the third-party images where no
registry serves them: `make test-compose` makes them all."""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import docker

from harness import REPO, get, post, store_event, wait_for as poll

COMPOSE = [str(REPO / "scripts" / "containers" / "compose.sh")]
SERVICES = ["kafka", "seaweedfs", "seaweedfs-init", "producer", "sales-consumer", "inventory-consumer", "prometheus"]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "store-events", "AWS_SECRET_ACCESS_KEY": "store-events-local-secret"}
GROUP = "store-events-sales-consumer"
PARTITIONS = 6  # TOPIC_PARTITIONS in docker-compose.yml


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count > 65000:
            continue
        try:
            held = []
            for port in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise AssertionError(f"no {count} consecutive free ports")



def wait_for(what: str, probe, seconds: float = 120):
    """The harness's wait, at compose's pace (once a second)."""
    return poll(what, probe, seconds, every=1)


class Project:
    """One compose project: the repository's docker-compose.yml under a name of its own."""

    def __init__(self):
        self.name = f"store-events-test-{uuid.uuid4().hex[:8]}"
        sales = free_ports(9)
        inventory = free_ports(9)
        self.ports = {
            "PRODUCER_PORT": free_ports(1),
            "KAFKA_PORT": free_ports(1),
            "S3_PORT": free_ports(1),
            "PROMETHEUS_PORT": free_ports(1),
            "GRAFANA_PORT": free_ports(1),
            "SALES_CONSUMER_PORTS": f"{sales}-{sales + 8}",
            "INVENTORY_CONSUMER_PORTS": f"{inventory}-{inventory + 8}",
        }
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_") and key not in self.ports
        }
        self.env.update({key: str(value) for key, value in self.ports.items()})

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        answer = subprocess.run(
            [*COMPOSE, "-p", self.name, "-f", str(REPO / "docker-compose.yml"), *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout,
        )
        if check:
            assert answer.returncode == 0, f"docker compose {' '.join(args)}: exit {answer.returncode}\n{answer.stdout}{answer.stderr}"
        return answer

    def url(self, variable: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[variable]}{path}"

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "-q", service).stdout.split()

    def dump(self) -> None:
        """The last log lines of every container of the project, by name."""
        listing = docker("ps", "-a", "--filter", f"label=com.docker.compose.project={self.name}", "--format", "{{.Names}}\t{{.Status}}", check=False)
        for line in listing.stdout.splitlines():
            name = line.split("\t")[0]
            logs = docker("logs", "--tail", "40", name, check=False)
            print(f"--- {line}: last log lines ---\n{logs.stdout}{logs.stderr}")

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.name}"
        return {
            kind: docker(*command, "--filter", label, "-q", check=False).stdout.split()
            for kind, command in [("containers", ["ps", "-a"]), ("volumes", ["volume", "ls"]), ("networks", ["network", "ls"])]
        }

    def s3_lines(self) -> dict[str, list[dict]]:
        """Every line of every object in the bucket by key prefix (event_type=sale_event,
        dead_letter, ...), fetched with the AWS CLI from the host, as a user reads them."""
        cli = Path(sys.executable).parent / "aws"
        env = {**os.environ, **CREDENTIALS, "AWS_REGION": "us-east-1"}
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run(
                [str(cli), "--endpoint-url", self.url("S3_PORT", ""), "s3", "sync", "--only-show-errors", "s3://store-events/", folder],
                env=env, check=True, capture_output=True, text=True, timeout=300,
            )
            lines: dict[str, list[dict]] = {}
            for path in sorted(Path(folder).rglob("*.jsonl.gz")):
                kind = path.relative_to(folder).parts[0]
                lines.setdefault(kind, []).extend(json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines())
            return lines


@pytest.fixture(scope="module")
def project(request, image):
    for stand_in in ["apache/kafka:4.3.1", "chrislusf/seaweedfs:4.53", "prom/prometheus:v3.5.0"]:
        if docker("image", "inspect", stand_in, check=False).returncode != 0:
            pytest.fail(f"The image {stand_in} is not there: run `make test-compose` (it makes stand-ins where no registry serves them)", pytrace=False)
    made = Project()
    failed_before = request.session.testsfailed
    yield made
    if request.session.testsfailed > failed_before:
        made.dump()
    made.run("down", "-v", "--remove-orphans", "--timeout", "60", check=False)


def events(kind: str, count: int) -> list[dict]:
    return [store_event(kind, n) for n in range(count)]


def post_events(project: Project, count: int) -> list[dict]:
    """POSTs `count` events from the host; a 503 (Kafka not reachable yet) is retried after its
    Retry-After, as a store's client does."""
    sent = events("sale_event", count // 2) + events("inventory_event", count - count // 2)
    deadline = time.monotonic() + 120
    while True:
        status, text = post(project.url("PRODUCER_PORT", "/v1/events"), sent)
        if status != 503 or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert status == 200, f"POST /v1/events: {status} {text}"
    answer = json.loads(text)
    assert answer["accepted"] == len(sent), answer
    return sent


def stored_once(project: Project, sent: list[dict]) -> bool:
    """True once every sent event is in S3 under its type's prefix; fails on a duplicate."""
    lines = project.s3_lines()
    for kind in ["sale_event", "inventory_event"]:
        ids = [line["request_id"] for line in lines.get(f"event_type={kind}", [])]
        doubled = {i for i in ids if ids.count(i) > 1} if len(ids) != len(set(ids)) else set()
        assert not doubled, f"{kind}: stored twice: {sorted(doubled)[:5]}"
        missing = {e["request_id"] for e in sent if e["event_type"] == kind} - set(ids)
        if missing:
            return False
    return True


def group_members(project: Project) -> dict[str, set[int]]:
    """The group's partitions by consumer id, as Kafka's own kafka-consumer-groups.sh in the
    Kafka container prints them."""
    answer = project.run(
        "exec", "-T", "kafka", "/opt/kafka/bin/kafka-consumer-groups.sh", "--bootstrap-server", "localhost:9092",
        "--describe", "--group", GROUP, check=False, timeout=120,
    )
    owners: dict[str, set[int]] = {}
    for line in answer.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 7 and fields[0] == GROUP and fields[2].isdigit() and fields[6] != "-":
            owners.setdefault(fields[6], set()).add(int(fields[2]))
    return owners


def prometheus_targets(project: Project) -> dict[str, list[str]]:
    status, text = get(project.url("PROMETHEUS_PORT", "/api/v1/targets?state=active"))
    if status != 200:
        return {}
    targets: dict[str, list[str]] = {}
    for target in json.loads(text)["data"]["activeTargets"]:
        targets.setdefault(target["labels"]["job"], []).append(target["health"])
    return targets


def test_up_wait_brings_every_service_to_healthy_and_events_land_in_s3(project):
    start = time.monotonic()
    project.run("up", "--detach", "--wait", "--wait-timeout", "300", *SERVICES, timeout=420)
    up = time.monotonic() - start
    for service in ["kafka", "seaweedfs", "producer", "sales-consumer", "inventory-consumer"]:
        for container in project.containers(service):
            health = docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
            assert health == "healthy", f"{service} ({container}): {health}"
    init = docker("ps", "-a", "--filter", f"label=com.docker.compose.project={project.name}",
                  "--filter", "label=com.docker.compose.service=seaweedfs-init", "--format", "{{.Status}}").stdout
    assert "Exited (0)" in init, init
    # The generator's events (20 a second) reach S3 in 5 s batches.
    wait_for("the generator's first sale events in S3", lambda: project.s3_lines().get("event_type=sale_event"))
    first = time.monotonic() - start
    print(f"\n[compose] up --wait: {up:.1f} s; up to the first sale events in S3: {first:.1f} s")


def test_events_posted_from_the_host_are_read_back_with_the_aws_cli(project):
    sent = post_events(project, 200)
    wait_for("the 200 posted events in S3, each once", lambda: stored_once(project, sent))


def test_the_audit_run_as_a_container_is_clean(project):
    for service in ["sales-consumer", "inventory-consumer"]:
        audit = project.run("run", "--rm", "--no-deps", service, service, "audit", check=False, timeout=300)
        assert audit.returncode == 0, f"{service} audit: exit {audit.returncode}\n{audit.stdout}{audit.stderr}"


def test_scale_to_three_spreads_the_partitions_and_back_to_one_loses_and_doubles_nothing(project):
    project.run("up", "--detach", "--wait", "--wait-timeout", "300", "--scale", "sales-consumer=3", "sales-consumer", timeout=420)
    assert len(project.containers("sales-consumer")) == 3
    owners = wait_for(
        "kafka-consumer-groups.sh to show three members sharing the six partitions",
        lambda: (o := group_members(project)) and len(o) == 3 and sorted(p for ps in o.values() for p in ps) == list(range(PARTITIONS)) and o,
    )
    print(f"\n[compose] partitions by member: { {m[:40]: sorted(p) for m, p in owners.items()} }")
    targets = wait_for(
        "Prometheus to scrape every instance (3 sales-consumer, 1 inventory-consumer, 1 producer), all up",
        lambda: (t := prometheus_targets(project)).get("sales-consumer") == ["up"] * 3
        and t.get("inventory-consumer") == ["up"] and t.get("producer") == ["up"] and t,
    )
    print(f"[compose] Prometheus targets: {targets}")

    during = post_events(project, 300)
    project.run("up", "--detach", "--wait", "--wait-timeout", "300", "--scale", "sales-consumer=1", "sales-consumer", timeout=420)
    assert len(project.containers("sales-consumer")) == 1
    after = post_events(project, 100)
    wait_for("the events posted before and after scaling back in S3, each once", lambda: stored_once(project, during + after))
    wait_for("one member owning all six partitions", lambda: [sorted(p) for p in group_members(project).values()] == [list(range(PARTITIONS))])


def test_a_kafka_restart_is_survived(project):
    project.run("restart", "kafka", timeout=180)
    # The services come back to ready by themselves; nothing is restarted but Kafka.
    wait_for("the producer ready again", lambda: get(project.url("PRODUCER_PORT", "/readyz"))[0] == 200)
    sent = post_events(project, 100)
    wait_for("events posted after the restart in S3, each once", lambda: stored_once(project, sent), seconds=180)
    for service in ["producer", "sales-consumer", "inventory-consumer"]:
        for container in project.containers(service):
            restarts = docker("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", container).stdout.split()
            assert restarts == ["0", "running"], f"{service} ({container}): restarts, state = {restarts}"
    for service in ["sales-consumer", "inventory-consumer"]:
        audit = project.run("run", "--rm", "--no-deps", service, service, "audit", check=False, timeout=300)
        assert audit.returncode == 0, f"{service} audit after the restart:\n{audit.stdout}{audit.stderr}"


def test_down_v_leaves_nothing_behind(project):
    project.run("down", "-v", "--remove-orphans", "--timeout", "60", timeout=240)
    leftovers = project.leftovers()
    assert leftovers == {"containers": [], "volumes": [], "networks": []}, leftovers
    assert not re.search(project.name, docker("ps", "-a", "--format", "{{.Names}}").stdout)
