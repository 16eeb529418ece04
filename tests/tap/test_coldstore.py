"""Cold stores: the SigV4 signer against AWS's published example, and archives uploaded to a
local S3-compatible server (a fake at the network edge that checks signatures and digests)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
import zstandard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tradehall.core.clock import VirtualClock
from tradehall.tap import archive, ledger
from tradehall.tap.coldstore import S3Store, sign_v4
from tradehall.tap.db import Database

AK, SK = "AKIDTEST", "secret/test+key"


def test_sign_v4_matches_the_aws_documentation_example() -> None:
    headers = sign_v4(
        method="GET",
        url="https://examplebucket.s3.amazonaws.com/test.txt",
        headers={"Range": "bytes=0-9"},
        payload_sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        now=datetime(2013, 5, 24, tzinfo=UTC),
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


class FakeS3:
    """Path-style PUT/HEAD/GET that re-derives each request's signature and checks the payload
    hash."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str]] = {}
        self.rot = False  # store corrupted bytes (the HEAD check must catch it)
        self.rejected = 0

    def _authorised(self, request: Request, payload_sha: str) -> bool:
        auth = request.headers.get("authorization", "")
        signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
        extra = {
            name: request.headers[name]
            for name in signed
            if name not in ("host", "x-amz-date", "x-amz-content-sha256")
        }
        expected = sign_v4(
            method=request.method,
            url=str(request.url),
            headers=extra,
            payload_sha256=payload_sha,
            access_key=AK,
            secret_key=SK,
            region="us-east-1",
            now=datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=UTC
            ),
        )
        return expected["Authorization"] == auth

    async def handle(self, request: Request) -> Response:
        key = request.path_params["key"]
        claimed = request.headers.get("x-amz-content-sha256", "")
        if not self._authorised(request, claimed):
            self.rejected += 1
            return Response("SignatureDoesNotMatch", 403)
        if request.method == "PUT":
            body = await request.body()
            if hashlib.sha256(body).hexdigest() != claimed:
                return Response("BadDigest", 400)
            stored = body[:-1] + b"\0" if self.rot else body
            self.objects[key] = (stored, request.headers.get("x-amz-meta-sha256", ""))
            return Response(status_code=200)
        if key not in self.objects:
            return Response(status_code=404)
        data, meta = self.objects[key]
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        headers = {"etag": f'"{md5}"', "x-amz-meta-sha256": meta}
        if request.method == "GET":
            return Response(data, 200, headers=headers)
        response = Response(status_code=200, headers=headers)
        response.headers["content-length"] = str(len(data))
        return response


@contextlib.asynccontextmanager
async def fake_s3() -> AsyncIterator[tuple[str, FakeS3]]:
    store = FakeS3()
    app = Starlette(routes=[Route("/{key:path}", store.handle, methods=["PUT", "HEAD", "GET"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", store
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "data" / "tap.db")
    await database.open()
    user = await database.write(lambda c: ledger.deposit(c, "0xaa", 1_000, 1, "dep-1"))
    assert user.balance == 1_000
    yield database
    await database.close()


async def test_archive_to_s3_round_trip(db: Database) -> None:
    async with fake_s3() as (endpoint, s3):
        store = S3Store(endpoint, "bucket", AK, SK, prefix="tap/")
        clock = VirtualClock()
        result = await archive.run_archive(db, store, clock, cutoff_ns=clock.time_ns())
        assert result.location == f"{endpoint}/bucket/tap/tap_{result.week}.db.zst"
        data, meta = s3.objects[f"bucket/tap/tap_{result.week}.db.zst"]
        assert hashlib.sha256(data).hexdigest() == result.sha256 == meta
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 30)
        assert raw.startswith(b"SQLite format 3\0")
        assert s3.rejected == 0
        types = await db.read(
            lambda c: [r[0] for r in c.execute("SELECT ref_type FROM transaction_ledger")]
        )
        assert types == ["OPENING_BALANCE"]
        assert await db.read(ledger.integrity_check) == []


async def test_s3_corruption_or_bad_credentials_abort_before_rotation(db: Database) -> None:
    async with fake_s3() as (endpoint, s3):
        clock = VirtualClock()
        s3.rot = True
        with pytest.raises(OSError, match="verification failed"):
            await archive.run_archive(
                db, S3Store(endpoint, "b", AK, SK), clock, cutoff_ns=clock.time_ns()
            )
        s3.rot = False
        with pytest.raises(OSError, match="403"):
            await archive.run_archive(
                db, S3Store(endpoint, "b", AK, "wrong"), clock, cutoff_ns=clock.time_ns()
            )
        types = await db.read(
            lambda c: [r[0] for r in c.execute("SELECT ref_type FROM transaction_ledger")]
        )
        assert types == ["DEPOSIT"]  # nothing rotated
        assert await db.read(archive.last_archive_time) is None


def test_cli_requires_a_bucket_with_an_s3_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tradehall.cli import main

    args = ["tap", "--data-dir", str(tmp_path), "--archive-s3-endpoint", "http://127.0.0.1:1"]
    assert main([*args, "archive"]) == 2
    assert "archive_s3_bucket" in capsys.readouterr().err
