"""What the installed ``punchclock`` console script shows of secrets: its errors are redacted, and a notify target
written ``KIND:env:VAR`` is stored and shown as the variable's name only."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

PUNCHCLOCK = Path(sys.executable).parent / "punchclock"
BROKER_PASSWORD = "broker-pass-5e6f7a"


async def run_console_script(*argv: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(PUNCHCLOCK),
        *argv,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.parametrize(
    ("broker_url", "shown"),
    [
        (f"redis://ops:{BROKER_PASSWORD}@127.0.0.1:6379/0", "redis://ops:***@127.0.0.1:6379/0"),
        (f"rabbitmq:{BROKER_PASSWORD}@127.0.0.1", "rabbitmq:***"),  # no scheme at all: still no password
    ],
)
async def test_a_bad_broker_url_is_named_without_its_password(
    punchclock_env: dict[str, str], broker_url: str, shown: str
) -> None:
    code, out, err = await run_console_script(
        "schedules", "add", "nightly", "--actor", "probe", "--cron", "0 2 * * *", PUNCHCLOCK_BROKER_URL=broker_url
    )
    assert (code, out) == (1, "")
    assert (
        err
        == f'punchclock: error: PUNCHCLOCK_BROKER_URL="{shown}": use amqp://user:***@host:5672/vhost, or memory://\n'
    )
    assert BROKER_PASSWORD not in err


async def test_an_env_target_is_stored_and_shown_as_its_name(
    punchclock_env: dict[str, str], pool: asyncpg.Pool[Any]
) -> None:
    code, _, err = await run_console_script(
        "schedules", "add", "nightly", "--actor", "probe", "--cron", "0 2 * * *", "--notify", "Slack:env:OPS_SLACK_HOOK"
    )
    assert code == 0, err
    assert await pool.fetchval("SELECT notify FROM schedules WHERE name = 'nightly'") == ["slack:env:OPS_SLACK_HOOK"]
    code, out, err = await run_console_script("schedules", "show", "nightly")
    assert code == 0, err
    assert "notify:       slack:env:OPS_SLACK_HOOK" in out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("mailto:env:OPS_MAIL", "mailto takes the addresses themselves"),
        ("slack:env:9LIVES", '"9LIVES" is not an environment variable name'),
        ("webhook:http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
    ],
)
async def test_bad_targets_are_refused_when_defined(punchclock_env: dict[str, str], target: str, message: str) -> None:
    code, _, err = await run_console_script(
        "schedules", "add", "nightly", "--actor", "probe", "--cron", "0 2 * * *", "--notify", target
    )
    assert code == 2
    assert message in err
