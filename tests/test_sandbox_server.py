"""The sandbox's HTTP server keeps connections alive the way a regulator's gateway does, and closes
them whenever a fault or an error leaves a connection unfit for another request."""

from __future__ import annotations

import socket

import pytest
import requests
from werkzeug.wrappers import Request, Response

from core import sandbox_faults
from core.hook_types import OutboundRequest


def _echo_app(seen: list[tuple[int, bytes]]):
    """Answers with the body it got; records (client port, body) — one port means one connection."""

    @Request.application
    def app(request: Request) -> Response:
        body = request.get_data()
        seen.append((request.environ["REMOTE_PORT"], body))
        if request.path == "/ignore-body":
            return Response(b"not read")
        if request.path == "/truncated":
            return sandbox_faults.truncated(request.environ, Response(b"x" * 200))
        if request.path == "/dropped":
            return sandbox_faults.dropped(request.environ)
        if request.path == "/error":
            raise RuntimeError("the app failed")
        return Response(body or b"empty")

    return app


@pytest.fixture
def echo(serve):
    seen: list[tuple[int, bytes]] = []
    return serve(_echo_app(seen)), seen


def test_a_session_sends_many_requests_over_one_connection(echo):
    url, seen = echo
    with requests.Session() as session:
        answers = [session.post(f"{url}/echo", data=f"upload {n}".encode()).text for n in range(5)]
    assert answers == [f"upload {n}" for n in range(5)]
    assert len({port for port, _ in seen}) == 1
    assert [body for _, body in seen] == [f"upload {n}".encode() for n in range(5)]


def test_a_body_the_app_never_read_does_not_bleed_into_the_next_request(echo):
    url, seen = echo
    with requests.Session() as session:
        assert session.post(f"{url}/ignore-body", data=b"A" * 5000).text == "not read"
        assert session.post(f"{url}/echo", data=b"second").text == "second"
    assert len({port for port, _ in seen}) == 1


@pytest.mark.parametrize("fault", ["truncated", "dropped", "error"])
def test_a_connection_that_carried_a_fault_is_closed_and_the_next_request_gets_a_fresh_one(echo, fault):
    url, seen = echo
    with requests.Session() as session:
        try:
            answer = session.post(f"{url}/{fault}", data=b"one", timeout=5)
        except requests.RequestException:
            answer = None
        if fault == "error":
            assert answer is not None and answer.status_code == 500
        else:
            assert answer is None  # cut short or dropped: the client never gets a whole answer
        assert session.post(f"{url}/echo", data=b"two", timeout=5).text == "two"
    assert len({port for port, _ in seen}) == 2


def test_a_client_asking_to_close_gets_its_connection_closed(echo):
    url, _ = echo
    answer = requests.post(f"{url}/echo", data=b"x", headers={"Connection": "close"})
    assert answer.headers.get("Connection", "").lower() == "close"


def test_a_stopped_server_answers_no_kept_alive_connection(serve):
    from core.sandbox import ServerThread

    seen: list[tuple[int, bytes]] = []
    thread = ServerThread(_echo_app(seen))
    thread.start()
    with requests.Session() as session:
        assert session.post(f"{thread.url}/echo", data=b"before").text == "before"
        thread.stop()
        with pytest.raises(requests.ConnectionError):
            session.post(f"{thread.url}/echo", data=b"after", timeout=5)
    assert [body for _, body in seen] == [b"before"]


def test_the_core_transport_reuses_its_connection_across_uploads(echo):
    from core import http

    url, seen = echo
    for n in range(3):
        answer = http.post(None, OutboundRequest(url=f"{url}/echo", body=f"u{n}", timeout=5))
        assert (answer.status, answer.body) == (200, f"u{n}")
    assert len({port for port, _ in seen}) == 1


def _connect_and_get(url: str) -> tuple[socket.socket, bytes]:
    """A raw connection to ``url``'s server that has sent one GET and read its whole answer."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while b"empty" not in received:
        received += sock.recv(4096)
    return sock, received


def test_an_idle_connection_is_closed_after_the_idle_timeout(monkeypatch, serve):
    from core import sandbox

    monkeypatch.setattr(sandbox.RawHeadersHandler, "timeout", 0.3)
    sock, received = _connect_and_get(serve(_echo_app([])))
    with sock:
        assert b"Connection: close" not in received
        assert sock.recv(4096) == b""  # closed by the server once idle for its timeout


def test_a_malformed_request_after_a_good_one_is_answered_with_close(echo):
    url, _ = echo
    sock, _ = _connect_and_get(url)
    with sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):  # until the server closes the connection
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 431") and b"Connection: close" in head
