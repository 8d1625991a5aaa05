"""Console passwords and sign-in security, against the real binary: `openami account
set-console-password` / `remove-console-password`, signing in with an account and its
password in a real headless Chromium (Playwright, see test_console.py), refusals that give
no hint, the lockout after five failures, and console actions in the audit log.

The tests here run against their own server (module-scoped), so that the sign-in
throttle's per-address counts (every browser here is 127.0.0.1) never reach the tests of
other files."""

import hashlib
import json
import re
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from conftest import Server, openami_bin
from test_console import REGION, browser, signed_in  # noqa: F401 (fixture)

PASSWORD = "correct horse battery staple"
WRONG = "AuthFailure: the account or the password is wrong."


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("console-signin") / "data")
    yield s
    assert s.stop() == 0


def account(srv):
    name = "pw-" + uuid.uuid4().hex[:8]
    return dict(srv.create_account(name), Name=name)


def password_cmd(srv, *args, stdin=None):
    return subprocess.run(
        [openami_bin(), "account", *args, "--data-dir", str(srv.data_dir)],
        input=stdin, capture_output=True, text=True)


def set_password(srv, creds, password=PASSWORD):
    out = password_cmd(srv, "set-console-password", "--name", creds["Name"],
                       "--password-stdin", stdin=password + "\n")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def audit_lines(srv):
    text = (srv.data_dir / "audit" / "audit.log").read_text()
    return [json.loads(line) for line in text.splitlines()]


def stored_hash(srv, account_id):
    db = sqlite3.connect(f"file:{srv.data_dir / 'catalog.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT hash FROM console_passwords WHERE account_id = ?",
                         (account_id,)).fetchone()
    finally:
        db.close()
    return row[0] if row else None


def test_set_and_remove_console_password(srv):
    creds = account(srv)
    # Too short: refused with the rule, nothing stored.
    out = password_cmd(srv, "set-console-password", "--name", creds["Name"],
                       "--password-stdin", stdin="seven77\n")
    assert out.returncode != 0
    assert "at least 8 characters" in out.stderr
    assert stored_hash(srv, creds["AccountId"]) is None
    # Without --password-stdin and no terminal: refused, pointing at the flag.
    out = password_cmd(srv, "set-console-password", "--name", creds["Name"], stdin="")
    assert out.returncode != 0 and "--password-stdin" in out.stderr
    # By id; only the first line of stdin is the password; only an Argon2id hash is kept.
    out = password_cmd(srv, "set-console-password", "--account-id", creds["AccountId"],
                       "--password-stdin", stdin=PASSWORD + "\nsecond line\n")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"AccountId": creds["AccountId"], "ConsolePassword": "set"}
    first = stored_hash(srv, creds["AccountId"])
    assert first.startswith("$argon2id$v=19$") and PASSWORD not in first
    # Setting it again replaces it (a fresh salt).
    set_password(srv, creds)
    assert stored_hash(srv, creds["AccountId"]) not in (None, first)
    # Exactly one of --name / --account-id; an unknown account is an error.
    out = password_cmd(srv, "set-console-password", "--name", creds["Name"],
                       "--account-id", creds["AccountId"], "--password-stdin", stdin=PASSWORD)
    assert out.returncode == 2
    out = password_cmd(srv, "set-console-password", "--password-stdin", stdin=PASSWORD)
    assert out.returncode == 2
    out = password_cmd(srv, "set-console-password", "--name", "no-such-account",
                       "--password-stdin", stdin=PASSWORD)
    assert out.returncode == 1 and "no account named" in out.stderr
    # Remove: once removed, then nothing to remove.
    out = password_cmd(srv, "remove-console-password", "--name", creds["Name"])
    assert json.loads(out.stdout)["ConsolePassword"] == "removed"
    assert stored_hash(srv, creds["AccountId"]) is None
    out = password_cmd(srv, "remove-console-password", "--account-id", creds["AccountId"])
    assert json.loads(out.stdout)["ConsolePassword"] == "none"


