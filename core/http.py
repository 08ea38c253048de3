"""The core's default ``post`` hook: HTTP with ``requests``; transport errors become a Response that
says how far the request got (``Response.transport``).

Only a request that certainly never left is ``not_sent`` (DNS failure, connection refused, connect
timeout, TLS handshake failure, a URL that cannot be sent). Everything that fails once the request
may have been written — a read timeout, a reset or disconnect, a truncated, badly chunked or
undecodable answer — is ``maybe_delivered``: the regulator may hold the data, so a resend must use
its idempotency means. An error we cannot place is ``maybe_delivered`` too.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from core.hook_types import (
    TRANSPORT_MAYBE,
    TRANSPORT_NOT_SENT,
    OutboundRequest,
    Response,
    UploadContext,
)
from core.hookspecs import hookimpl

_session = requests.Session()
# requests reads the proxy variables and ~/.netrc from the environment on every request (a few percent
# of a worker's time per upload); proxies are read once per host instead, and regulators authenticate
# by their own signatures, never by .netrc.
_session.trust_env = False
_proxies: dict[str, dict[str, str]] = {}


def _environ_proxies(url: str) -> dict[str, str]:
    """HTTP(S)_PROXY / NO_PROXY for this URL's scheme and host, read once per process."""
    parts = urlsplit(url)
    key = f"{parts.scheme}://{parts.netloc}"
    if key not in _proxies:
        _proxies[key] = requests.utils.get_environ_proxies(url)
    return _proxies[key]

# Raised before any byte of the request is written.
_NEVER_SENT = (
    requests.exceptions.ConnectTimeout,
    requests.exceptions.SSLError,  # the handshake precedes the request
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


@hookimpl(trylast=True)
def post(upload: UploadContext, request: OutboundRequest) -> Response:
    try:
        answer = _session.request(
            request.method,
            request.url,
            data=request.body.encode("utf-8") if isinstance(request.body, str) else request.body,
            headers=request.headers,
            timeout=request.timeout,
            proxies=_environ_proxies(request.url),
        )
        text = answer.text  # the body is read here; a truncated one raises
    except requests.RequestException as exc:
        return transport_error(exc)
    return Response(status=answer.status_code, body=text, headers=dict(answer.headers))


def transport_error(exc: Exception) -> Response:
    """A Response for a failed request, classified by how far it got."""
    transport = classify(exc)
    if isinstance(exc, requests.Timeout):
        label = "连接超时（未发出）" if transport == TRANSPORT_NOT_SENT else "等待应答超时（可能已送达）"
    elif transport == TRANSPORT_NOT_SENT:
        label = "连接失败（未发出）"
    else:
        label = "连接中断（可能已送达）"
    return Response(status=None, body="", error=f"{label}: {_short(exc)}", transport=transport)


def classify(exc: BaseException) -> str:
    """``not_sent`` when the request certainly never left, else ``maybe_delivered``."""
    if isinstance(exc, _NEVER_SENT):
        return TRANSPORT_NOT_SENT
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(
        exc, requests.exceptions.ChunkedEncodingError
    ):
        # requests wraps urllib3's MaxRetryError(reason=...) or ProtocolError(..., cause): look for the
        # connection never having been made.
        for cause in _causes(exc):
            if isinstance(cause, NewConnectionError | ConnectTimeoutError):  # NameResolutionError included
                return TRANSPORT_NOT_SENT
    return TRANSPORT_MAYBE


def _causes(exc: BaseException):
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (current.__cause__, current.__context__, getattr(current, "reason", None),
                       *[a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]):
            if isinstance(nested, BaseException):
                pending.append(nested)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "…"
