"""The admin's commands, added to ``baosong`` through the ``register_commands`` hook (web/plugin.py):
``web`` (serve the admin), ``create-admin`` (make an admin account or give it a new password) and
``demo`` (everything on embedded defaults, demo/run.py)."""

from __future__ import annotations

import click


@click.command("create-admin")
@click.option("--username", default="admin", show_default=True, help="用户名")
@click.option("--reset", is_flag=True, help="用户已存在时重置其密码（并设为管理员）")
def create_admin_command(username: str, reset: bool) -> None:
    """Create an admin with a random password, printed once."""
    import sqlalchemy as sa

    from core.bootstrap import init_db
    from core.db import db
    from web import audit, create_app
    from web.auth import hash_password
    from web.models import Role, User
    from web.users import create_user, generate_password

    app = create_app()
    init_db(app)  # a new database gets its schema first
    with app.app_context():
        user = db.session.execute(
            sa.select(User).where(sa.func.lower(User.username) == username.lower())
        ).scalar_one_or_none()
        password = generate_password()
        if user is None:
            create_user(username, Role.ADMIN, password)
            audit.record("user.create", username, after={"role": Role.ADMIN}, actor="cli")
        elif reset:
            before = {"role": user.role, "active": user.active}
            user.password_hash = hash_password(password)
            user.role, user.active = Role.ADMIN, True
            user.session_version += 1
            audit.record("user.password", username, before=before, after={"role": Role.ADMIN, "active": True},
                         actor="cli")
        else:
            raise click.ClickException(f"用户 {username} 已存在；如需重置密码请加 --reset")
        db.session.commit()
    click.echo(f"管理员：{username}")
    click.echo(f"密码：{password}（只显示这一次，请登录后修改）")


@click.command("web")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
def web_command(host: str, port: int) -> None:
    """Serve the admin."""
    from web import create_app

    create_app().run(host=host, port=port, debug=False, use_reloader=False, threaded=True)


@click.command("demo")
@click.option("--port", default=5000, type=int)
@click.option("--sandbox-port", default=5001, type=int)
@click.option("--workers", default=1, type=int)
def demo_command(port: int, sandbox_port: int, workers: int) -> None:
    """Run everything on embedded defaults: admin, worker, scheduler, sandboxes, demo hospital."""
    from demo.run import run

    run(port=port, sandbox_port=sandbox_port, workers=workers)


COMMANDS = (web_command, create_admin_command, demo_command)
