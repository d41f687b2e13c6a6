"""Settings: read from ``PUNCHCLOCK_*`` environment variables once, at the edge, into one frozen object.

Only the entry points (``app/actors.py``, the CLI, ``punchclock dev``) call :func:`Settings.from_env`; everything
below them receives the object explicitly. The README's settings table lists the same variables.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path

from app.data_dir import find_data_dir
from app.errors import ConfigurationError, InvalidInput
from app.retention import parse_retention

# An environment variable's name: what a definition holds instead of a secret (a key, a header's value).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
# The levels PUNCHCLOCK_LOG_LEVEL takes (any case). Checked here, when the settings are read, so a typo stops
# every process (worker, clock, CLI) at once with the same message, not the worker alone when it sets up logging.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    """Everything punchclock reads from its environment.

    ``database_url`` empty means: start (or join) the embedded PostgreSQL in ``data_dir/pgdata``. ``from_env``
    resolves ``data_dir`` (app/data_dir.py: ``PUNCHCLOCK_DATA_DIR``, else the project's ``.punchclock``, else a
    per-user directory); the default here serves only settings built by hand.
    """

    database_url: str = ""
    data_dir: Path = Path(".punchclock")
    broker_url: str = DEFAULT_BROKER_URL
    confirm_delivery: bool = True
    db_pool_size: int = 10
    tick_batch: int = 500
    publish_threads: int = 4
    lock_ttl_seconds: int = 300
    republish_after_seconds: int = 600
    notify_allow_link_local: bool = False
    schedules_module: str = "schedules"
    log_level: str = "INFO"
    log_format: str = "text"
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = dataclasses.field(default="", repr=False)
    smtp_from: str = "punchclock@localhost"
    smtp_starttls: bool = True
    otlp_endpoint: str = ""
    jaeger_ui_url: str = "http://localhost:16686"
    service_name: str = "punchclock"
    llm_base_url: str = ""
    llm_api_key: str = dataclasses.field(default="", repr=False)
    llm_model: str = ""
    llm_timeout_seconds: int = 60
    embedding_base_url: str = ""
    embedding_api_key: str = dataclasses.field(default="", repr=False)
    embedding_model: str = ""
    trace_content: bool = False
    # how long a run is kept after it finishes (app/retention.py); ``off``: forever
    run_retention: str = "90d"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def retention(self) -> timedelta | None:
        """``run_retention`` read: how long a finished run is kept; None when retention is off."""
        return parse_retention(self.run_retention)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``PUNCHCLOCK_<FIELD>`` variables; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            variable = f"PUNCHCLOCK_{field.name.upper()}"
            raw = env.get(variable)
            if raw is None:
                continue
            values[field.name] = _convert(variable, raw.strip(), field.type)
        # Never the bare relative default: from any folder, the CLI must find the database dev created.
        values["data_dir"] = find_data_dir(Path.cwd(), env, Path.home())
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        if self.tick_batch < 1:
            raise ConfigurationError(f"PUNCHCLOCK_TICK_BATCH={self.tick_batch}: must be 1 or more (default 500)")
        if self.lock_ttl_seconds < 3:
            raise ConfigurationError(
                f"PUNCHCLOCK_LOCK_TTL_SECONDS={self.lock_ttl_seconds}: must be 3 or more (default 300)"
            )
        if self.republish_after_seconds < 1:
            raise ConfigurationError(
                f"PUNCHCLOCK_REPUBLISH_AFTER_SECONDS={self.republish_after_seconds}: must be 1 or more (default 600)"
            )
        if self.publish_threads < 1:
            raise ConfigurationError(
                f"PUNCHCLOCK_PUBLISH_THREADS={self.publish_threads}: must be 1 or more (default 4)"
            )
        if self.db_pool_size < 2:
            raise ConfigurationError(f"PUNCHCLOCK_DB_POOL_SIZE={self.db_pool_size}: must be 2 or more (default 10)")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigurationError(
                f'PUNCHCLOCK_LOG_LEVEL="{self.log_level}": use one of {", ".join(LOG_LEVELS)} (default INFO)'
            )
        if self.log_format not in ("text", "json"):
            raise ConfigurationError(f'PUNCHCLOCK_LOG_FORMAT="{self.log_format}": use text or json')
        try:
            parse_retention(self.run_retention)
        except InvalidInput as exc:
            raise ConfigurationError(
                f'PUNCHCLOCK_RUN_RETENTION="{self.run_retention}": {exc} (default 90d; off keeps runs forever)'
            ) from None
        if self.database_url and not self.database_url.startswith(("postgres://", "postgresql://")):
            raise ConfigurationError(
                f"PUNCHCLOCK_DATABASE_URL must start with postgresql:// (got {self.database_url.split(':')[0]}://…)"
                " or be unset for the embedded PostgreSQL"
            )


def _convert(variable: str, raw: str, kind: object) -> object:
    """Turn one variable's text into its field's type, naming the variable when it cannot."""
    if kind in (bool, "bool"):
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f'{variable}="{raw}": use true or false')
    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f'{variable}="{raw}": must be a whole number') from None
    if kind in (Path, "Path"):
        return Path(raw)
    return raw
