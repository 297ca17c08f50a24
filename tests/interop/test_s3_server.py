"""The local S3 server (scripts/stack.sh) behaves like Amazon S3 where the consumers and
their readers depend on it: keys of any characters under either listing encoding,
conditional creates that exactly one writer wins, and overwrites that a reader sees whole
or not at all. The tests use boto3 and the AWS CLI, not the project's code."""

from __future__ import annotations

import hashlib
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote_plus

import pytest
from botocore.exceptions import ClientError
from conftest import BUCKET, HOW_TO_START, aws, require, s3_client

KEYS = [
    "topic+0+00000000000000000000.jsonl.gz",
    "a key with spaces/dt=2026-11-26/x.json",
    "non-ascii/Cámaras/家具/ü.json",
    "reserved/percent%20plus+and&amp;equals=?.json",
]


@pytest.fixture(scope="module")
def s3():
    require("127.0.0.1:9000", "The S3 server", HOW_TO_START)
    return s3_client()


@pytest.fixture
def prefix() -> str:
    return f"s3-conformance-{uuid.uuid4().hex[:8]}"


def test_keys_of_any_character_round_trip_under_both_listing_encodings(s3, prefix):
    for key in KEYS:
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{key}", Body=key.encode(), Metadata={"record-count": "1"})
    expected = {f"{prefix}/{key}" for key in KEYS}
    # boto3 asks for URL-encoded keys and decodes them itself (as the AWS CLI, and most SDKs).
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["Contents"]}
    assert listed == expected
    # Asked for explicitly, the encoding is left to the caller: the keys come encoded.
    encoded = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/", EncodingType="url")
    assert encoded["EncodingType"] == "url"
    raw = {o["Key"] for o in encoded["Contents"]}
    assert f"{prefix}/topic%2B0%2B00000000000000000000.jsonl.gz" in raw, raw
    assert {unquote_plus(k) for k in raw} == expected
    for key in expected:
        obj = s3.get_object(Bucket=BUCKET, Key=key)
        assert obj["Body"].read() == key.removeprefix(f"{prefix}/").encode()
        assert obj["Metadata"] == {"record-count": "1"}
    listing = aws("s3", "ls", "--recursive", f"s3://{BUCKET}/{prefix}/").stdout
    assert {line.split(maxsplit=3)[3] for line in listing.splitlines()} == expected


def test_exactly_one_of_racing_conditional_creates_wins(s3, prefix):
    key = f"{prefix}/entry.json"
    barrier = threading.Barrier(16)

    def create(i: int) -> str:
        barrier.wait()
        try:
            s3.put_object(Bucket=BUCKET, Key=key, Body=f"writer {i}".encode(), IfNoneMatch="*")
            return f"won {i}"
        except ClientError as e:
            return e.response["Error"]["Code"]

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(create, range(16)))
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1, outcomes
    # Amazon S3 answers 412 to a create that finds the key taken, 409 to one that raced it.
    assert set(outcomes) - set(winners) <= {"PreconditionFailed", "ConditionalRequestConflict"}, outcomes
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    assert body == f"writer {winners[0].split()[1]}"


def test_a_reader_sees_an_overwritten_object_whole_with_its_own_checksum(s3, prefix):
    key = f"{prefix}/checkpoint.json"
    versions = [bytes([i]) * (256 * 1024 + i) for i in range(1, 9)]
    digests = {hashlib.sha256(v).hexdigest() for v in versions}
    s3.put_object(Bucket=BUCKET, Key=key, Body=versions[0], ChecksumAlgorithm="CRC32")
    stop = threading.Event()

    def overwrite():
        i = 0
        while not stop.is_set():
            s3.put_object(Bucket=BUCKET, Key=key, Body=versions[i % len(versions)], ChecksumAlgorithm="CRC32")
            i += 1

    writers = [threading.Thread(target=overwrite) for _ in range(2)]
    for writer in writers:
        writer.start()
    try:
        for _ in range(40):
            # ChecksumMode: botocore checks the body against the checksum stored with it.
            body = s3.get_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")["Body"].read()
            assert hashlib.sha256(body).hexdigest() in digests, f"a torn read of {len(body)} bytes"
    finally:
        stop.set()
        for writer in writers:
            writer.join()
