"""Cold stores for archives: a local directory, or any S3-compatible object store (C-43).

Both verify what they stored before the archive counts as done: the directory store reads the copy
back and compares size and sha256; the S3 store sends the payload's sha256 in
``x-amz-content-sha256`` (the server rejects a body that does not match), then ``HEAD``s the object
and compares its size, its MD5 ``ETag`` and the ``x-amz-meta-sha256`` it was stored with.

The S3 client is a small AWS Signature Version 4 signer over httpx (path-style URLs, one ``PUT``
per archive, streamed from disk), so it works with AWS S3, MinIO, Ceph, R2 and the like without an
SDK. :func:`sign_v4` follows the documented algorithm and is tested against AWS's published example.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit

import httpx

__all__ = ["ColdStore", "DirectoryStore", "S3Store", "file_digests", "sign_v4"]

_CHUNK = 1 << 20


class ColdStore(Protocol):
    async def put(self, local: Path, size: int, sha256: str) -> str:
        """Store ``local`` under its file name, verify it, return where it now lives."""
        ...

    async def fetch(self, location: str, dest: Path) -> None:
        """Copy the archive ``put`` stored at ``location`` to the local file ``dest``."""
        ...


def file_digests(path: Path) -> tuple[int, str, str]:
    """Size, sha256 hex and md5 hex of a file."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


class DirectoryStore:
    """A local directory (a backup disk or a mounted bucket): copy, fsync, re-read, rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _put(self, local: Path, size: int, sha256: str) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / local.name
        temp = self.root / f".{local.name}.{uuid.uuid4().hex}.part"
        shutil.copyfile(local, temp)
        with temp.open("rb") as fh:
            os.fsync(fh.fileno())
        copied_size, copied_sha, _ = file_digests(temp)
        if (copied_size, copied_sha) != (size, sha256):
            temp.unlink(missing_ok=True)
            raise OSError(f"archive copy mismatch: {copied_size}/{copied_sha} != {size}/{sha256}")
        temp.replace(final)
        return str(final)

    async def put(self, local: Path, size: int, sha256: str) -> str:
        return await asyncio.to_thread(self._put, local, size, sha256)

    def _fetch(self, location: str, dest: Path) -> None:
        source = Path(location)
        if not source.exists():  # the store was moved: look for the file name under root
            source = self.root / source.name
        shutil.copyfile(source, dest)

    async def fetch(self, location: str, dest: Path) -> None:
        await asyncio.to_thread(self._fetch, location, dest)


def sign_v4(
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    payload_sha256: str,
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime,
    service: str = "s3",
) -> dict[str, str]:
    """Return ``headers`` plus ``x-amz-date``, ``x-amz-content-sha256`` and ``Authorization``."""
    parts = urlsplit(url)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    signed = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = amz_date
    signed["x-amz-content-sha256"] = payload_sha256
    names = sorted(signed)
    pairs = [p.partition("=") for p in parts.query.split("&") if p]
    query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, _, v in sorted(pairs)
    )
    canonical = "\n".join(
        (
            method,
            quote(parts.path or "/", safe="/-_.~"),
            query,
            "".join(f"{n}:{signed[n]}\n" for n in names),
            ";".join(names),
            payload_sha256,
        )
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out = {**headers, "x-amz-date": amz_date, "x-amz-content-sha256": payload_sha256}
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope},"
        f"SignedHeaders={';'.join(names)},Signature={signature}"
    )
    return out


@dataclass(frozen=True)
class S3Store:
    """Path-style S3: ``{endpoint}/{bucket}/{prefix}{file name}``."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    prefix: str = "tap-archives/"
    region: str = "us-east-1"
    timeout_s: float = 300.0

    def url_for(self, name: str) -> str:
        return f"{self.endpoint.rstrip('/')}/{self.bucket}/{self.prefix}{name}"

    def _signed(self, method: str, url: str, headers: dict[str, str], sha: str) -> dict[str, str]:
        return sign_v4(
            method=method,
            url=url,
            headers=headers,
            payload_sha256=sha,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            now=datetime.now(UTC),
        )

    async def put(self, local: Path, size: int, sha256: str) -> str:
        _, _, md5 = await asyncio.to_thread(file_digests, local)
        url = self.url_for(local.name)
        headers = {
            "content-length": str(size),
            "content-type": "application/zstd",
            "x-amz-meta-sha256": sha256,
        }

        async def body() -> AsyncIterator[bytes]:
            with local.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk

        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            put = await client.put(
                url, content=body(), headers=self._signed("PUT", url, headers, sha256)
            )
            if put.status_code // 100 != 2:
                raise OSError(f"S3 PUT {url} failed: {put.status_code} {put.text[:200]}")
            empty = hashlib.sha256(b"").hexdigest()
            head = await client.head(url, headers=self._signed("HEAD", url, {}, empty))
        if head.status_code != 200:
            raise OSError(f"S3 HEAD {url} failed: {head.status_code}")
        stored_size = int(head.headers.get("content-length", "-1"))
        etag = head.headers.get("etag", "").strip('"')
        stored_sha = head.headers.get("x-amz-meta-sha256", "")
        if stored_size != size or stored_sha != sha256 or ("-" not in etag and etag != md5):
            raise OSError(
                f"S3 verification failed for {url}: size {stored_size}/{size}, "
                f"sha256 {stored_sha}/{sha256}, etag {etag}/{md5}"
            )
        return url

    async def fetch(self, location: str, dest: Path) -> None:
        """Stream a signed ``GET`` of ``location`` (a URL ``put`` returned) into ``dest``."""
        if not location.startswith(("http://", "https://")):
            location = self.url_for(Path(location).name)
        empty = hashlib.sha256(b"").hexdigest()
        headers = self._signed("GET", location, {}, empty)
        async with (
            httpx.AsyncClient(timeout=self.timeout_s) as client,
            client.stream("GET", location, headers=headers) as resp,
        ):
            if resp.status_code != 200:
                raise OSError(f"S3 GET {location} failed: {resp.status_code}")
            with dest.open("wb") as fh:
                async for chunk in resp.aiter_bytes(_CHUNK):
                    await asyncio.to_thread(fh.write, chunk)  # disk I/O off the event loop
