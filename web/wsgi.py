"""WSGI entry for running the admin under a server of one's own choosing:
``gunicorn 'web.wsgi:app'`` (``baosong web`` does this with sensible options)."""

from core.config import require_production_ready
from core.logs import setup as setup_logging

require_production_ready()
setup_logging()

from web import create_app  # noqa: E402

app = create_app()
