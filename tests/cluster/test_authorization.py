"""Least privilege against the cluster's StandardAuthorizer: each service works with only
the ACLs the README lists for it, on the SASL_SSL (SCRAM-SHA-512) listeners, and a
missing ACL gives the README's `authorization:` error, naming the operation and the
resource it needs, within the connect timeout.

The ACLs are granted with Kafka's own kafka-acls (`scripts/stack.sh cluster acl`), per
test on a topic and group of its own; what the services wrote is read back with kcat over
the super user's PLAINTEXT listener.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid

import pytest
from kafka_cluster import CLUSTER, CLUSTER_SCRAM, REPO, committed, end_offsets, event, request_ids_on_topic, stack, wait_caught_up
from harness import BUCKET, S3_ENDPOINT, Service, get, post, run_binary, stored_lines

CONNECT_TIMEOUT = 10  # KAFKA_CONNECT_TIMEOUT's default, in seconds
PASSWORD = os.environ.get("KAFKA_TEST_SCRAM_PASSWORD", "store-events-scram-secret")


def as_user(user: str, topic: str) -> dict[str, str]:
    """A service's environment for the SCRAM listeners, signed in as `user`."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": CLUSTER_SCRAM,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": user,
        "KAFKA_SASL_PASSWORD": PASSWORD,
        "KAFKA_SSL_CA_LOCATION": str(REPO / ".local" / "kafka" / "tls" / "ca.crt"),
        "STORE_EVENTS_TOPIC": topic,
    }


def s3_env(prefix: str, group: str) -> dict[str, str]:
    return {
        "S3_BUCKET": BUCKET,
        "S3_ENDPOINT": S3_ENDPOINT,
        "S3_FORCE_PATH_STYLE": "true",
        "S3_PREFIX": prefix,
        "BATCH_MAX_AGE": "1s",
        "CONSUMER_GROUP_ID": group,
    }


def allow(user: str, *acl: str) -> None:
    stack("cluster", "acl", "--add", "--allow-principal", f"User:{user}", *acl)


@pytest.fixture
def topic(cluster) -> str:
    """A new topic of 3 partitions, replicated 3 times, made by the super user."""
    name = f"acl-{uuid.uuid4().hex[:8]}"
    made = run_binary(
        "producer",
        {"KAFKA_BOOTSTRAP_SERVERS": CLUSTER, "STORE_EVENTS_TOPIC": name, "TOPIC_PARTITIONS": "3", "TOPIC_REPLICATION_FACTOR": "3"},
        "ensure-topic",
    )
    assert made.returncode == 0, made.stdout + made.stderr
    return name


def wait_for_readiness_error(service: Service, needle: str) -> tuple[float, str]:
    """Polls /readyz until a failing check's detail holds `needle`; how long that took, and
    that detail."""
    started = time.monotonic()
    body = ""
    while time.monotonic() - started < 60:
        status, body = get(f"{service.url}/readyz")
        failing = [c["detail"] for c in json.loads(body)["checks"] if not c["ok"]] if status == 503 else []
        for detail in failing:
            if needle in detail:
                return time.monotonic() - started, detail
        assert service.process.poll() is None, f"{service.name} exited: {service.log.read_text()[-3000:]}"
        time.sleep(0.2)
    pytest.fail(f"{service.name}'s readiness never said {needle!r}; last: {body}")


def test_each_service_works_with_only_the_acls_the_readme_lists(topic, tmp_path):
    group = f"{topic}-sales"
    # The README's least privilege: Write on the topic (it implies Describe, and since
    # Kafka 2.8 idempotent writes too); Read on the topic and on the group.
    allow("producer", "--operation", "Write", "--topic", topic)
    allow("sales-consumer", "--operation", "Read", "--topic", topic, "--group", group)

    producer = Service("producer", {**as_user("producer", topic), "PRODUCER_IDEMPOTENCE": "true"}, tmp_path)
    consumer = None
    try:
        producer.wait_ready()
        rng = random.Random(7)
        events = [{**event(rng), "event_type": "sale_event"} for _ in range(40)]
        status, body = post(f"{producer.url}/v1/events", events)
        assert status == 200, body
        consumer = Service("sales-consumer", {**as_user("sales-consumer", topic), **s3_env(topic, group)}, tmp_path)
        consumer.wait_ready()
        wait_caught_up([consumer], end_offsets(topic), seconds=60)
        assert sum(committed(consumer).values()) == len(events)
    finally:
        for service in (s for s in (consumer, producer) if s):
            assert service.stop() == 0, service.log.read_text()[-3000:]
    assert request_ids_on_topic(topic) == {e["request_id"]: 1 for e in events}
    assert sorted(e["request_id"] for e in stored_lines(f"{topic}/event_type=sale_event/")) == sorted(
        e["request_id"] for e in events
    )
    # The group's offsets were committed under the consumer's own identity.
    described = stack("kafka-tool", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                      "--bootstrap-server", CLUSTER.split(",")[0], "--describe", "--group", group)
    assert topic in described, described


def test_check_kafka_names_a_missing_describe_acl(topic):
    started = time.monotonic()
    checked = run_binary("producer", as_user("stranger", topic), "check-kafka")
    took = time.monotonic() - started
    assert checked.returncode != 0, checked.stdout
    assert "authorization: the broker authenticated this client but does not allow the operation" in checked.stdout
    assert f'it needs Describe on topic "{topic}"' in checked.stdout, checked.stdout
    assert took < CONNECT_TIMEOUT, f"the error took {took:.1f}s"


@pytest.mark.parametrize("idempotence", ["true", "false"])
def test_a_producer_without_write_is_told_what_it_needs(topic, tmp_path, idempotence):
    allow("stranger", "--operation", "Describe", "--topic", topic)
    producer = Service("producer", {**as_user("stranger", topic), "PRODUCER_IDEMPOTENCE": idempotence}, tmp_path)
    try:
        producer.wait_ready()  # it may describe the topic: ready
        started = time.monotonic()
        status, body = post(f"{producer.url}/v1/events", [event(random.Random(1))])
        took = time.monotonic() - started
    finally:
        assert producer.stop() == 0
    assert status == 503, body
    reason = json.loads(body)["failed"][0]["reason"]
    assert "authorization:" in reason, reason
    needed = "IdempotentWrite on the cluster (or Write on the topic)" if idempotence == "true" else f'Write on topic "{topic}"'
    assert f"it needs {needed}" in reason, reason
    assert took < CONNECT_TIMEOUT, f"the answer took {took:.1f}s"
    assert not request_ids_on_topic(topic), "a refused event is on the topic"


@pytest.mark.parametrize(
    "granted, needed",
    [
        (["--topic", "{topic}"], 'Read on group "{group}"'),
        (["--group", "{group}"], 'Describe on topic "{topic}"'),
    ],
    ids=["without-the-group", "without-the-topic"],
)
def test_a_consumer_without_read_is_told_what_it_needs(topic, tmp_path, granted, needed):
    group = f"{topic}-sales"
    allow("stranger", "--operation", "Read", *[g.format(topic=topic, group=group) for g in granted])
    consumer = Service("sales-consumer", {**as_user("stranger", topic), **s3_env(topic, group)}, tmp_path)
    try:
        took, body = wait_for_readiness_error(consumer, "authorization:")
    finally:
        assert consumer.stop() == 0, consumer.log.read_text()[-3000:]
    assert f"it needs {needed.format(topic=topic, group=group)}" in body, body
    assert took < CONNECT_TIMEOUT, f"readiness named the problem after {took:.1f}s"
