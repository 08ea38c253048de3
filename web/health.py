"""Public endpoints for load balancers and monitors: /healthz (the process answers), /readyz (the
deployment can deliver, core.health) and /metrics (Prometheus, core.metrics; protected by a bearer
token when ``BAOSONG_METRICS_TOKEN`` is set). None shows data, so none needs a login."""

from __future__ import annotations

import hmac
import os

from flask import Blueprint, Response, abort, jsonify, request

bp = Blueprint("health", __name__)
PUBLIC = frozenset({"health.healthz", "health.readyz", "health.metrics"})


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    from core.health import readiness

    report = readiness()
    return jsonify(report), 200 if report["ready"] else 503


@bp.get("/metrics")
def metrics():
    token = os.environ.get("BAOSONG_METRICS_TOKEN", "")
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            abort(401)
    from core.metrics import CONTENT_TYPE, render

    return Response(render(), mimetype=CONTENT_TYPE.split(";")[0], content_type=CONTENT_TYPE)
