"""The server's guard: requests naming a foreign host (DNS rebinding, cross-site pages) are refused, and a
login cannot be guessed at speed. The app is launched for real on 127.0.0.1 and probed with httpx."""
import asyncio

import httpx
import pytest
from gradio_client import Client

from conftest import free_port
from sdtrainer.ui.app import build_app
from sdtrainer.ui.guard import LoginLimiter, host_name, slow_login


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    blocks = build_app(root / "models", root / "outputs")
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                  allowed_hosts=("studio.lan",))
    yield blocks
    blocks.close()


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard-auth")
    blocks = build_app(root / "models", root / "outputs")
    blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                  auth=("joe", "s3cret"))
    yield blocks
    blocks.close()


def get(app, path: str, **headers) -> httpx.Response:
    return httpx.get(app.local_url + path, headers=headers, timeout=30)


@pytest.mark.parametrize("path", ["", "config", "gradio_api/info", "gradio_api/openapi.json", "theme.css"])
def test_a_rebound_name_is_refused_everywhere(app, path):
    port = app.server_port
    rebound = get(app, path, Host=f"attacker.example:{port}", Origin=f"http://attacker.example:{port}")
    assert rebound.status_code == 403 and "--allow-host" in rebound.text
    assert get(app, path, Host=f"attacker.example:{port}").status_code == 403  # a plain GET, no Origin
    assert get(app, path, Host=f"localhost:{port}").status_code == 200


def test_a_foreign_page_cannot_post_to_the_local_app(app):
    """Classic cross-site request: the page's own origin, sent to 127.0.0.1."""
    url = app.local_url + "gradio_api/call/refresh_lists"
    foreign = httpx.post(url, json={"data": []}, headers={"Origin": "http://attacker.example"}, timeout=30)
    same = httpx.post(url, json={"data": []}, headers={"Origin": app.local_url.rstrip("/")}, timeout=30)
    assert foreign.status_code == 403 and same.status_code == 200


def test_the_apps_own_page_and_named_hosts_work(app):
    port = app.server_port
    assert get(app, "", Host=f"127.0.0.1:{port}", Origin=f"http://127.0.0.1:{port}").status_code == 200
    assert get(app, "config", Host=f"studio.lan:{port}", Origin=f"http://studio.lan:{port}").status_code == 200
    assert get(app, "config", Host=f"[::1]:{port}").status_code == 200
    assert Client(app.local_url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]


def test_host_names_are_compared_without_port_case_or_final_dot():
    assert host_name("LOCALHOST.:7860") == "localhost"
    assert host_name("http://[::1]:7860") == "::1" and host_name("studio.lan") == "studio.lan"


def test_a_login_is_throttled_after_repeated_failures():
    now = [0.0]
    limiter = LoginLimiter(allowed=3, window_s=60, clock=lambda: now[0])
    check = slow_login("joe", "s3cret", limiter, delay_s=0)

    def login(user, password):
        return asyncio.run(check(user, password))

    assert login("joe", "s3cret")
    assert not any(login("joe", guess) for guess in ("a", "b", "c"))
    assert not login("joe", "s3cret")  # locked: even the right password waits for the window to pass
    now[0] = 61
    assert login("joe", "s3cret") and not login("joe", "s3cret ")


def test_the_login_page_shows_nothing_of_the_api_or_the_servers_folders(auth_app):
    login_page = get(auth_app, "")
    assert login_page.status_code == 200 and '"auth_required":true' in login_page.text
    assert str(auth_app.state.outputs_dir) not in login_page.text and "dataset_import" not in login_page.text
    with httpx.Client(base_url=auth_app.local_url, timeout=30) as browser:
        assert browser.post("login", data={"username": "joe", "password": "s3cret"}).status_code == 200
        page = browser.get("")
        assert "dataset_import" in page.text and str(auth_app.state.outputs_dir) in page.text


def test_a_wrong_password_is_answered_slowly_and_the_right_one_lets_in(auth_app):
    import time

    started = time.monotonic()
    wrong = httpx.post(auth_app.local_url + "login", data={"username": "joe", "password": "guess"}, timeout=30)
    assert wrong.status_code >= 400 and time.monotonic() - started >= 0.9
    assert Client(auth_app.local_url, auth=("joe", "s3cret"), verbose=False).view_api(print_info=False,
                                                                                         return_format="dict")
