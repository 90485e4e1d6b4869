"""URLs that name a secret (conveyor.secrets) against Secrets Manager and SSM on moto's server."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from servers.aws import client, unique_name

from conveyor.secrets import read_secret
from conveyor.settings import Settings

PASSWORD = "p@ss/w:rd hunter2"


@pytest.fixture
def secrets(moto_server: str) -> Iterator[dict[str, str]]:
    read_secret.cache_clear()
    manager, ssm = client("secretsmanager"), client("ssm")
    rds = manager.create_secret(
        Name=unique_name("rds"), SecretString=json.dumps({"username": "bob", "password": PASSWORD})
    )["ARN"]
    whole = manager.create_secret(
        Name=unique_name("url"), SecretString=f"postgresql://bob:{PASSWORD}@db:5432/conveyor"
    )["ARN"]
    parameter = f"/{unique_name('conveyor')}/catalog-password"
    ssm.put_parameter(Name=parameter, Value=PASSWORD, Type="SecureString")
    yield {"rds": rds, "whole": whole, "parameter": parameter}
    read_secret.cache_clear()


def test_a_password_from_a_secret_or_a_parameter(secrets: dict[str, str]) -> None:
    settings = Settings(
        catalog_url=f"postgresql://bob@db:5432/conveyor?password_secret={secrets['rds']}&schema=x",
        queue_url=f"postgresql://bob@db/conveyor?password_parameter={secrets['parameter']}",
    )
    assert (
        settings.catalog_url
        == "postgresql://bob:p%40ss%2Fw%3Ard%20hunter2@db:5432/conveyor?schema=x"
    )
    assert settings.queue_url == "postgresql://bob:p%40ss%2Fw%3Ard%20hunter2@db/conveyor"
    from urllib.parse import unquote, urlsplit

    assert unquote(urlsplit(settings.catalog_url).password or "") == PASSWORD


def test_a_whole_url_from_a_secret_read_once(
    secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_VECTORS_URL", f"secretsmanager://{secrets['whole']}")
    monkeypatch.setenv("CONVEYOR_CATALOG_URL", f"ssm://{secrets['parameter']}")
    first = Settings()
    assert first.vectors_url == f"postgresql://bob:{PASSWORD}@db:5432/conveyor"
    assert first.catalog_url == PASSWORD
    misses = read_secret.cache_info().misses
    assert Settings().vectors_url == first.vectors_url
    assert read_secret.cache_info().misses == misses  # read once per process


def test_a_missing_secret_names_itself_and_nothing_else(
    secrets: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    missing = secrets["rds"][:-6] + "nope00"
    with pytest.raises(ValueError) as info:
        Settings(catalog_url=f"postgresql://bob@db/c?password_secret={missing}")
    message = str(info.value)
    assert "CONVEYOR_CATALOG_URL" in message and missing in message
    assert "ResourceNotFoundException" in message
    Settings(catalog_url=f"postgresql://bob@db/c?password_secret={secrets['rds']}")
    assert "hunter2" not in caplog.text  # nothing logged the value (boto3's debug logs included)
    with pytest.raises(ValueError, match="no user"):
        Settings(catalog_url=f"postgresql://db/c?password_secret={secrets['rds']}")