def password_sign_in(browser, srv, who, password):  # noqa: F811
    """A new context that submitted the password form; returns (context, page)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.goto(srv.endpoint + "/console/signin")
    page.fill("#signin-password input[name=account]", who)
    page.fill("#signin-password input[name=password]", password)
    page.click("#signin-password button[type=submit]")
    page.wait_for_load_state()
    return ctx, page


def session_cookie(ctx):
    return [c for c in ctx.cookies() if c["name"] == "openami_console"]


def test_sign_in_page_explains_both_ways(srv, browser):  # noqa: F811
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(srv.endpoint + "/console/signin")
    text = page.inner_text("main")
    assert "access key" in text and "console password" in text
    assert "openami account set-console-password" in text
    assert page.locator("#signin-key input[name=access_key_id]").count() == 1
    assert page.locator("#signin-password input[name=account]").count() == 1
    ctx.close()


def test_sign_in_with_name_or_id_and_password(srv, browser):  # noqa: F811
    creds = account(srv)
    set_password(srv, creds)
    for who in (creds["Name"], creds["AccountId"]):
        ctx, page = password_sign_in(browser, srv, who, PASSWORD)
        assert re.search(r"/console/[a-z0-9-]+$", page.url), page.url
        assert page.inner_text("#account") == creds["AccountId"]
        cookie = session_cookie(ctx)[0]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        ctx.close()
    # The access key still works beside the password.
    ctx, page = signed_in(browser, srv, creds)
    assert page.inner_text("#account") == creds["AccountId"]
    ctx.close()


def test_refusals_give_no_hint(srv, browser):  # noqa: F811
    creds = account(srv)
    set_password(srv, creds)
    no_password = account(srv)
    for who, password in [(creds["Name"], PASSWORD + "x"), (no_password["Name"], PASSWORD),
                          ("no-such-account-" + uuid.uuid4().hex[:6], PASSWORD)]:
        ctx, page = password_sign_in(browser, srv, who, password)
        assert page.url.endswith("/console/signin")
        assert page.inner_text("#flash") == WRONG
        assert not session_cookie(ctx)
        assert password not in page.content()
        ctx.close()


def test_five_failures_lock_the_account(srv, browser):  # noqa: F811
    creds = account(srv)
    set_password(srv, creds)
    for _ in range(5):
        ctx, page = password_sign_in(browser, srv, creds["Name"], "not the password")
        assert page.inner_text("#flash") == WRONG
        ctx.close()
    # Now even the right password is refused, by name or by id.
    for who in (creds["Name"], creds["AccountId"]):
        ctx, page = password_sign_in(browser, srv, who, PASSWORD)
        flash = page.inner_text("#flash")
        assert "too many attempts" in flash and "15 minutes" in flash, flash
        assert not session_cookie(ctx)
        ctx.close()
    logins = [line for line in audit_lines(srv) if line["action"] == "ConsoleLogin"
              and line["account_id"] == creds["AccountId"]]
    assert [line["error_code"] for line in logins] == ["AuthFailure"] * 5 + ["Throttling"] * 2
    assert all(line["via"] == "console" and line["service"] == "signin" for line in logins)
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+", line["source"]) for line in logins)


def test_console_actions_are_in_the_audit_log(srv, browser):  # noqa: F811
    creds = account(srv)
    set_password(srv, creds)
    ctx, page = password_sign_in(browser, srv, creds["Name"], PASSWORD)
    page.goto(srv.endpoint + f"/console/{REGION}/volumes")
    page.fill("#create-volume input[name=size]", "1")
    page.click("#create-volume button")
    vol = re.search(r"vol-[0-9a-f]{17}", page.inner_text("#flash")).group(0)
    page.click("form[action='/console/signout'] button")
    page.wait_for_url(re.compile(r"/console/signin$"))
    ctx.close()
    mine = [line for line in audit_lines(srv) if line["account_id"] == creds["AccountId"]]
    assert [(line["service"], line["action"]) for line in mine] == [
        ("signin", "ConsoleLogin"), ("ec2", "CreateVolume"), ("signin", "ConsoleLogout")]
    login, create, logout = mine
    assert login["error_code"] is None and login["status"] == 200
    assert create["via"] == "console" and create["status"] == 200
    assert create["resources"] == [vol] and create["error_code"] is None
    assert create["access_key_id"] is None  # signed in with the password
    assert re.fullmatch(r"127\.0\.0\.1:\d+", create["source"])
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                        create["request_id"])
    assert logout["via"] == "console"
    # Never a password in the log.
    assert PASSWORD not in (srv.data_dir / "audit" / "audit.log").read_text()


# Sessions in the catalog: plain HTTP (no browser), a server of its own that restarts.

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_http = urllib.request.build_opener(_NoRedirect)


def _request(srv, method, path, cookie=None, form=None):
    """(status, headers, body) of one request, redirects not followed."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    req = urllib.request.Request(srv.endpoint + path, data=data, method=method)
    if cookie:
        req.add_header("Cookie", cookie)
    if data is not None:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with _http.open(req, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def _set_cookie(headers, name):
    for v in headers.get_all("Set-Cookie") or []:
        k, _, rest = v.partition("=")
        if k == name:
            return rest.split(";")[0]
    return None


def _http_sign_in(srv, name, password=PASSWORD):
    status, headers, _ = _request(srv, "GET", "/console/signin")
    assert status == 200
    form_token = _set_cookie(headers, "openami_console_signin")
    status, headers, body = _request(
        srv, "POST", "/console/signin", cookie=f"openami_console_signin={form_token}",
        form={"signin": form_token, "way": "password", "account": name,
              "password": password})
    assert status == 303, body
    token = _set_cookie(headers, "openami_console")
    assert token and re.fullmatch(r"[0-9a-f]{64}", token)
    return token


def _csrf(body):
    return re.search(r'name="csrf" value="([0-9a-f]{64})"', body).group(1)


def _catalog_bytes(data_dir):
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("catalog.db*")))


