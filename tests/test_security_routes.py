"""Every route of the admin, walked from ``app.url_map``: it is public on purpose (listed with a reason),
or ``web.permissions`` gives it a role for each method, and the guard enforces that role and the CSRF
token. A route added without an entry fails here (and is refused at run time)."""

from __future__ import annotations

import pytest
from test_web_support import csrf_from, login

from web import permissions
from web.models import Role

SKIPPED_METHODS = {"HEAD", "OPTIONS"}


def _url(rule) -> str:
    """A concrete URL for a rule (any value: the guard decides before the view looks it up)."""
    values = {}
    for name in rule.arguments:
        converter = rule._converters[name].__class__.__name__
        values[name] = 1 if converter in ("IntegerConverter", "FloatConverter") else "x"
    return rule.build(values, append_unknown=False)[1]


def _token_auth(rule) -> bool:
    """A plugin API that authenticates each request with a bearer token instead of the session cookie
    (``web.auth.TOKEN_AUTH_BLUEPRINTS``): no cookie, so no CSRF; its views state their roles themselves."""
    from web.auth import TOKEN_AUTH_BLUEPRINTS

    return rule.endpoint.rsplit(".", 1)[0] in TOKEN_AUTH_BLUEPRINTS


def _rules(app):
    return [r for r in app.url_map.iter_rules()
            if not permissions.is_public(r.endpoint, r.rule) and not _token_auth(r)]


def _effective_role(app, endpoint: str, method: str) -> str:
    table = permissions.required_role(endpoint, method)
    decorated = getattr(app.view_functions[endpoint], "required_role", None)
    roles = [r for r in (table, decorated) if r]
    return max(roles, key=Role.RANK.__getitem__)


def test_every_route_is_public_with_a_reason_or_has_a_role_for_each_method(app):
    missing = []
    for rule in app.url_map.iter_rules():
        if permissions.is_public(rule.endpoint, rule.rule):
            reason = permissions.PUBLIC.get(rule.endpoint) or permissions.PUBLIC_PATHS.get(rule.rule)
            assert reason and len(reason) > 10, rule.endpoint
            continue
        if _token_auth(rule):
            view = app.view_functions[rule.endpoint]
            if getattr(view, "required_role", None) not in Role.ALL or not getattr(view, "token_auth", False):
                missing.append(f"{rule.rule} ({rule.endpoint}: token API without a stated role)")
            continue
        for method in rule.methods - SKIPPED_METHODS:
            if permissions.required_role(rule.endpoint, method) is None:
                missing.append(f"{method} {rule.rule} ({rule.endpoint})")
    assert not missing, "routes without an entry in web/permissions.py: " + ", ".join(missing)


def test_token_api_routes_refuse_a_request_without_a_token(app):
    client = app.test_client()
    token_rules = [r for r in app.url_map.iter_rules() if _token_auth(r)]
    for rule in token_rules:
        for method in sorted(rule.methods - SKIPPED_METHODS):
            answer = client.open(_url(rule), method=method)
            assert answer.status_code == 401, (method, rule.rule)
    assert not permissions.CSRF_EXEMPT  # no unsafe route goes without the token


def test_decorators_never_loosen_the_table(app):
    for rule in _rules(app):
        decorated = getattr(app.view_functions[rule.endpoint], "required_role", None)
        if decorated is None:
            continue
        for method in rule.methods - SKIPPED_METHODS:
            table = permissions.required_role(rule.endpoint, method)
            # A decorator may only tighten; the guard applies the table first anyway.
            assert Role.RANK[decorated] >= Role.RANK[table] or method in permissions.READ_METHODS, \
                (rule.endpoint, method, decorated, table)


def test_without_a_session_every_non_public_route_goes_to_the_login(app):
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    for rule in _rules(app):
        url = _url(rule)
        for method in sorted(rule.methods - SKIPPED_METHODS):
            answer = client.open(url, method=method, data={"csrf_token": token})
            assert answer.status_code == 302 and "/login" in answer.headers["Location"], (method, url)


@pytest.mark.slow  # three logins, every route several times
def test_every_route_refuses_a_lower_role_and_every_unsafe_method_needs_the_csrf_token(app):
    clients = {role: login(app, role) for role in Role.ALL}
    checked = 0
    for rule in _rules(app):
        url = _url(rule)
        for method in sorted(rule.methods - SKIPPED_METHODS):
            needed = _effective_role(app, rule.endpoint, method)
            for role in Role.ALL:
                if Role.RANK[role] >= Role.RANK[needed]:
                    continue
                client = clients[role]
                answer = client.raw.open(url, method=method, data={"csrf_token": client.token})
                assert answer.status_code == 403, (role, method, url, answer.status_code)
                checked += 1
            if method in permissions.UNSAFE_METHODS:
                # Even the most privileged user is refused without the token, before the view runs.
                answer = clients[Role.ADMIN].raw.open(url, method=method, data={})
                assert answer.status_code == 400 and "CSRF" in answer.get_data(as_text=True), (method, url)
                wrong = clients[Role.ADMIN].raw.open(url, method=method, data={"csrf_token": "forged"})
                assert wrong.status_code == 400, (method, url)
                checked += 1
    assert checked > 50


def test_a_route_missing_from_the_table_is_refused_even_to_an_admin(database_url, redis_conn):
    from core.db import db
    from web import create_app

    application = create_app()
    application.config["TESTING"] = True

    @application.get("/undeclared")
    def undeclared():
        return "should not be served"

    with application.app_context():
        from conftest import (
            _fresh_schema,  # the loaded conftest (importing tests.conftest would run it again)
        )

        _fresh_schema(database_url)
        client = login(application, Role.ADMIN)
        answer = client.get("/undeclared")
        assert answer.status_code == 403 and "没有权限" in answer.get_data(as_text=True)
        db.session.remove()
