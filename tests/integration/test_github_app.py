"""github_sync as a GitHub App (issue 20) against the replay server, which
checks every JWT as GitHub does (RS256 signature with the app's public key,
iss, iat, exp) and issues installation tokens with an expires_at: the
listing through /installation/repositories, the installation found once,
the token cached and renewed before it expires, a 401 answered by one
renewal, a rejected JWT failing the run without marking anything missing,
the token's failures as events, check-config on the key file, and mirrors
cloned and fetched over smart HTTP (git http-backend) with the installation
token as the password, which no file of the mirror keeps."""
import os
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import DEADLINE, parse_lines
from git_http import GitHTTP
from replay import Replay
from test_github_sync import LSAN, complete, git, make_bare, named, projects

APP_ID = "123456"
INSTALLATION = 4242


def pem(key, fmt=serialization.PrivateFormat.TraditionalOpenSSL):
    # TraditionalOpenSSL: "BEGIN RSA PRIVATE KEY", as GitHub hands out the key.
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def app_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def replay(app_key):
    r = Replay(org="acme", repos=250)
    r.enable_app(APP_ID, public_pem(app_key), installation_id=INSTALLATION)
    r.start()
    yield r
    r.stop()


def key_file(env, key, name="app.pem"):
    p = env.dir / name
    p.write_bytes(pem(key) if not isinstance(key, bytes) else key)
    p.chmod(0o600)
    return p


def configure(env, replay, key_path, extra="", installation_id=None, org="acme"):
    inst = "installation_id = %d" % installation_id if installation_id else ""
    env.write_config(f"""[github]
api_url = {replay.url}
org = {org}
app_id = {APP_ID}
private_key_file = {key_path}
{inst}
missing_threshold = 3
timeout = 10s
{extra}

[task.github_sync]
""")


def no_secrets(replay, *texts):
    for t in replay.issued():
        for text in texts:
            assert t not in text


def once(env, replay):
    r = env.run("once", "github_sync")
    assert "runtime error" not in r.stderr and "Sanitizer" not in r.stderr, r.stderr
    no_secrets(replay, r.stdout, r.stderr)
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    return r, parse_lines(r.stdout)


def stored_events(env):
    con = env.connect()
    try:
        return [line for (line,) in con.execute("SELECT line FROM events")]
    finally:
        con.close()


def listing(replay):
    return replay.requests_to("/installation/repositories")


def bearer(req):
    return req["headers"].get("Authorization", "")[len("Bearer "):]


