"""The original demo's consumer, as a baseline for `make bench`: one S3 PUT per record.

Reads record values, one per line, on stdin (kcat prints them) and does what the
original Lambda consumer did with each: parse the JSON (a record that is not JSON is
logged and lost), then PUT it alone under
`<prefix>/event_type=<event_type>/dt=<YYYY_MM_DD>/<epoch seconds.microseconds>.json`,
named by the wall clock. It is sequential, like one Lambda invocation per batch.

Prints `<records> <stored> <seconds>` when stdin ends. S3 settings come from the same
variables as the services (S3_ENDPOINT, S3_BUCKET, AWS_*).
"""

import json
import os
import sys
import time

import boto3
from botocore.config import Config


def main() -> None:
    prefix = sys.argv[1] if len(sys.argv) > 1 else "baseline"
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )
    bucket = os.environ.get("S3_BUCKET", "store-events")
    records = stored = 0
    start = time.monotonic()
    for line in sys.stdin:
        records += 1
        try:
            event = json.loads(line)
            event_type = event["event_type"]
        except (ValueError, KeyError, TypeError) as error:
            print(f"record {records}: {error}", file=sys.stderr)
            continue
        now = time.time()
        key = f"{prefix}/event_type={event_type}/dt={time.strftime('%Y_%m_%d', time.gmtime(now))}/{now:.6f}.json"
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(event).encode())
        stored += 1
    print(records, stored, f"{time.monotonic() - start:.3f}")


if __name__ == "__main__":
    main()
