"""Operator commands run from the CLI against a running (or stopped) tap deployment.

``tradehall tap breaker close|open|auto`` sends the C-47 override: with Redis it is a plain
``PUBLISH circuit:override <mode>`` (every API process subscribes); without Redis there is one
process, reached through its admin endpoint ``POST /api/admin/breaker`` with the admin token.
``tradehall tap restore YYYY-MM-DD`` fetches, verifies and attaches archived weeks
(:mod:`tradehall.tap.restore`) into the data directory's ``restore/``, where a running server's
history finds them on its next query.

Each command prints one JSON line and returns the process exit status.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tradehall.tap.breaker import Override
from tradehall.tap.contract import TapConfig

__all__ = ["restore_week", "send_override"]


async def send_override(values: dict[str, Any], mode: str) -> int:
    """Publish (Redis) or POST (single process) the override; 0 when someone received it."""
    override = Override(mode)
    if values["redis_url"]:
        from redis.exceptions import RedisError

        from tradehall.tap.redis_stores import connect_redis

        client = connect_redis(values["redis_url"])
        try:
            receivers = int(await client.publish(values["override_channel"], override.value))
        except RedisError as exc:
            print(json.dumps({"mode": override.value, "error": repr(exc)}))
            return 1
        finally:
            await client.aclose()
        print(
            json.dumps(
                {
                    "mode": override.value,
                    "channel": values["override_channel"],
                    "receivers": receivers,
                }
            )
        )
        # nobody subscribed: no API process is running (or it uses another channel name)
        return 0 if receivers > 0 else 1
    host = values["host"]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # a wildcard listen address is reached through loopback
    url = f"http://{host}:{values['port']}/api/admin/breaker"
    headers = {"Authorization": f"Bearer {values['admin_token']}"}
    async with httpx.AsyncClient(timeout=10) as http:
        try:
            resp = await http.post(url, json={"mode": override.value}, headers=headers)
        except httpx.HTTPError as exc:
            print(json.dumps({"mode": override.value, "url": url, "error": repr(exc)}))
            return 1
    print(
        json.dumps({"mode": override.value, "url": url, "status": resp.status_code, **_body(resp)})
    )
    return 0 if resp.status_code == 200 else 1


def _body(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def restore_week(config: TapConfig, week: str) -> int:
    """Restore ``week`` and the later archived weeks not held locally; 0 on success."""
    from tradehall.tap.db import Database
    from tradehall.tap.restore import RestoreError, WeekFiles, restore_since
    from tradehall.tap.service import cold_store

    db = Database(config.db_path)
    await db.open()
    weeks = WeekFiles.in_data_dir(config.data_dir, config.local_weeks)
    try:
        result = await restore_since(db, cold_store(config), weeks, week)
    except RestoreError as exc:
        print(json.dumps({"week": week, "error": exc.code, "message": exc.message}))
        return 1
    finally:
        await db.close()
    print(json.dumps({"week": week, **result.to_json()}))
    return 0
