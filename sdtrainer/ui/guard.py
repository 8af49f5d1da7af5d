"""Who may talk to the server: the hosts a request may name, and a login that cannot be guessed at speed.

    app.launch(server_name="127.0.0.1", app_kwargs={"middleware": [host_guard(["127.0.0.1"])]},
               auth=slow_login("joe", "s3cret"))

DNS rebinding: a web page the user visits can point its own name at 127.0.0.1, and its scripts then reach
the app as if they were the app's own page. Such requests name the attacker's host in `Host` (and
`Origin`), so a request is served only when `Host` names this computer (an IP address, `localhost`, or a
name given with --listen / --allow-host) and its `Origin`, when the browser sends one, is the same host or
another allowed one. Anything else gets 403 before Gradio sees it.
"""
from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse

from sdtrainer.messages import Message

LOOPBACK_NAMES = ("localhost",)
LOGIN_FAILURES_ALLOWED = 5  # within LOGIN_WINDOW_S; then every login is refused until the window has passed
LOGIN_WINDOW_S = 60.0
LOGIN_FAILURE_DELAY_S = 1.0  # each wrong password waits this long before its answer


def host_name(value: str) -> str:
    """'127.0.0.1:7860' -> '127.0.0.1', '[::1]:7860' -> '::1', 'http://Box.local:7860' -> 'box.local'."""
    value = value.strip()
    netloc = urlsplit(value).netloc if "://" in value else value
    return (urlsplit(f"//{netloc}").hostname or "").rstrip(".").lower()


def is_ip_address(name: str) -> bool:
    """An IP address cannot be rebound: only a name can be made to point at this computer."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def this_computers_names() -> list[str]:
    """The names other computers on the network may use for this one (for --listen)."""
    name = socket.gethostname()
    return [name, f"{name}.local", socket.getfqdn()]


class HostGuard:
    """ASGI middleware: 403 unless the request's Host and Origin name this computer (see the module docstring)."""

    def __init__(self, app, hosts: Iterable[str] = ()):
        self.app = app
        self.hosts = {host_name(h) for h in (*LOOPBACK_NAMES, *hosts)}
        self.any_host = "*" in hosts

    def allowed(self, headers: Headers) -> bool:
        if self.any_host:
            return True
        host = host_name(headers.get("host", ""))
        origin = headers.get("origin")
        if not self.known(host):
            return False
        return origin is None or host_name(origin) == host or self.known(host_name(origin))

    def known(self, name: str) -> bool:
        return bool(name) and (is_ip_address(name) or name in self.hosts)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed(Headers(scope=scope)):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await PlainTextResponse(Message("server_foreign_host"), status_code=403)(scope, receive, send)


def host_guard(hosts: Iterable[str] = ()) -> Middleware:
    """HostGuard for FastAPI(middleware=[...]) (Gradio's launch(app_kwargs=...)); "*" lets every host in."""
    return Middleware(HostGuard, hosts=list(hosts))


API_INFO_START = b"window.gradio_api_info = "
NO_API_INFO = API_INFO_START + b'{"named_endpoints": {}, "unnamed_endpoints": {}};'
LOGIN_PAGE_MARK = b'"auth_required":true'


class RewritePages:
    """ASGI middleware: HTML pages pass through `rewrite(body)` (e.g. without_api_info); other responses untouched."""

    def __init__(self, app, rewrite: Callable[[bytes], bytes]):
        self.app, self.rewrite = app, rewrite

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body = bytearray()

        async def buffered(message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                if b"text/html" not in Headers(raw=message["headers"]).get("content-type", "").encode():
                    start["pass"] = True
                    await send(message)
            elif start.get("pass"):
                await send(message)
            else:
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    page = self.rewrite(bytes(body))
                    headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                    await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
                    await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, buffered)


def without_api_info(page: bytes) -> bytes:
    """A login page (Gradio's config says auth_required) with an empty API description; other pages as they are.
    Gradio 6 embeds the whole description (every endpoint, with the server's folders as default values) in it."""
    start = page.find(API_INFO_START)
    if LOGIN_PAGE_MARK not in page or start < 0:
        return page
    end = page.find(b"</script>", start)
    return page[:start] + NO_API_INFO + page[end:]


class LoginLimiter:
    """Counts recent failed logins; a window with too many of them refuses every login until it has passed."""

    def __init__(self, allowed: int = LOGIN_FAILURES_ALLOWED, window_s: float = LOGIN_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic):
        self.allowed, self.window_s, self.clock = allowed, window_s, clock
        self.failures: deque[float] = deque()

    def locked(self) -> bool:
        now = self.clock()
        while self.failures and now - self.failures[0] > self.window_s:
            self.failures.popleft()
        return len(self.failures) >= self.allowed

    def failed(self) -> None:
        self.failures.append(self.clock())


def slow_login(user: str, password: str, limiter: LoginLimiter | None = None,
               delay_s: float = LOGIN_FAILURE_DELAY_S) -> Callable[[str, str], Awaitable[bool]]:
    """Gradio's `auth` callable for one login: compares in constant time, answers a wrong password only after
    delay_s, and refuses every attempt while too many failed recently (so a password cannot be guessed at speed)."""
    limiter = limiter or LoginLimiter()

    async def check(given_user: str, given_password: str) -> bool:
        if limiter.locked():
            return False
        ok = secrets.compare_digest(given_user.encode(), user.encode()) & \
            secrets.compare_digest(given_password.encode(), password.encode())
        if not ok:
            limiter.failed()
            await asyncio.sleep(delay_s)
        return ok

    return check
