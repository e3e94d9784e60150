"""``deeptrust serve``: the review app on uvicorn, over a moderation database.

The database is migrated first, as every command that writes it does. The log names the
database without its password.
"""

from __future__ import annotations

import logging
import os

from sqlalchemy.engine import make_url
from starlette.types import ASGIApp

from pipelines.moderation.app import BodyLimit, ServeSettings, create_app
from pipelines.moderation.identity import FormTokens
from pipelines.moderation.review import open_database

# A key shared by several copies of the app behind one proxy, so a form made by one is taken by
# another; without it each process makes its own.
SECRET_ENV = "DEEPTRUST_SERVE_SECRET"
DEFAULT_MAX_UPLOAD_BYTES = 256 << 20
_LOG = logging.getLogger("deeptrust.serve")


def safe_url(url: str) -> str:
    """The database URL with its password masked, for logs and pages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: say nothing of it
        return "(the --db URL)"


def form_tokens() -> FormTokens:
    secret = os.environ.get(SECRET_ENV)
    if secret is None:
        return FormTokens()
    if len(secret) < 16:
        raise ValueError(f"${SECRET_ENV} must be at least 16 characters")
    return FormTokens(secret.encode())


def build(db_url: str, settings: ServeSettings, upload_bytes: int) -> ASGIApp:
    """The app, ready for any ASGI server, and its database engine migrated."""
    settings.identity.check()
    engine = open_database(db_url)
    return BodyLimit(create_app(engine, settings), upload_bytes)


def run(db_url: str, host: str, port: int, settings: ServeSettings, upload_bytes: int) -> None:
    """Serve until interrupted (Ctrl+C or SIGTERM end it cleanly)."""
    import uvicorn

    app = build(db_url, settings, upload_bytes)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _LOG.info(
        "deeptrust serve: http://%s:%d/ over %s; moderators named by %s",
        host,
        port,
        safe_url(db_url),
        f"--dev-user {settings.identity.dev_user}"
        if settings.identity.dev_user
        else f"{settings.identity.header} from {', '.join(map(str, settings.identity.trusted))}",
    )
    if settings.identity.dev_user and host not in ("127.0.0.1", "::1", "localhost"):
        _LOG.warning(
            "--dev-user %s on %s: anyone who reaches this address decides as that moderator",
            settings.identity.dev_user,
            host,
        )
    uvicorn.run(
        app, host=host, port=port, log_level="info", server_header=False, proxy_headers=False
    )
