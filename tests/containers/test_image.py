"""The image users build from the Dockerfile, run as containers: what it holds, the
commands users type, the HEALTHCHECK, events from the host through the producer
container to S3 through the consumer containers, and SIGTERM to PID 1 committing the open
batch. Read back with boto3 and the consumers' own audit, run as a container."""

from __future__ import annotations

import json

from conftest import IMAGE, docker, s3_env

from harness import free_port, get, metric_values, post_json, store_event, stored_lines, wait_for

BINARIES = ["producer", "sales-consumer", "inventory-consumer"]



def health(name: str) -> str:
    return docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout.strip()


def test_the_image_runs_as_nonroot_with_no_shell_and_is_small(image):
    config = json.loads(docker("image", "inspect", image).stdout)[0]
    assert config["Config"]["User"] == "65532:65532", config["Config"]
    no_shell = docker("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "true", check=False)
    assert no_shell.returncode != 0, "the image has a shell"
    size_mb = config["Size"] / 1e6
    layers = docker("history", "--format", "{{.Size}}\t{{.CreatedBy}}", image).stdout
    print(f"{image}: {size_mb:.1f} MB\n{layers}")
    # Three stripped release binaries on distroless cc (22 MB): 97 MB before the Iceberg
    # output, 137 MB since (2026-12-07: the binaries' layer 115 MB, the consumers linking
    # Arrow, Parquet and the iceberg crates). The bound catches a toolchain or a build tree
    # copied in by mistake (hundreds of MB), not a dependency's growth.
    assert size_mb < 170, f"{size_mb:.1f} MB"


def test_each_binary_answers_help_in_the_image(image):
    for binary in BINARIES:
        answer = docker("run", "--rm", image, binary, "--help", check=False)
        assert answer.returncode == 0, f"{binary} --help: {answer.stdout}{answer.stderr}"
        assert answer.stdout.startswith(f"usage: {binary} "), answer.stdout


def test_events_from_the_host_reach_s3_through_the_containers_and_sigterm_commits_the_open_batch(stack, containers):
    tag = containers.tag
    topic, prefix = f"{tag}-topic", f"{tag}-prefix"
    producer_port, sales_port, inventory_port = free_port(), free_port(), free_port()
    kafka = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092", "STORE_EVENTS_TOPIC": topic, "LOG_FORMAT": "text", "PRODUCER_AUTH": "none"}

    # Every container with the image's own HEALTHCHECK (it asks /healthz on HTTP_ADDR).
    producer = containers.run(
        "producer",
        {**kafka, "HTTP_ADDR": f"127.0.0.1:{producer_port}", "GENERATOR_RATE": "0", "TOPIC_PARTITIONS": "2"},
        "producer",
    )
    consumers = {}
    for name, port in [("sales-consumer", sales_port), ("inventory-consumer", inventory_port)]:
        env = {
            **kafka,
            **s3_env(prefix),
            "HTTP_ADDR": f"127.0.0.1:{port}",
            "CONSUMER_GROUP_ID": f"{tag}-{name}",
            # Only the shutdown path commits: nothing is stored before SIGTERM.
            "BATCH_MAX_AGE": "10m",
        }
        consumers[name] = (containers.run(name, env, name), port)
    for container in [producer, *(c for c, _ in consumers.values())]:
        wait_for(f"{container} healthy by the image's HEALTHCHECK", lambda c=container: health(c) == "healthy")
    for name, (container, _) in consumers.items():
        # What compose's healthcheck runs (exec form: the image has no shell).
        check = docker("exec", container, f"/usr/local/bin/{name}", "healthcheck", check=False)
        assert check.returncode == 0, f"{container}: {name} healthcheck: {check.stdout}{check.stderr}"
        logs = docker("logs", container).stderr + docker("logs", container).stdout
        assert "no native root CA certificates" not in logs, f"{container} has no CA bundle for HTTPS to S3"

    sent = []
    for kind in ["sale_event", "inventory_event"] * 50:
        sent.append(store_event(kind, len(sent)))
    answer = post_json(f"http://127.0.0.1:{producer_port}/v1/events", sent)
    assert answer["accepted"] == len(sent), answer

    def read_everything(port: int) -> bool:
        status, text = get(f"http://127.0.0.1:{port}/metrics")
        # consumer_position: the next offset to fetch, per partition; the topic holds
        # exactly the events sent, so the positions add up to their count once all are read.
        return status == 200 and sum(metric_values(text, "consumer_position").values()) >= len(sent)

    for name, (container, port) in consumers.items():
        wait_for(f"{container} to read all {len(sent)} records", lambda p=port: read_everything(p))
    assert stored_lines(f"{prefix}/event_type=") == [], "a batch was stored before SIGTERM"

    for name, (container, _) in consumers.items():
        docker("stop", "-t", "60", container, timeout=90)
        state = json.loads(docker("inspect", container).stdout)[0]["State"]
        assert state["ExitCode"] == 0, f"{container} exited {state['ExitCode']} on SIGTERM"
        logs = docker("logs", container).stdout + docker("logs", container).stderr
        assert "Consumer stopped." in logs, logs[-2000:]
    for kind in ["sale_event", "inventory_event"]:
        stored = [line["request_id"] for line in stored_lines(f"{prefix}/event_type={kind}/")]
        expected = [event["request_id"] for event in sent if event["event_type"] == kind]
        assert sorted(stored) == sorted(expected), f"{kind}: {len(stored)} stored of {len(expected)}"

    for name in consumers:
        audit = docker(
            "run", "--rm", "--network", "host",
            *[arg for key, value in {**kafka, **s3_env(prefix)}.items() for arg in ("-e", f"{key}={value}")],
            IMAGE, name, "audit",
            check=False,
        )
        assert audit.returncode == 0, f"{name} audit in a container:\n{audit.stdout}{audit.stderr}"

