"""``core.http`` says how far a failed request got, against real sockets: only a request that certainly
never left is "not_sent"; anything after the request may have been written is "maybe_delivered"."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import free_port

from core import http
from core.hook_types import TRANSPORT_ANSWERED, TRANSPORT_MAYBE, TRANSPORT_NOT_SENT, OutboundRequest, Response


class RawServer:
    """A TCP server on loopback that reads one HTTP request per connection and then does ``behaviour``."""

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.heads: list[bytes] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/report"
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        data = b""
        conn.settimeout(5)
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(body) < length:
                body += conn.recv(65536)
            self.requests.append(body)
            self.heads.append(head)
            self.behaviour(conn)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.sock.close()


@pytest.fixture
def raw_server():
    servers = []

    def start(behaviour):
        server = RawServer(behaviour)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def send(url: str, timeout=2.0) -> Response:
    return http.post(upload=None, request=OutboundRequest(url=url, body='{"n": 1}', timeout=timeout))


def closes_at_once(conn):
    pass


def answers(status_line: bytes, headers: bytes, body: bytes):
    def behaviour(conn):
        conn.sendall(status_line + b"\r\n" + headers + b"\r\n" + body)
    return behaviour


def never_answers(conn):
    time.sleep(3)


def resets(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def test_a_refused_connection_is_not_sent():
    response = send(f"http://127.0.0.1:{free_port()}/report")
    assert response.status is None
    assert response.transport == TRANSPORT_NOT_SENT
    assert "未发出" in response.error


def test_an_unresolvable_host_is_not_sent():
    response = send("http://no-such-host.invalid/report")
    assert response.transport == TRANSPORT_NOT_SENT


def test_a_url_that_cannot_be_sent_is_not_sent():
    assert send("nonsense-url").transport == TRANSPORT_NOT_SENT


def test_a_connect_timeout_is_not_sent():
    # A listener that never accepts, with its backlog filled: the kernel drops further SYNs, so the
    # client's connect times out (the request cannot have left).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
        response = send(f"http://127.0.0.1:{port}/report", timeout=(0.5, 5))
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert response.transport == TRANSPORT_NOT_SENT
    assert "超时" in response.error


def test_a_server_that_closes_after_reading_the_request_may_have_stored_it(raw_server):
    server = raw_server(closes_at_once)
    response = send(server.url)
    assert server.requests == [b'{"n": 1}']  # it did arrive
    assert response.status is None
    assert response.transport == TRANSPORT_MAYBE
    assert "可能已送达" in response.error


def test_a_reset_after_reading_the_request_may_have_delivered(raw_server):
    server = raw_server(resets)
    response = send(server.url)
    assert server.requests and response.transport == TRANSPORT_MAYBE


def test_a_read_timeout_may_have_delivered(raw_server):
    server = raw_server(never_answers)
    response = send(server.url, timeout=0.5)
    assert response.transport == TRANSPORT_MAYBE
    assert "超时" in response.error


def test_a_truncated_body_may_have_delivered(raw_server):
    server = raw_server(answers(b"HTTP/1.1 200 OK", b"Content-Length: 100\r\nConnection: close\r\n",
                                b'{"code": 0'))
    response = send(server.url)
    assert response.status is None
    assert response.transport == TRANSPORT_MAYBE


def test_bad_chunking_may_have_delivered(raw_server):
    server = raw_server(answers(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked\r\nConnection: close\r\n",
                                b"zz\r\nnot a chunk\r\n"))
    response = send(server.url)
    assert response.transport == TRANSPORT_MAYBE


def test_an_undecodable_body_may_have_delivered(raw_server):
    server = raw_server(answers(b"HTTP/1.1 200 OK",
                                b"Content-Encoding: gzip\r\nContent-Length: 12\r\nConnection: close\r\n",
                                b"not gzip!!!!"))
    response = send(server.url)
    assert response.transport == TRANSPORT_MAYBE


def test_an_http_status_is_answered_even_a_500(raw_server):
    server = raw_server(answers(b"HTTP/1.1 500 Internal Server Error",
                                b"Content-Length: 5\r\nConnection: close\r\n", b"oops!"))
    response = send(server.url)
    assert (response.status, response.body, response.transport) == (500, "oops!", TRANSPORT_ANSWERED)


def test_a_response_without_transport_defaults_by_whether_a_status_came_back():
    assert Response(status=200, body="").transport == TRANSPORT_ANSWERED
    # A plugin's own transport that cannot tell is never taken as "not sent".
    assert Response(status=None, body="", error="boom").transport == TRANSPORT_MAYBE
    assert Response(status=None, body="", transport=TRANSPORT_NOT_SENT).transport == TRANSPORT_NOT_SENT


def test_a_proxy_set_in_the_environment_carries_the_request_and_no_proxy_is_honoured(raw_server, monkeypatch):
    proxy = raw_server(answers(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\n", b"ok"))
    direct = raw_server(answers(b"HTTP/1.1 200 OK", b"Content-Length: 2\r\n", b"ok"))
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(http, "_proxies", {})
    assert send("http://regulator.example.invalid/report").status == 200  # a name only the proxy resolves
    assert proxy.heads[0].startswith(b"POST http://regulator.example.invalid/report HTTP/1.1")
    assert send(direct.url).status == 200
    assert len(proxy.heads) == 1 and direct.heads[0].startswith(b"POST /report HTTP/1.1")
