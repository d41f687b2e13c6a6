"""compose.yaml and the README agree with the code: service names, ports, commands, credentials, and every
``PUNCHCLOCK_*`` variable. Docker does not run here; renaming a setting without updating them fails these tests."""

from __future__ import annotations

import re
import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from app.consumer_timeout import CONSUMER_TIMEOUT
from app.settings import DEFAULT_BROKER_URL, Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_VARIABLES = {f"PUNCHCLOCK_{field.name.upper()}" for field in fields(Settings)}
PUNCHCLOCK_SERVICES = ("migrate", "worker", "clock")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text()


def command(service: dict[str, Any]) -> list[str]:
    raw = service["command"]
    return shlex.split(raw) if isinstance(raw, str) else [str(part) for part in raw]


def container_ports(service: dict[str, Any]) -> set[int]:
    """Container ports of ``"host:container"`` mappings (short syntax, as compose.yaml writes them)."""
    return {int(str(mapping).rsplit(":", 1)[-1].split("/")[0]) for mapping in service.get("ports", [])}


def punchclock_env(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in service["environment"].items()}


def settings_table(readme: str) -> dict[str, str]:
    """``{variable: default cell}`` from the rows of the README's "## Settings" table."""
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`(PUNCHCLOCK_[A-Z0-9_]+)`\s*\|([^|]*)\|", section, flags=re.MULTILINE)
    return {variable: default.strip().strip("`") for variable, default in rows}


def test_services_and_images(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"rabbitmq", "postgres", "jaeger", "ollama", *PUNCHCLOCK_SERVICES}
    assert services["rabbitmq"]["image"] == "rabbitmq:3.13-management"
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"
    assert services["jaeger"]["image"].startswith("jaegertracing/all-in-one")
    assert str(services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"]).lower() == "true"
    for name in PUNCHCLOCK_SERVICES:
        assert services[name]["build"] == ".", name
    assert re.search(r"^FROM python:3\.11-slim$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)


def test_ollama_is_an_optional_profile_the_llm_settings_can_point_at(services: dict[str, dict[str, Any]]) -> None:
    assert services["ollama"]["profiles"] == ["ollama"]
    assert container_ports(services["ollama"]) == {11434}
    assert "ollama" not in services["worker"].get("depends_on", {})  # without the profile, workers still start


def test_ports(services: dict[str, dict[str, Any]]) -> None:
    assert container_ports(services["rabbitmq"]) == {5672, 15672}
    assert container_ports(services["postgres"]) == {5432}
    assert container_ports(services["jaeger"]) == {16686, 4318}


def test_commands(services: dict[str, dict[str, Any]]) -> None:
    assert command(services["worker"])[:2] == ["dramatiq", "app.actors"]
    assert command(services["clock"]) == ["periodiq", "app.actors"]
    assert command(services["migrate"]) == ["punchclock", "migrate"]


def test_startup_order(services: dict[str, dict[str, Any]]) -> None:
    for name in ("rabbitmq", "postgres"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("worker", "clock"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_broker_url_points_at_the_rabbitmq_service(services: dict[str, dict[str, Any]]) -> None:
    default = urlsplit(DEFAULT_BROKER_URL)
    for name in PUNCHCLOCK_SERVICES:
        url = urlsplit(punchclock_env(services[name])["PUNCHCLOCK_BROKER_URL"])
        assert url.hostname == "rabbitmq", name
        assert url.port == default.port, name
        assert (url.scheme, url.path) == (default.scheme, default.path), name
        assert url.port in container_ports(services["rabbitmq"])


def test_database_url_points_at_the_postgres_service(services: dict[str, dict[str, Any]]) -> None:
    postgres = {key: str(value) for key, value in services["postgres"]["environment"].items()}
    for name in PUNCHCLOCK_SERVICES:
        url = urlsplit(punchclock_env(services[name])["PUNCHCLOCK_DATABASE_URL"])
        assert url.hostname == "postgres", name
        assert url.port in container_ports(services["postgres"])
        assert url.username == postgres["POSTGRES_USER"], name
        assert url.password == postgres["POSTGRES_PASSWORD"], name
        assert url.path == f"/{postgres['POSTGRES_DB']}", name


def test_every_compose_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        environment = service.get("environment") or {}
        used = {key for key in environment if key.startswith("PUNCHCLOCK_")}
        assert used <= SETTINGS_VARIABLES, f"{name}: not settings: {sorted(used - SETTINGS_VARIABLES)}"
    for name in PUNCHCLOCK_SERVICES:
        Settings.from_env(punchclock_env(services[name]))  # the values parse and pass the settings' checks


def test_rabbitmq_consumer_timeout_is_raised(services: dict[str, dict[str, Any]]) -> None:
    erl_args = services["rabbitmq"]["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    match = re.search(r"-rabbit consumer_timeout (\d+)", erl_args)
    assert match, erl_args
    assert int(match.group(1)) > CONSUMER_TIMEOUT.total_seconds() * 1000


def test_readme_documents_every_setting(readme: str) -> None:
    table = settings_table(readme)
    assert set(table) == SETTINGS_VARIABLES
    for field in fields(Settings):
        default = str(field.default).lower() if isinstance(field.default, bool) else str(field.default)
        if default:
            assert default in table[f"PUNCHCLOCK_{field.name.upper()}"], field.name


def test_readme_names_the_commands(readme: str) -> None:
    for text in ("make dev", "make test", "docker compose up"):
        assert text in readme, text
    assert "consumer_timeout 3600000" in (ROOT / "docs" / "operations.md").read_text()  # as compose.yaml sets it
