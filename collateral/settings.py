"""One settings object, read from the environment (prefix ``AGRI_``).

Each process builds it once at its edge (the CLI's group, ``agri serve``) and passes it
down: no module reads the environment on its own, so every path that uses a setting
(the ingester, the API, the CLI, the demo) decides with the same value.
"""

import os
from datetime import timedelta
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from remote_sensing.imagery.http_assets import (
    S3_CREDENTIALS,
    parse_allowed_hosts,
    s3_buckets,
    s3_credentials_configured,
)


class Settings(BaseSettings):
    """Where state lives. Defaults keep everything in ``./var`` on one machine."""

    model_config = SettingsConfigDict(env_prefix="AGRI_")

    database_url: str = "sqlite:///./var/agri.db"
    data_dir: Path = Path("./var/data")
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_ca_file: str | None = None  # CA bundle for mqtts:// brokers with a private CA
    gateway_offline_minutes: float = 30.0  # no message from a gateway this long: offline
    dask_scheduler: str | None = None  # tcp://HOST:PORT: imagery scenes run on that cluster
    api_rate_per_s: float = 20.0  # sustained requests per second per API key (per process)
    api_rate_burst: int = 60  # requests a key may send at once before the rate applies
    # hosts whose http(s) asset URLs, and s3://buckets whose objects, the imagery job may
    # read (comma separated); none: only files inside the inbox are read
    imagery_allowed_hosts: str = ""
    stac_api: str | None = None  # the STAC API `agri imagery sync` searches by default
    stac_collections: str = ""  # its collections, comma separated
    # how its asset URLs are signed (stac_sync.SIGNERS; "none"); default: by the API's host
    stac_sign: str | None = None
    claim_max_ha: float = 200.0  # the largest plot one claim may draw (hectares)
    # notifications: smtp://[user:password@]host[:port][?starttls=1], the From address,
    # and how many failed attempts make a delivery dead
    smtp_url: str | None = None
    smtp_from: str = "agri-collateral@localhost"
    notify_max_attempts: int = 8

    @property
    def collections(self) -> list[str]:
        return [c.strip() for c in self.stac_collections.replace(",", " ").split() if c.strip()]

    @field_validator("imagery_allowed_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        # refuse a URL or path where a host name belongs, and S3 buckets with no
        # credentials to read them, at start rather than scene by scene
        buckets = s3_buckets(parse_allowed_hosts(value))
        if buckets and not s3_credentials_configured(os.environ, Path.home()):
            wanted = " or ".join("+".join(names) for names in S3_CREDENTIALS)
            raise ValueError(
                f"{', '.join(buckets)} listed but no S3 credentials are configured: set "
                f"{wanted} (AWS_NO_SIGN_REQUEST=YES for a public bucket), or write "
                "~/.aws/credentials"
            )
        return value

    @property
    def allowed_hosts(self) -> frozenset[str]:
        return parse_allowed_hosts(self.imagery_allowed_hosts)

    @property
    def gateway_offline_after(self) -> timedelta:
        return timedelta(minutes=self.gateway_offline_minutes)


def load_settings() -> Settings:
    return Settings()