def test_sessions_survive_a_restart_and_sign_out_is_final(tmp_path):
    srv = Server(tmp_path / "data")
    try:
        creds = account(srv)
        set_password(srv, creds)
        token = _http_sign_in(srv, creds["Name"])
        cookie = f"openami_console={token}"
        volumes = f"/console/{REGION}/volumes"
        status, _, body = _request(srv, "GET", volumes, cookie=cookie)
        assert status == 200
        csrf = _csrf(body)
        # Only the token's SHA-256 is stored; the token itself is nowhere in the files.
        db = sqlite3.connect(f"file:{srv.data_dir / 'catalog.db'}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT token_hash, account_id FROM console_sessions").fetchall()
        finally:
            db.close()
        assert rows == [(hashlib.sha256(token.encode()).hexdigest(), creds["AccountId"])]
        assert token.encode() not in _catalog_bytes(srv.data_dir)

        assert srv.stop() == 0
        srv = Server(srv.data_dir)
        status, _, body = _request(srv, "GET", volumes, cookie=cookie)
        assert status == 200, "the cookie works after a restart"
        assert _csrf(body) == csrf
        # The CSRF token still validates a POST: a volume is created.
        status, headers, _ = _request(srv, "POST", volumes, cookie=cookie,
                                      form={"csrf": csrf, "size": "1", "type": "gp3",
                                            "zone": REGION + "a"})
        assert status == 303
        status, _, body = _request(srv, "GET", volumes, cookie=cookie)
        assert re.search(r"Created vol-[0-9a-f]{17}", body), body
        # A wrong CSRF token is still refused.
        status, _, _ = _request(srv, "POST", volumes, cookie=cookie,
                                form={"csrf": "0" * 64, "size": "1"})
        assert status == 403

        status, headers, _ = _request(srv, "POST", "/console/signout", cookie=cookie,
                                      form={"csrf": csrf})
        assert status == 303 and headers["Location"] == "/console/signin"
        status, headers, _ = _request(srv, "GET", volumes, cookie=cookie)
        assert status == 303 and headers["Location"] == "/console/signin"
        assert srv.stop() == 0
        srv = Server(srv.data_dir)
        status, headers, _ = _request(srv, "GET", volumes, cookie=cookie)
        assert status == 303 and headers["Location"] == "/console/signin", \
            "a signed-out cookie stays refused after a restart"
        status, _, _ = _request(srv, "POST", "/console/signout", cookie=cookie,
                                form={"csrf": csrf})
        assert status == 403
        assert token.encode() not in _catalog_bytes(srv.data_dir)
    finally:
        srv.stop()


def test_changing_the_password_ends_the_accounts_sessions(tmp_path):
    srv = Server(tmp_path / "data")
    try:
        creds = account(srv)
        set_password(srv, creds)
        token = _http_sign_in(srv, creds["Name"])
        cookie = f"openami_console={token}"
        volumes = f"/console/{REGION}/volumes"
        status, _, _ = _request(srv, "GET", volumes, cookie=cookie)
        assert status == 200
        set_password(srv, creds, password=PASSWORD + "-new")
        # Servers trust a checked session for a few seconds before asking the catalog again.
        deadline = time.monotonic() + 15
        while True:
            status, headers, _ = _request(srv, "GET", volumes, cookie=cookie)
            if status == 303:
                break
            assert status == 200
            assert time.monotonic() < deadline, "the session outlived the password change"
            time.sleep(0.5)
        assert headers["Location"] == "/console/signin"
        new = _http_sign_in(srv, creds["Name"], password=PASSWORD + "-new")
        status, _, _ = _request(srv, "GET", volumes, cookie=f"openami_console={new}")
        assert status == 200
    finally:
        srv.stop()


def test_a_catalog_failure_is_no_sign_in_and_no_error_page(tmp_path):
    srv = Server(tmp_path / "data")
    try:
        creds = account(srv)
        set_password(srv, creds)
        token = _http_sign_in(srv, creds["Name"])
        cookie = f"openami_console={token}"
        volumes = f"/console/{REGION}/volumes"
        assert _request(srv, "GET", volumes, cookie=cookie)[0] == 200
        # The sessions table goes away behind the server's back: every lookup fails.
        db = sqlite3.connect(str(srv.data_dir / "catalog.db"), timeout=10)
        try:
            db.execute("DROP TABLE console_sessions")
            db.commit()
        finally:
            db.close()
        time.sleep(5.5)  # past the cache's recheck interval
        status, headers, body = _request(srv, "GET", volumes, cookie=cookie)
        assert status == 303 and headers["Location"] == "/console/signin", (status, body)
        # A sign-in that cannot be stored is a 503 without details, not a 500.
        status, headers, _ = _request(srv, "GET", "/console/signin")
        form_token = _set_cookie(headers, "openami_console_signin")
        status, headers, body = _request(
            srv, "POST", "/console/signin", cookie=f"openami_console_signin={form_token}",
            form={"signin": form_token, "way": "password", "account": creds["Name"],
                  "password": PASSWORD})
        assert status == 503, status
        assert "could not be recorded" in body
        assert _set_cookie(headers, "openami_console") is None
        assert "no such table" not in body
        assert srv.proc.poll() is None, "the server is still up"
    finally:
        srv.stop()
