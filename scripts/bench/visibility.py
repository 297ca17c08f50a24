"""Produce-to-S3 latency for `make bench`, seen the way a reader sees it.

    visibility.py PREFIX SECONDS

Lists `<PREFIX>/event_type=sale_event/` every 100 ms for SECONDS and notes the moment each
object first appears; then reads every object and, for each event in it, takes the time
from its `ts` to that moment. Prints `<events> <p50 seconds> <p99 seconds>`. S3 settings
come from the same variables as the services (S3_ENDPOINT, S3_BUCKET, AWS_*).
"""

import datetime
import gzip
import json
import os
import sys
import time

import boto3
from botocore.config import Config


def main() -> None:
    prefix, seconds = sys.argv[1], float(sys.argv[2])
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )
    bucket = os.environ.get("S3_BUCKET", "store-events")
    folder = f"{prefix}/event_type=sale_event/"
    first_seen: dict[str, float] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
            now = time.time()
            for item in page.get("Contents", []):
                first_seen.setdefault(item["Key"], now)
        time.sleep(0.1)
    latencies = []
    for key, seen in first_seen.items():
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for line in body.decode().splitlines():
            ts = datetime.datetime.fromisoformat(json.loads(line)["ts"].replace("Z", "+00:00")).timestamp()
            latencies.append(seen - ts)
    latencies.sort()

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    print(len(latencies), f"{pick(0.5):.2f}", f"{pick(0.99):.2f}")


if __name__ == "__main__":
    main()
