"""Who may do what: the one permission table of the admin.

Roles are ordered: 只读 viewer < 操作员 operator < 管理员 admin. Every route is either listed in
``PUBLIC`` / ``PUBLIC_PATHS`` (with the reason it needs no session) or resolved by ``required_role``
from ``PERMISSIONS``: an exact endpoint entry wins over its blueprint's ``"<blueprint>.*"`` entry. Each
entry is ``(role to read, role to change)``; reading is GET/HEAD, changing is any unsafe method
(POST, PUT, PATCH, DELETE), which also needs the session's CSRF token (``web.auth``). A route that
resolves to nothing is refused (fail closed), and ``tests/test_security_routes.py`` walks
``app.url_map`` so a new route without an entry fails the suite.

``require_role`` decorators in views may only make a route stricter than this table, never looser.

Seeing patient identifiers (names, ID numbers, phone numbers, addresses) in full is not a rank but a
setting per role (``patient_identifier_roles``, default admin only); every view that shows them
unmasked is written to the audit log.
"""

from __future__ import annotations

from web.models import Role

VIEWER, OPERATOR, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ADMIN

# Endpoints served without a session, and why.
PUBLIC: dict[str, str] = {
    "static": "CSS, JavaScript and vendored libraries: no data",
    "auth.login": "the login page itself (POST is CSRF-checked with the pre-login session token)",
}
# Paths served without a session, whatever their endpoint is called (operations' probes).
PUBLIC_PATHS: dict[str, str] = {
    "/healthz": "liveness probe for the process supervisor / load balancer: no data",
    "/readyz": "readiness probe (database, Redis reachable): no data",
    "/metrics": "Prometheus scrape endpoint: counters only, no patient data or secrets",
}

# endpoint or "<blueprint>.*" -> (role to read, role to change)
PERMISSIONS: dict[str, tuple[str, str]] = {
    # one's own session and password
    "auth.logout": (VIEWER, VIEWER),
    "users.own_password": (VIEWER, VIEWER),
    # daily work: everyone reads, operators act
    "dashboard.*": (VIEWER, OPERATOR),
    "uploads.*": (VIEWER, OPERATOR),
    "retries.*": (VIEWER, OPERATOR),
    "tasks.*": (VIEWER, OPERATOR),
    "stats.*": (VIEWER, OPERATOR),
    # configuration: mappings and dictionaries by operators ...
    "config.*": (VIEWER, OPERATOR),
    "config_fields.*": (VIEWER, OPERATOR),
    # ... but a regulator's endpoints, identity and credentials by admins only: whoever may change the
    # URL may send the credentials anywhere, and 测试连接 makes the server open a connection.
    "config_regulators.*": (VIEWER, ADMIN),
    "config_regulators.known_answer": (VIEWER, OPERATOR),  # a local computation with a pasted sample
    "config_platform.*": (VIEWER, ADMIN),  # retry policy, lease, retention
    "config_alerts.*": (ADMIN, ADMIN),  # alert channels hold addresses and robot tokens
    # users and the audit trail
    "users.*": (ADMIN, ADMIN),
    "users.audit_log": (OPERATOR, ADMIN),
}

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Unsafe requests that are accepted without the CSRF token: none. (Listed here so a change is visible.)
CSRF_EXEMPT: dict[str, str] = {}

# Roles that see patient identifiers in full unless the setting says otherwise.
DEFAULT_PATIENT_IDENTIFIER_ROLES = (ADMIN,)


def is_public(endpoint: str | None, rule: str | None) -> bool:
    return endpoint in PUBLIC or rule in PUBLIC_PATHS


def _plugin_table() -> dict[str, tuple[str, str]]:
    from flask import current_app, has_app_context

    return current_app.extensions.get("baosong_permissions", {}) if has_app_context() else {}


def entry_for(endpoint: str) -> tuple[str, str] | None:
    """The admin's own table first, then what plugins declared for their pages (``AdminPages.permissions``)."""
    plugin_table = _plugin_table()
    for table in (PERMISSIONS, plugin_table):
        if endpoint in table:
            return table[endpoint]
    blueprint = endpoint.rsplit(".", 1)[0] if "." in endpoint else ""
    if not blueprint:
        return None
    return PERMISSIONS.get(f"{blueprint}.*") or plugin_table.get(f"{blueprint}.*")


def checked_plugin_entries(plugin: str, blueprint: str, declared: dict[str, tuple[str, str]]
                           ) -> dict[str, tuple[str, str]]:
    """A plugin's permission entries for its own blueprint (viewers read, operators change unless it says
    otherwise). Entries for another blueprint, or naming an unknown role, are ignored and logged: a plugin
    cannot loosen the admin's own pages."""
    import logging

    entries: dict[str, tuple[str, str]] = {}
    for endpoint, roles in (declared or {}).items():
        if not endpoint.startswith(f"{blueprint}.") or endpoint in PERMISSIONS or len(tuple(roles)) != 2 \
                or any(r not in Role.ALL for r in roles):
            logging.getLogger("baosong.web").error("plugin %s: permission entry %s=%s ignored", plugin, endpoint,
                                                   roles)
            continue
        entries[endpoint] = tuple(roles)
    entries.setdefault(f"{blueprint}.*", (VIEWER, OPERATOR))
    return entries


def required_role(endpoint: str | None, method: str) -> str | None:
    """The least role that may use ``endpoint`` with ``method``; None: not declared (refused)."""
    if not endpoint:
        return None
    entry = entry_for(endpoint)
    if entry is None:
        return None
    return entry[0] if method.upper() in READ_METHODS else entry[1]


def patient_identifier_roles() -> frozenset[str]:
    """Roles that see patient identifiers unmasked (the ``patient_identifier_roles`` flag)."""
    from core import settings

    try:
        value = settings.flag("patient_identifier_roles")
    except Exception:  # no database yet: the safe default
        value = ",".join(DEFAULT_PATIENT_IDENTIFIER_ROLES)
    return frozenset(r.strip() for r in value.split(",") if r.strip() in Role.ALL)


def may_see_patient_identifiers(role: str | None) -> bool:
    return bool(role) and role in patient_identifier_roles()


def table() -> list[tuple[str, str, str]]:
    """The table as rows (endpoint pattern, read role label, change role label), for documentation."""
    return [(name, Role.LABELS[read], Role.LABELS[write]) for name, (read, write) in PERMISSIONS.items()]
