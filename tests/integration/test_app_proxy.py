"""The app proxy between browsers and an app of a session's own, on a port it declared."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import requests

from .conftest import run

APP_PORT = 8000

#: An app that sets a cookie on /set?v=... and answers /echo with the Cookie header it got.
COOKIE_APP = r"""
import http.server, urllib.parse

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/set":
            value = urllib.parse.parse_qs(url.query)["v"][0]
            body, extra = b"set", [("Set-Cookie", f"flavour={value}; Path=/")]
        else:
            body, extra = self.headers.get("Cookie", "").encode(), []
        self.send_response(200)
        for name, header in extra:
            self.send_header(name, header)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
"""

LAUNCH = """
import socket, subprocess, sys, time
open("cookie_app.py", "w").write({source!r}.replace("PORT", "{port}"))
subprocess.Popen([sys.executable, "cookie_app.py"], start_new_session=True)
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
print("listening")
"""


def _open(compute: Any) -> tuple[requests.Session, str]:
    """A browser that opened the app through a fresh link, and the app's root URL."""
    info = compute.start_service(str(APP_PORT), login_session_token="dummy")
    add = f"{info['wsproxy_addr']}/v2/proxy/{info['token']}/{compute.id}/add?app={APP_PORT}"
    url = requests.get(add, timeout=10).json()["url"]
    browser = requests.Session()
    assert browser.get(url, timeout=10).status_code == 200
    return browser, url.split("/_portside/")[0]


def test_cookies_an_app_sets_stay_with_the_browser_that_got_them(
    new_session: Callable[..., Any],
) -> None:
    compute = new_session(name=f"cookies-{uuid.uuid4().hex[:8]}", preopen_ports=[APP_PORT])
    assert run(compute, LAUNCH.format(source=COOKIE_APP, port=APP_PORT))[0] == "listening\n"
    first, root = _open(compute)
    second, _ = _open(compute)
    with first, second:
        assert first.get(f"{root}/set?v=first", timeout=10).text == "set"
        seen_by_first = first.get(f"{root}/echo", timeout=10).text
        seen_by_second = second.get(f"{root}/echo", timeout=10).text
    # The app gets its own cookie back from the browser it set it in, and never the proxy's
    # permit; the other browser, on the same circuit, does not get it.
    assert seen_by_first == "flavour=first"
    assert "flavour" not in seen_by_second
