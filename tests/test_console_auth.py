"""The console's session and CSRF rules: nothing before signing in, every change with the session's token and
from the console's own pages, cookies a browser keeps to this site, sign-out closing everything; the admin API
keeps its Bearer token."""

from __future__ import annotations

from pathlib import Path

import pytest
from console_env import TOKEN, ConsoleEnv, console_env

from sluice.console.session import SessionStore, csrf_ok, same_origin


@pytest.fixture
def env(tmp_path: Path):
    with console_env(tmp_path / "data") as e:
        e.catalog.create_source("drip", "Secret Shop Drip", "secretshop")
        yield e


PAGES = ["/", "/sources", "/sources/new", "/sources/1", "/sources/1/delete"]


@pytest.mark.parametrize("path", PAGES)
def test_nothing_is_visible_before_signing_in(env: ConsoleEnv, path: str) -> None:
    r = env.client.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"
    page = env.client.get(path).text  # followed: the sign-in form, and no source name
    assert "Admin token" in page
    assert "Secret Shop" not in page and "secretshop" not in page


def test_changes_without_a_session_are_refused(env: ConsoleEnv) -> None:
    r = env.client.post("/sources", data={"type": "http", "name": "X", "schema": "x"}, follow_redirects=False)
    assert r.status_code == 401
    assert [s.schema for s in env.catalog.list_sources()] == ["secretshop"]


def test_wrong_token_is_refused_and_right_one_signs_in(env: ConsoleEnv) -> None:
    r = env.client.post("/sign-in", data={"token": "nope"})
    assert r.status_code == 401 and "not the admin token" in r.text
    source = env.catalog.list_sources()[0]
    r = env.client.post("/sign-in", data={"token": source.write_key})  # a write key never opens the console
    assert r.status_code == 401
    env.sign_in()
    assert "Secret Shop Drip" in env.client.get("/sources").text


def test_session_cookie_flags(env: ConsoleEnv) -> None:
    r = env.client.post("/sign-in", data={"token": TOKEN}, follow_redirects=False)
    cookie = r.headers["set-cookie"]
    assert "sluice_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on localhost: a Secure cookie would never come back


def test_session_cookie_is_secure_over_https(tmp_path: Path) -> None:
    with console_env(tmp_path / "data", base_url="https://console.example") as env:
        r = env.client.post("/sign-in", data={"token": TOKEN}, follow_redirects=False)
        assert "Secure" in r.headers["set-cookie"]


def test_https_through_a_trusted_proxy_only() -> None:
    from sluice.console.guard import scheme_of

    scope = {"scheme": "http", "client": ("10.0.0.5", 5000), "headers": [(b"x-forwarded-proto", b"https")]}
    assert scheme_of(scope, ["10.0.0.0/8"]) == "https"  # the proxy terminated TLS
    assert scheme_of(scope, ["192.168.0.1"]) == "http"  # anybody else may not say so
    assert scheme_of(scope, []) == "http"


def test_a_change_needs_the_sessions_csrf_token(env: ConsoleEnv) -> None:
    csrf = env.sign_in()
    form = {"type": "http", "name": "Web", "schema": "web"}
    assert env.client.post("/sources", data=form).status_code == 403  # no token
    assert env.client.post("/sources", data={**form, "csrf": "forged"}).status_code == 403
    assert "web" not in [s.schema for s in env.catalog.list_sources()]
    r = env.client.post("/sources", data={**form, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert "web" in [s.schema for s in env.catalog.list_sources()]
    # The header works as well as the form field (for script-made requests).
    r = env.client.post("/sources", data={"type": "http", "name": "App", "schema": "app"},
                        headers={"X-CSRF-Token": csrf}, follow_redirects=False)
    assert r.status_code == 303


def test_a_change_from_another_site_is_refused(env: ConsoleEnv) -> None:
    csrf = env.sign_in()
    form = {"type": "http", "name": "Web", "schema": "web", "csrf": csrf}
    r = env.client.post("/sources", data=form, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = env.client.post("/sources", data=form, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert "web" not in [s.schema for s in env.catalog.list_sources()]
    r = env.client.post("/sources", data=form, headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert r.status_code == 303


def test_sign_out_closes_the_pages(env: ConsoleEnv) -> None:
    csrf = env.sign_in()
    old_cookie = env.client.cookies.get("sluice_session")
    r = env.client.post("/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert env.client.get("/sources", follow_redirects=False).status_code == 303
    env.client.cookies.set("sluice_session", old_cookie)  # the old cookie, kept by someone: dead too
    assert env.client.get("/sources", follow_redirects=False).status_code == 303


def test_one_time_link(env: ConsoleEnv) -> None:
    assert env.client.post("/admin/console-link").status_code == 401  # the admin API: Bearer token only
    r = env.client.post("/admin/console-link", headers={"Authorization": f"Bearer {TOKEN}"})
    url = r.json()["url"]
    assert url.startswith("http://testserver/sign-in/link/")
    path = url.removeprefix("http://testserver")
    r = env.client.get(path, follow_redirects=False)
    assert r.status_code == 303 and "sluice_session=" in r.headers["set-cookie"]
    assert "Secret Shop Drip" in env.client.get("/sources").text
    env.client.cookies.clear()
    r = env.client.get(path)  # used once: never again
    assert r.status_code == 401 and "used already or has expired" in r.text


def test_admin_api_keeps_its_bearer_token(env: ConsoleEnv) -> None:
    env.sign_in()  # a console session does not open the admin API
    assert env.client.get("/admin/status").status_code == 401
    assert env.client.get("/admin/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_console_answers_are_not_cached_or_framed(env: ConsoleEnv) -> None:
    r = env.client.get("/sign-in")
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in r.headers["content-security-policy"]


# -- the rules alone ----------------------------------------------------------------------------


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_and_links_expire() -> None:
    clock = Clock()
    store = SessionStore("t" * 20, session_seconds=60, link_seconds=10, clock=clock)
    session = store.sign_in("t" * 20)
    assert session is not None and store.get(session.id) is session
    clock.now += 61
    assert store.get(session.id) is None
    code = store.new_link_code()
    clock.now += 11
    assert store.sign_in_with_link(code) is None
    assert store.sign_in("") is None and store.sign_in("t" * 19) is None


def test_csrf_rule() -> None:
    store = SessionStore("t" * 20)
    a, b = store.sign_in("t" * 20), store.sign_in("t" * 20)
    assert a is not None and b is not None
    assert csrf_ok(a, a.csrf)
    assert not csrf_ok(a, b.csrf)  # another session's token
    assert not csrf_ok(a, None) and not csrf_ok(a, "")


def test_same_origin_rule() -> None:
    host = {b"host": b"127.0.0.1:8089"}
    assert same_origin(host, "http")  # curl and friends send no Origin
    assert same_origin({**host, b"origin": b"http://127.0.0.1:8089"}, "http")
    assert not same_origin({**host, b"origin": b"http://127.0.0.1:8088"}, "http")
    assert not same_origin({**host, b"origin": b"https://127.0.0.1:8089"}, "http")
    assert not same_origin({**host, b"sec-fetch-site": b"same-site"}, "http")