def test_app_lists_the_installation_repositories(env, replay, app_key):
    configure(env, replay, key_file(env, app_key))
    t0 = time.time()
    r, ev = once(env, replay)
    assert r.returncode == 0, r.stderr
    c = complete(ev)
    assert c["repos_synced"] == 250 and c["repos_discovered"] == 250
    assert len(projects(env)) == 250

    # The installation found once for org, through the app's JWT ...
    (found,) = replay.requests_to("/app/installations?")
    (post,) = [q for q in replay.requests if q["method"] == "POST"]
    assert post["path"] == "/app/installations/%d/access_tokens" % INSTALLATION
    # ... whose signature, iss, iat and exp the server checked.
    assert len(replay.jwts) == 2 and all(j["ok"] for j in replay.jwts), replay.jwts
    for j in replay.jwts:
        cl = j["claims"]
        assert list(cl) == ["iat", "exp", "iss"] and cl["iss"] == APP_ID
        assert cl["exp"] - cl["iat"] == 600  # exp <= 10 minutes after iat
        assert t0 - 61 <= cl["iat"] <= j["at"] - 59  # 60 s in the past
    assert bearer(found) == bearer(post)  # one JWT for both

    # The listing: every page with the installation token.
    (tok,) = replay.issued()
    pages = listing(replay)
    assert len(pages) == 3 and all(bearer(q) == tok for q in pages)
    assert not replay.requests_to("/orgs/")
    (issued,) = named(ev, "github_app_token_issued")
    assert issued["installation_id"] == INSTALLATION
    assert issued["expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                 time.gmtime(replay.tokens[tok]))
    no_secrets(replay, *stored_events(env))

    # A second process: a new token, and the pages' ETags give 304s.
    r, ev = once(env, replay)
    assert r.returncode == 0, r.stderr
    assert complete(ev)["repos_discovered"] == 0 and complete(ev)["repos_missing"] == 0
    (lf,) = named(ev, "github_listing_fetched")
    assert lf["not_modified"] == 3
    assert all("If-None-Match" in q["headers"] for q in listing(replay)[3:])


def test_configured_installation_id_needs_no_lookup(env, replay, app_key):
    configure(env, replay, key_file(env, app_key), installation_id=INSTALLATION)
    r, ev = once(env, replay)
    assert r.returncode == 0, r.stderr
    assert not replay.requests_to("/app/installations?")
    assert complete(ev)["repos_synced"] == 250


def test_token_near_expiry_is_renewed_before_use(env, replay, app_key):
    # The first token has 4 minutes left: less than the 5-minute margin, so
    # it serves the first page and the next request gets a new one first.
    replay.token_ttls = [240]
    configure(env, replay, key_file(env, app_key))
    r, ev = once(env, replay)
    assert r.returncode == 0, r.stderr
    first, second = replay.issued()
    assert [bearer(q) for q in listing(replay)] == [first, second, second]
    assert len(named(ev, "github_app_token_issued")) == 2
    assert len(replay.requests_to("/app/installations?")) == 1  # found once


def test_token_cached_across_runs_in_the_daemon(env, replay, app_key, daemons):
    replay.repos = replay.repos[:40]
    replay.changed()
    configure(env, replay, key_file(env, app_key))
    d = daemons(env)
    d.wait_for("scheduler_started")
    for n in (1, 2):
        assert env.run("trigger", "github_sync").returncode == 0
        d.wait_for("github_sync_complete", count=n)
    (tok,) = replay.issued()  # the second run reused the cached token
    assert [bearer(q) for q in listing(replay)] == [tok, tok]
    assert len(d.named("github_app_token_issued")) == 1
    assert len(replay.requests_to("/app/installations?")) == 1  # found once
    d.stop()
    no_secrets(replay, "".join(d.raw), *stored_events(env))


def test_near_expiry_cached_token_renewed_in_the_daemon(env, replay, app_key, daemons):
    replay.repos = replay.repos[:40]
    replay.changed()
    replay.token_ttls = [240]  # the first token is near expiry once issued
    configure(env, replay, key_file(env, app_key))
    d = daemons(env)
    d.wait_for("scheduler_started")
    for n in (1, 2, 3):
        assert env.run("trigger", "github_sync").returncode == 0
        d.wait_for("github_sync_complete", count=n)
    first, second = replay.issued()
    # run 1: the new token; run 2: it is near expiry -> renewed before use;
    # run 3: the renewed one is fresh -> from the cache.
    assert [bearer(q) for q in listing(replay)] == [first, second, second]
    issued = d.named("github_app_token_issued")
    assert len(issued) == 2 and issued[1]["run_id"] != issued[0]["run_id"]
    d.stop()


def test_401_on_a_page_renews_once_and_retries(env, replay, app_key):
    configure(env, replay, key_file(env, app_key))
    assert once(env, replay)[0].returncode == 0
    del replay.repos[10:20]
    replay.changed()
    n = len(listing(replay))
    # Page 2 answers 401 (and the token it carried is revoked).
    replay.fault("/installation/repositories?per_page=100&page=2", "401", times=1)
    r, ev = once(env, replay)
    assert r.returncode == 0, r.stderr
    a, b = replay.issued()[-2:]
    pages = listing(replay)[n:]
    assert [bearer(q) for q in pages] == [a, a, b, b]
    assert [q["path"].endswith("page=2") for q in pages] == [False, True, True, False]
    (rej,) = named(ev, "github_app_token_rejected")
    assert rej["installation_id"] == INSTALLATION
    assert complete(ev)["repos_missing"] == 10


def test_second_401_fails_the_run_and_marks_nothing(env, replay, app_key):
    configure(env, replay, key_file(env, app_key))
    assert once(env, replay)[0].returncode == 0
    del replay.repos[10:20]
    replay.changed()
    replay.fault("/installation/repositories?per_page=100&page=2", "401", times=2)
    r, ev = once(env, replay)
    assert r.returncode == 1
    (f,) = named(ev, "github_sync_failed")
    assert f["error_type"] == "github_incomplete_listing" and "HTTP 401" in f["error"]
    assert len(named(ev, "github_app_token_issued")) == 2  # renewed once, not more
    assert not named(ev, "project_missing_from_github")
    assert all(v[1] == "active" and v[2] == 0 for v in projects(env).values())


def test_rejected_jwt_fails_the_run_and_marks_nothing_missing(env, replay, app_key):
    path = key_file(env, app_key)
    configure(env, replay, path)
    assert once(env, replay)[0].returncode == 0
    del replay.repos[10:20]
    replay.changed()
    n = len(listing(replay))
    # Another key than the app's: GitHub cannot verify the JWT.
    path.write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    r, ev = once(env, replay)
    assert r.returncode == 1
    (tf,) = named(ev, "github_app_token_failed")
    assert tf["error_type"] == "jwt_rejected" and "HTTP 401" in tf["error"]
    assert "could not be decoded" in tf["error"]
    (f,) = named(ev, "github_sync_failed")
    assert f["error_type"] == "jwt_rejected"
    assert replay.jwts[-1]["ok"] is False and "signature" in replay.jwts[-1]["why"]
    assert len(listing(replay)) == n  # nothing listed
    assert not named(ev, "project_missing_from_github")
    assert all(v[1] == "active" and v[2] == 0 for v in projects(env).values())


def test_installation_not_found(env, replay, app_key):
    path = key_file(env, app_key)
    configure(env, replay, path, org="nobody")
    r, ev = once(env, replay)
    assert r.returncode == 1
    (tf,) = named(ev, "github_app_token_failed")
    assert tf["error_type"] == "installation_not_found" and "'nobody'" in tf["error"]
    assert named(ev, "github_sync_failed")[0]["error_type"] == "installation_not_found"
    # A configured id the app does not have: the exchange's 404.
    configure(env, replay, path, installation_id=999)
    r, ev = once(env, replay)
    assert r.returncode == 1
    (tf,) = named(ev, "github_app_token_failed")
    assert tf["error_type"] == "installation_not_found"
    assert "/app/installations/999/access_tokens: HTTP 404" in tf["error"]
    assert not listing(replay)


def test_token_exchange_5xx(env, replay, app_key):
    configure(env, replay, key_file(env, app_key), installation_id=INSTALLATION)
    replay.fault("/app/installations/%d/access_tokens" % INSTALLATION, "502", times=-1)
    r, ev = once(env, replay)
    assert r.returncode == 1
    (tf,) = named(ev, "github_app_token_failed")
    assert tf["error_type"] == "http_5xx" and "HTTP 502" in tf["error"]
    assert named(ev, "github_sync_failed")[0]["error_type"] == "http_5xx"
    posts = [q for q in replay.requests if q["method"] == "POST"]
    assert len(posts) == 3  # two retries
    assert not listing(replay)


def test_token_exchange_5xx_once_is_retried(env, replay, app_key):
    configure(env, replay, key_file(env, app_key), installation_id=INSTALLATION)
    replay.fault("/app/installations/%d/access_tokens" % INSTALLATION, "502", times=1)
    r, ev = once(env, replay)
    assert r.returncode == 0, r.stderr
    assert len(named(ev, "github_app_token_issued")) == 1


def test_unreadable_key_fails_the_run(env, replay):
    configure(env, replay, env.dir / "absent.pem")
    r, ev = once(env, replay)
    assert r.returncode == 1
    (tf,) = named(ev, "github_app_token_failed")
    assert tf["error_type"] == "private_key_invalid" and "absent.pem" in tf["error"]
    assert replay.requests == []


# ---- check-config ----

def check(env):
    r = env.run("check-config")
    return r.returncode, r.stderr


def line_of(env, key):
    for i, line in enumerate(env.conf.read_text().splitlines(), 1):
        if line.startswith(key + " "):
            return i
    raise AssertionError(key)


def test_check_config_validates_the_key_file(env, replay, app_key):
    good = key_file(env, app_key)
    configure(env, replay, good)
    assert check(env) == (0, "")
    # PKCS#8 ("BEGIN PRIVATE KEY") is fine too.
    key_file(env, pem(app_key, serialization.PrivateFormat.PKCS8), "p8.pem")
    configure(env, replay, env.dir / "p8.pem")
    assert check(env) == (0, "")

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cases = {
        "absent.pem": None,
        "text.pem": b"ghs_not_a_key\n",
        "small.pem": pem(small),
        "ec.pem": pem(ec.generate_private_key(ec.SECP256R1()),
                      serialization.PrivateFormat.PKCS8),
    }
    why = {
        "absent.pem": "cannot read: No such file or directory",
        "text.pem": "not PEM (no header line)",
        "small.pem": "RSA key of 1024 bits; at least 2048 are needed",
        "ec.pem": "not an RSA key (EC); GitHub App keys are RSA",
    }
    for name, content in cases.items():
        if content is not None:
            key_file(env, content, name)
        configure(env, replay, env.dir / name)
        rc, err = check(env)
        line = line_of(env, "private_key_file")
        expect = "%s:%d: [github] private_key_file: %s: %s" % (env.conf, line, env.dir / name,
                                                              why[name])
        assert rc == 2 and err.strip() == expect, (name, err)
    if os.geteuid() != 0:  # root reads a 0000 file anyway
        good.chmod(0)
        configure(env, replay, good)
        rc, err = check(env)
        assert rc == 2 and "Permission denied" in err


@pytest.mark.parametrize("conf, message", [
    ("app_id = 12\norg = acme\n", "app_id needs private_key_file"),
    ("app_id = 12\nprivate_key_file = /k\n", "app_id needs installation_id, or org"),
    ("app_id = 12\nprivate_key_file = /k\norg = acme\ntoken_env = GH_T\n",
     "token_env: authenticate with a token or as a GitHub App (app_id), not both"),
    ("app_id = a b\nprivate_key_file = /k\norg = acme\n", "is not an App ID or Client ID"),
    ("token_env = GH_T\norg = acme\nprivate_key_file = /k\n",
     "private_key_file: only used with app_id"),
    ("token_env = GH_T\norg = acme\ninstallation_id = 5\n",
     "installation_id: only used with app_id"),
    ("app_id = 12\nprivate_key_file = /k\ninstallation_id = 0\n", "installation_id"),
])
def test_config_errors(env, conf, message):
    env.write_config("[github]\n" + conf + "\n[task.github_sync]\n")
    rc, err = check(env)
    assert rc == 2 and message in err, err


def test_client_id_as_issuer(env, replay, app_key):
    replay.app["id"] = "Iv23liAbC.d_e-f"
    configure(env, replay, key_file(env, app_key))
    env.conf.write_text(env.conf.read_text().replace("app_id = %s" % APP_ID,
                                                     "app_id = Iv23liAbC.d_e-f"))
    r, ev = once(env, replay)
    assert r.returncode == 0, r.stderr
    assert all(j["claims"]["iss"] == "Iv23liAbC.d_e-f" for j in replay.jwts)


# ---- mirrors over smart HTTP ----

def test_mirror_clone_and_fetch_with_the_installation_token(env, replay, app_key, tmp_path):
    repos = tmp_path / "served"
    repos.mkdir()
    w1, _ = make_bare(repos, "alpha", spec="name: alpha\n", readme="# Alpha\n")
    make_bare(repos, "beta")
    gh = GitHTTP(repos, lambda user, pw: user == "x-access-token" and replay._token_live(pw))
    gh.start()
    try:
        replay.repos = [replay.make_repo(1, "alpha", clone_url=gh.url("alpha")),
                        replay.make_repo(2, "beta", clone_url=gh.url("beta"))]
        replay.changed()
        mirrors = tmp_path / "mirrors"
        configure(env, replay, key_file(env, app_key), extra=f"mirror_dir = {mirrors}")
        env.extra_env = {"LSAN_OPTIONS": LSAN}
        r, ev = once(env, replay)
        assert r.returncode == 0, r.stderr
        assert complete(ev)["repos_fetched"] == 2, ev
        assert all(e["cloned"] for e in named(ev, "github_repo_mirrored"))
        assert env.sql("SELECT spec FROM projects WHERE name='alpha'") == [("name: alpha\n",)]
        (first,) = replay.issued()
        assert any(q["status"] == 401 and not q["accepted"] for q in gh.requests)  # asked
        assert {q["path"].split("/")[1] for q in gh.served()} == {"alpha.git", "beta.git"}
        n = len(gh.served())

        # A new commit; the old token is revoked: the fetch must use the new one.
        (w1 / ".project-spec.yaml").write_text("name: alpha\nport: 9090\n")
        git("commit", "-q", "-am", "port", cwd=w1)
        git("push", "-q", str(repos / "alpha.git"), "main", cwd=w1)
        replay.revoked.add(first)
        r, ev = once(env, replay)
        assert r.returncode == 0, r.stderr
        assert not any(e["cloned"] for e in named(ev, "github_repo_mirrored"))
        assert complete(ev)["repos_fetched"] == 2
        assert env.sql("SELECT spec FROM projects WHERE name='alpha'") == [
            ("name: alpha\nport: 9090\n",)]
        assert len(gh.served()) > n
    finally:
        gh.stop()
    # No token in any file of the mirrors (config, FETCH_HEAD, packed-refs, logs...).
    tokens = [t.encode() for t in replay.issued()]
    assert len(tokens) == 2
    files = [p for p in mirrors.rglob("*") if p.is_file()]
    assert files
    for p in files:
        data = p.read_bytes()
        assert not any(t in data for t in tokens), p
        assert b"x-access-token" not in data, p
    cfg = (mirrors / "alpha.git" / "config").read_text()
    assert "url = %s" % gh.url("alpha") in cfg
    no_secrets(replay, *stored_events(env))
