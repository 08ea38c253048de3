"""The core's default ``post`` hook: HTTP with ``requests``, transport errors become a Response."""

from __future__ import annotations

import requests

from core.hook_types import OutboundRequest, Response, UploadContext
from core.hookspecs import hookimpl

_session = requests.Session()


@hookimpl(trylast=True)
def post(upload: UploadContext, request: OutboundRequest) -> Response:
    try:
        answer = _session.request(
            request.method,
            request.url,
            data=request.body.encode("utf-8") if isinstance(request.body, str) else request.body,
            headers=request.headers,
            timeout=request.timeout,
        )
    except requests.Timeout as exc:
        return Response(status=None, body="", error=f"超时: {type(exc).__name__}")
    except requests.ConnectionError as exc:
        return Response(status=None, body="", error=f"连接失败: {_short(exc)}")
    except requests.RequestException as exc:
        return Response(status=None, body="", error=f"请求失败: {_short(exc)}")
    return Response(status=answer.status_code, body=answer.text, headers=dict(answer.headers))


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "…"
