"""Edge protection (issue 14, DESIGN.md "Edge protection (`guard`)"): device
rules answered 403 at the edge, the password shield answering a stale or a
guessed Basic password 401 itself, and what must never trip it (NTLM and
Negotiate legs, Bearer probes), its holds across reloads and their expiry,
and a flood of random users against a small table.

Every case runs the real daemon over TLS in front of a stand-in CAS whose
`passwords` table refuses wrong Basic passwords the way Exchange does, and
asserts what the CAS saw (its count of Basic attempts per user and password,
its record of requests), not only the status codes the phone got, plus the
access log's reason and rule fields."""

import base64
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
import unittest
import uuid

import eftest
import standin_cas as sc
import test_routing as tr
from eftest import SNI, basic, free_port, http_request, wait_until

UA = "Apple-iPhone9C1/1602.92"
EAS_PATH = "/Microsoft-Server-ActiveSync"
USER = "alice@contoso.test"
RIGHT = "Summer-2026!"              # alice's password at the CAS
OLD = "Winter-2025!"                # the one a forgotten phone replays
HOST1 = "site1-eas.contoso.test"    # another name on the certificate


def new_device(prefix="GD"):
    return prefix + uuid.uuid4().hex[:14].upper()


def shield(password_failures=3, user_failures=10, window=1800, hold=1800):
    return {"password_failures": password_failures,
            "user_failures": user_failures, "window": window, "hold": hold}


# --------------------------------------------------------------------------
# the daemon: eftest.Daemon plus an admin endpoint and reloads

class GuardDaemon(eftest.Daemon):
    """eftest.Daemon with guard (the `guard:` section, changeable before a
    reload), the admin endpoint and reloads that wait for the log."""

    def __init__(self, tc, cas_urls, guard, **kw):
        super().__init__(tc, cas_urls, **kw)
        self.guard = guard
        self.admin_port = free_port()

    def config(self):
        c = super().config()
        c["guard"] = self.guard
        c["admin"] = {"listen": "127.0.0.1:%d" % self.admin_port}
        return c

    def admin(self, method, path, timeout=10):
        """(status, body text) of one admin request."""
        return eftest.admin_request(self.admin_port, method, path,
                                    timeout=timeout)

    def guard_status(self):
        """GET /guard as JSON, or None while the endpoint does not exist."""
        try:
            code, text = self.admin("GET", "/guard")
        except OSError:
            return None
        if code != 200:
            return None
        return json.loads(text)

    def metrics(self):
        """{(name, labels): value} of GET /metrics, or {}."""
        try:
            code, text = self.admin("GET", "/metrics")
        except OSError:
            return {}
        if code != 200:
            return {}
        out = {}
        sample = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+"
                            r"(\S+)")
        for ln in text.splitlines():
            m = sample.match(ln)
            if m and not ln.startswith("#"):
                labels = tuple(sorted(re.findall(
                    r'([A-Za-z_]\w*)="((?:[^"\\]|\\.)*)"', m.group(2) or "")))
                out[(m.group(1), labels)] = float(m.group(3))
        return out

    def reload(self, how="hup", expect="reloaded", timeout=15):
        """Reloads by SIGHUP ("hup") or `easfront reload -c` ("cmd"),
        waits for one more log line containing expect ("reloaded" or
        "reload refused"); returns the log written since."""
        mark = len(self.stderr_text())
        before = self.stderr_text().count(expect)
        if how == "hup":
            os.kill(self.pid, signal.SIGHUP)
        else:
            eftest.run([self.bin, "reload", "-c", self.conf_path],
                       timeout=20)
        if not wait_until(lambda: self.stderr_text().count(expect) > before,
                          timeout):
            raise AssertionError("no %r in the daemon log within %d s of "
                                 "the reload:\n%s" % (
                                     expect, timeout,
                                     self.stderr_text()[mark:][-3000:]))
        return self.stderr_text()[mark:]

    def records(self):
        out = []
        for ln in self.access_log_lines():
            try:
                rec = json.loads(ln)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def config_lines(self):
        return self.config_text().splitlines()


# --------------------------------------------------------------------------
# a phone: one keep-alive TLS connection, a DeviceId, a user and password

class Phone:
    """A device of user: every request carries its DeviceId, DeviceType,
    User-Agent and Basic credentials (password, changeable), over one
    keep-alive connection (a new one when easfront closed it)."""

    def __init__(self, d, user=USER, password=RIGHT, device_id=None,
                 device_type="iPhone", ua=UA, host=SNI, version="14.1"):
        self.d = d
        self.user = user
        self.password = password
        self.device_id = device_id or new_device()
        self.device_type = device_type
        self.ua = ua
        self.host = host
        self.version = version
        self.conn = None

    def build(self, cmd="FolderSync", auth=None, target=None, version=None):
        """The request as an eftest.Req (auth: a whole Authorization value
        instead of Basic; "" for none)."""
        if auth is None:
            auth = basic(self.user, self.password)
        h = []
        if auth:
            h.append(("Authorization", auth))
        version = self.version if version is None else version
        if version:
            h.append(("MS-ASProtocolVersion", version))
        h += [("User-Agent", self.ua),
              ("X-MS-PolicyKey", "1307199584"),
              ("Content-Type", "application/vnd.ms-sync.wbxml")]
        if target is None:
            target = eftest.eas_target(cmd, user=self.user,
                                       device_id=self.device_id,
                                       device_type=self.device_type)
        return http_request("POST", target, h, b"\x03\x01\x6a\x00",
                            host=self.host)

    def send(self, req, timeout=10):
        """Sends req, returns the response (a new connection when the
        last answer said close or the server closed it)."""
        if self.conn is None:
            self.conn = self.d.connect(sni=self.host, timeout=timeout)
        try:
            self.conn.send(req.raw)
            resp = self.conn.read_response(timeout=timeout)
        except BaseException:
            self.close()
            raise
        if "close" in (resp.header("Connection") or "").lower():
            self.close()
        return resp

    def request(self, cmd="FolderSync", **kw):
        req = self.build(cmd, **kw)
        return req, self.send(req)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --------------------------------------------------------------------------
# a flood: many pipelined requests over a few keep-alive connections

_CL = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)


class Flood:
    """n requests to easfront at 127.0.0.1:port (its certificate from the
    CA in ca_file), each of a new random user with a random wrong password,
    pipelined in batches over conns keep-alive TLS connections (one thread
    each), all within seconds. Counts the statuses it got (.statuses),
    the requests sent (.sent) and answered (.answered). Run in a process of
    its own (run_flood) so that the test process's interpreter is left to
    the stand-in CAS."""

    def __init__(self, port, ca_file, n, conns=6, batch=200, seconds=45,
                 prefix="flood"):
        self.port = port
        self.ctx = eftest.client_context(ca=ca_file)
        self.n = n
        self.conns = conns
        self.batch = batch
        self.seconds = seconds
        self.prefix = prefix
        self.statuses = {}
        self.sent = 0
        self.answered = 0
        self.errors = []
        self._next = 0
        self._lock = threading.Lock()

    def _take(self, k):
        with self._lock:
            start = self._next
            k = min(k, self.n - start)
            self._next += max(k, 0)
            return start, k

    def _requests(self, start, k):
        out = []
        for i in range(start, start + k):
            user = "%s%06d-%s@contoso.test" % (self.prefix, i,
                                               os.urandom(4).hex())
            auth = base64.b64encode(("%s:%s" % (
                user, os.urandom(6).hex())).encode()).decode()
            out.append((
                "POST %s?Cmd=FolderSync&User=%s&DeviceId=FL%08d&"
                "DeviceType=iPhone HTTP/1.1\r\nHost: %s\r\n"
                "Authorization: Basic %s\r\nMS-ASProtocolVersion: 14.1\r\n"
                "User-Agent: %s\r\nContent-Length: 0\r\n\r\n" % (
                    EAS_PATH, user.replace("@", "%40"), i, SNI, auth, UA)
            ).encode())
        return b"".join(out)

    def _read(self, c, deadline):
        """One response off c (status); the body skipped."""
        while True:
            i = c.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if not c._deadline_fill(deadline):
                raise ValueError("closed")
        head = bytes(c.buf[:i + 4])
        m = _CL.search(head)
        if m is None:
            raise ValueError("no Content-Length: %r" % head[:300])
        end = i + 4 + int(m.group(1))
        while len(c.buf) < end:
            if not c._deadline_fill(deadline):
                raise ValueError("closed in a body")
        del c.buf[:end]
        return int(head[9:12])

    def _worker(self, deadline):
        """Batches until n are taken or deadline passes; the answers of the
        last batch are waited for up to 15 s more."""
        c = None
        statuses = {}
        answered = 0
        try:
            while time.monotonic() < deadline:
                start, k = self._take(self.batch)
                if k <= 0:
                    break
                data = self._requests(start, k)
                if c is None:
                    c = eftest.tls_connect(self.port, ctx=self.ctx,
                                           timeout=10)
                c.send(data)
                with self._lock:
                    self.sent += k
                for _ in range(k):
                    st = self._read(c, max(deadline, time.monotonic()) + 15)
                    statuses[st] = statuses.get(st, 0) + 1
                    answered += 1
        except (OSError, ValueError, ssl.SSLError) as e:
            with self._lock:
                self.errors.append(repr(e))
        finally:
            if c is not None:
                c.close()
            with self._lock:
                self.answered += answered
                for st, v in statuses.items():
                    self.statuses[st] = self.statuses.get(st, 0) + v

    def run(self):
        t0 = time.monotonic()
        deadline = t0 + self.seconds
        ts = [threading.Thread(target=self._worker, args=(deadline,),
                               daemon=True) for _ in range(self.conns)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(max(0.0, deadline + 30 - time.monotonic()))
        self.elapsed = time.monotonic() - t0
        return self

    def result(self):
        return {"statuses": {str(k): v for k, v in self.statuses.items()},
                "sent": self.sent, "answered": self.answered,
                "errors": self.errors[:5], "elapsed": self.elapsed}


def run_flood(d, n, conns=6, seconds=45, prefix="flood"):
    """Flood(...).result() from a child process (the same interpreter
    running this file), bounded by seconds plus a margin."""
    cmd = [sys.executable, os.path.abspath(__file__), "--flood",
           str(d.port), d.pki.ca_cert, str(n), str(conns), str(seconds),
           prefix]
    p = eftest.run(cmd, timeout=seconds + 60)
    return json.loads(p.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------

class GuardCase(eftest.EfTestCase):

    def world(self, guard, passwords=None, cas_attrs=None, **kw):
        """A stand-in CAS (passwords: {user: password}, alice's by default)
        and a daemon with guard; returns (cas, d)."""
        if passwords is None:
            passwords = {USER: RIGHT}
        cas = self.start_cas(passwords=passwords, **(cas_attrs or {}))
        d = GuardDaemon(self, [cas.url], guard, **kw).start()
        return cas, d

    def phone(self, d, **kw):
        p = Phone(d, **kw)
        self.addCleanup(p.close)
        return p

    def log_of(self, d, device, n=1, timeout=5):
        """The access-log records of device (all of them), once there are
        at least n."""
        def mine():
            return [r for r in d.records() if r.get("device") == device]
        if not wait_until(lambda: len(mine()) >= n, timeout):
            have = mine()
            raise AssertionError("expected %d access-log lines of device %s,"
                                 " got %d: %r" % (n, device, len(have),
                                                  have[-3:]))
        return mine()

    def assert_from_cas(self, cas, req, resp, status):
        """resp is the CAS's own answer to req (which reached it once)."""
        self.assertEqual(resp.status, status, resp.status_line)
        rec = self.one_cas_request(cas, req.mark)
        self.assertEqual(rec.response_status, status)
        self.assertEqual(resp.header("X-FEServer"), cas.fe,
                         "not the CAS's answer")
        return rec

    def assert_local_401(self, cas, req, resp, host=SNI):
        """resp is easfront's own 401 with a Basic challenge for host, and
        req never reached the CAS."""
        self.assertEqual(resp.status, 401, resp.status_line)
        self.assertEqual(cas.find(req.mark), [], "a held password was "
                         "forwarded to the CAS")
        self.assertIsNone(resp.header("X-FEServer"),
                          "a CAS answer where easfront should answer")
        self.assertEqual(resp.headers_named("WWW-Authenticate"),
                         ['Basic realm="%s"' % host],
                         "easfront's 401 must challenge for the name the "
                         "phone used")
        self.assert_own_error(resp, (401,))

    def assert_local_403(self, cas, req, resp):
        self.assertEqual(resp.status, 403, resp.status_line)
        self.assertIsNone(resp.header("X-FEServer"))
        self.assertEqual(cas.find(req.mark), [], "a blocked device's "
                         "request reached the CAS")
        self.assert_own_error(resp, (403,))


# --------------------------------------------------------------------------
# 1. a stale password

class StalePassword(GuardCase):

    def test_stale_password_replayed_50_times(self):
        cas, d = self.world({"passwords": shield()})
        a = self.phone(d, password=OLD)            # the forgotten phone
        b = self.phone(d)                          # the user's other device
        local = 0
        for i in range(50):
            req, resp = a.request("Sync" if i % 2 else "FolderSync")
            if i < 3:
                self.assert_from_cas(cas, req, resp, 401)
                self.assertEqual(resp.headers_named("WWW-Authenticate"),
                                 ['Basic realm="%s"' % cas.name])
            else:
                self.assert_local_401(cas, req, resp)
                local += 1
            req, resp = b.request("GetItemEstimate" if i % 5 == 4 else "Sync")
            self.assert_from_cas(cas, req, resp, 200)
        self.assertEqual(cas.attempts(USER, ok=False, password=OLD), 3,
                         "the CAS (and the directory behind it) saw the "
                         "stale password more than password_failures "
                         "times")
        self.assertEqual(cas.attempts(USER, ok=False), 3)
        self.assertEqual(cas.attempts(USER, ok=True), 50,
                         "the user's other device was held too")

        # the held password is held whoever sends it, under any name
        c = self.phone(d, password=OLD, host=HOST1)
        req, resp = c.request()
        self.assert_local_401(cas, req, resp, host=HOST1)
        e = self.phone(d, password=OLD, device_type="SAMSUNGSM")
        req, resp = e.request("Sync")
        self.assert_local_401(cas, req, resp)
        self.assertEqual(cas.attempts(USER, password=OLD), 3)
        # Autodiscover with it too; with the right one it is served
        for pw, status in ((OLD, 401), (RIGHT, 200)):
            body = eftest.autodiscover_request(USER).body
            req = http_request("POST", "/autodiscover/autodiscover.xml",
                               [("Authorization", basic(USER, pw)),
                                ("Content-Type", "text/xml"),
                                ("User-Agent", UA)], body,
                               host="autodiscover.contoso.test")
            resp = d.roundtrip(req.raw)
            if status == 401:
                self.assert_local_401(cas, req, resp,
                                      host="autodiscover.contoso.test")
            else:
                self.assert_from_cas(cas, req, resp, 200)
        self.assertEqual(cas.attempts(USER, password=OLD), 3)

        # the access log says why, and that no rule was met
        recs = self.log_of(d, a.device_id, 50)
        self.assertEqual([r["status"] for r in recs], [401] * 50)
        self.assertEqual([r["reason"] for r in recs[3:]],
                         ["stale-password"] * 47, recs[2:5])
        for r in recs[:3]:
            self.assertNotIn(r["reason"], ("stale-password",
                                           "password-guessing"))
            self.assertNotEqual(r["upstream"], "-", r)
        for r in recs + self.log_of(d, b.device_id, 50):
            self.assertEqual(r.get("rule"), 0, r)
            self.assertEqual(r["user"], USER)
        self.assertEqual(self.log_of(d, c.device_id)[0]["reason"],
                         "stale-password")

        # the user types the new password on the forgotten phone
        a.password = RIGHT
        for cmd in ("FolderSync", "Sync", "Settings"):
            req, resp = a.request(cmd)
            self.assert_from_cas(cas, req, resp, 200)
        # and the old one is still held for anyone who sends it
        a.password = OLD
        req, resp = a.request()
        self.assert_local_401(cas, req, resp)
        self.assertEqual(cas.attempts(USER, password=OLD), 3)
        self.assertEqual(cas.attempts(USER, ok=True), 54)

    def test_other_users_same_password_untouched(self):
        """The hold is of (user, password): another user sending the same
        password, and a second user with a stale password of his own, are
        counted apart."""
        cas, d = self.world({"passwords": shield()},
                            passwords={USER: RIGHT, "bob@contoso.test": OLD})
        a = self.phone(d, password=OLD)
        for _ in range(6):
            a.request()
        self.assertEqual(cas.attempts(USER, password=OLD), 3)
        bob = self.phone(d, user="bob@contoso.test", password=OLD)
        for _ in range(5):
            req, resp = bob.request()
            self.assert_from_cas(cas, req, resp, 200)
        self.assertEqual(cas.attempts("bob@contoso.test", ok=True), 5)

    def test_failures_outside_the_window_do_not_add_up(self):
        """window 2 s: two refusals, a pause longer than the window, two
        more: no hold (each window has only two); a third within the
        window holds."""
        cas, d = self.world({"passwords": shield(window=2, hold=60)})
        a = self.phone(d, password=OLD)
        for _ in range(2):
            a.request()
        time.sleep(3.2)
        for _ in range(2):
            req, resp = a.request()
            self.assert_from_cas(cas, req, resp, 401)
        req, resp = a.request()
        self.assert_from_cas(cas, req, resp, 401)
        req, resp = a.request()
        self.assert_local_401(cas, req, resp)
        self.assertEqual(cas.attempts(USER, password=OLD), 5)

    def test_success_clears_failures(self):
        """Two refusals, then the CAS accepts the same password (it was
        changed back at the directory): the count starts again."""
        cas, d = self.world({"passwords": shield()})
        a = self.phone(d, password=OLD)
        for _ in range(2):
            a.request()
        cas.passwords = {USER: OLD}
        req, resp = a.request()
        self.assert_from_cas(cas, req, resp, 200)
        cas.passwords = {USER: RIGHT}
        for _ in range(2):
            req, resp = a.request()
            self.assert_from_cas(cas, req, resp, 401)
        self.assertEqual(cas.attempts(USER, password=OLD), 5)

    def test_cas_answers_that_count_nothing(self):
        """503 (throttled), 456 and 457 (Autodiscover about the account)
        say nothing of the password: they never hold it."""
        cas, d = self.world({"passwords": shield(password_failures=2)},
                            passwords={"throttled": OLD})
        t = self.phone(d, user="throttled@contoso.test", password=OLD)
        for _ in range(6):
            req, resp = t.request("Sync")
            self.assert_from_cas(cas, req, resp, 503)
        self.assertEqual(cas.attempts("throttled", ok=True), 6)
        cas.passwords = None
        for user, status in (("blocked@contoso.test", 456),
                             ("expired@contoso.test", 457)):
            for _ in range(4):
                req = eftest.autodiscover_request(user)
                resp = d.roundtrip(req.raw)
                self.assert_from_cas(cas, req, resp, status)
            self.assertEqual(cas.attempts(user), 4, user)


# --------------------------------------------------------------------------
# 2. guessing

class Guessing(GuardCase):

    def test_30_guesses_known_good_still_passes(self):
        cas, d = self.world({"passwords": shield()},
                            passwords={USER: RIGHT, "bob@contoso.test": RIGHT})
        a = self.phone(d)
        req, resp = a.request()            # known good before the guessing
        self.assert_from_cas(cas, req, resp, 200)
        attackers = [self.phone(d, password="x", device_type="Android",
                                ua="Dalvik/2.1.0") for _ in range(3)]
        locals_ = []
        for i in range(30):
            p = attackers[i % 3]
            p.password = "guess-%02d-%s" % (i, uuid.uuid4().hex[:6])
            req, resp = p.request()
            if cas.find(req.mark):
                self.assertEqual(resp.status, 401)
                self.assertEqual(resp.header("X-FEServer"), cas.fe)
            else:
                self.assert_local_401(cas, req, resp)
                locals_.append(p.device_id)
        refused = cas.attempts(USER, ok=False)
        self.assertLessEqual(refused, 10, "the CAS saw %d different wrong "
                             "passwords of one user (user_failures 10)"
                             % refused)
        self.assertEqual(refused, 10, "easfront answered before the CAS had"
                         " refused user_failures different passwords")
        self.assertEqual(len(locals_), 20)
        recs = [r for p in attackers for r in self.log_of(d, p.device_id,
                                                             10)]
        self.assertEqual(sorted(r["reason"] for r in recs
                                if r["reason"] in ("password-guessing",
                                                   "stale-password")),
                         ["password-guessing"] * 20, recs[:12])

        # the owner's password, known good from before, still passes, from
        # her phone and from a new one
        for p in (a, self.phone(d)):
            req, resp = p.request("Sync")
            self.assert_from_cas(cas, req, resp, 200)
        # a password never seen is answered here; so is a refused one
        for pw in ("never-seen-%s" % uuid.uuid4().hex, "guess-00"):
            p = self.phone(d, password=pw)
            req, resp = p.request()
            self.assert_local_401(cas, req, resp)
            self.assertEqual(self.log_of(d, p.device_id)[0]["reason"],
                             "password-guessing")
        self.assertEqual(cas.attempts(USER, ok=False), 10)
        self.assertEqual(cas.attempts(USER, ok=True), 3)
        # another user is not held
        bob = self.phone(d, user="bob@contoso.test")
        req, resp = bob.request()
        self.assert_from_cas(cas, req, resp, 200)
        bob.password = "typo"
        req, resp = bob.request()
        self.assert_from_cas(cas, req, resp, 401)


# --------------------------------------------------------------------------
# 3. what never counts

class NeverCounted(GuardCase):

    def test_bearer_probes_reach_the_cas(self):
        """20 Bearer requests (HMA's empty AutoDetect probe and a token the
        CAS does not take), all refused by the CAS: every one reaches it,
        and the user's Basic requests are then counted from zero."""
        cas, d = self.world({"passwords": shield(password_failures=3,
                                                 user_failures=3)})
        p = self.phone(d)
        token = tr.jwt({"upn": USER, "unique_name": USER})
        for i in range(20):
            req, resp = p.request(auth="Bearer" if i % 2 else token)
            rec = self.assert_from_cas(cas, req, resp, 401)
            self.assertIn(sc.BEARER_CHALLENGE,
                          resp.headers_named("WWW-Authenticate"))
            self.assertTrue(rec.header("Authorization").startswith(
                "Bearer"))
        self.assertEqual(len([r for r in cas.client_requests() if (
            r.header("Authorization") or "").startswith("Bearer")]), 20)
        for r in self.log_of(d, p.device_id, 20):
            self.assertNotIn(r["reason"], ("stale-password",
                                           "password-guessing"), r)
        self.assert_basic_counted_from_zero(cas, d)

    def test_ntlm_and_negotiate_legs_reach_the_cas(self):
        """20 NTLM and Negotiate handshake legs that the CAS answers 401
        (type 1 -> challenge, a type 3 with a wrong proof -> refused): every
        one reaches the CAS; a right handshake then works, and the user's
        Basic requests are counted from zero."""
        cas, d = self.world({"passwords": shield(password_failures=3,
                                                 user_failures=3)},
                            cas_attrs={"ntlm": True})
        p = self.phone(d)
        legs = 0
        for i in range(10):
            scheme = "NTLM" if i % 2 else "Negotiate"
            req, resp = p.request(auth=scheme + " " + base64.b64encode(
                tr.ntlm_negotiate()).decode())
            self.assert_from_cas(cas, req, resp, 401)
            tr.ntlm_challenge_of(resp)
            bad = tr.ntlm_authenticate("CONTOSO", "alice", os.urandom(8))
            req, resp = p.request(auth=scheme + " " + base64.b64encode(
                bad).decode())
            self.assert_from_cas(cas, req, resp, 401)
            legs += 2
        self.assertEqual(legs, 20)
        req, resp = p.request(auth="NTLM " + base64.b64encode(
            tr.ntlm_negotiate()).decode())
        chal = tr.ntlm_challenge_of(resp)
        req, resp = p.request(auth="NTLM " + base64.b64encode(
            tr.ntlm_authenticate("CONTOSO", "alice", chal)).decode())
        rec = self.assert_from_cas(cas, req, resp, 200)
        self.assertEqual(rec.user, "CONTOSO\\alice")
        req, resp = p.request("Sync", auth="")
        self.assert_from_cas(cas, req, resp, 200)
        for r in self.log_of(d, p.device_id, 23):
            self.assertNotIn(r["reason"], ("stale-password",
                                           "password-guessing"), r)
        self.assertEqual(cas.auth_attempts, [])
        self.assert_basic_counted_from_zero(cas, d)

    def assert_basic_counted_from_zero(self, cas, d):
        """alice's wrong Basic passwords are counted from zero: two
        different ones (user_failures is 3: had the requests before counted
        as one, the second would begin a guessing hold) and the first again
        up to password_failures (3) all reach the CAS; one more is
        answered here (the shield is on)."""
        for pw in ("wrong-0", "wrong-1", "wrong-0", "wrong-0"):
            p = self.phone(d, password=pw)
            req, resp = p.request()
            self.assert_from_cas(cas, req, resp, 401)
        self.assertEqual(cas.attempts(USER, ok=False), 4)
        req, resp = self.phone(d, password="wrong-0").request()
        self.assert_local_401(cas, req, resp)
        req, resp = self.phone(d).request()
        self.assert_from_cas(cas, req, resp, 200)


# --------------------------------------------------------------------------
# 4. holds end

class HoldExpiry(GuardCase):

    def until_forwarded(self, cas, p, limit=10.0):
        """Sends p's request every 0.2 s until one reaches the CAS; each
        before it must be easfront's own 401. Returns (seconds, locals)."""
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < limit:
            req, resp = p.request()
            if cas.find(req.mark):
                return time.monotonic() - t0, n
            self.assert_local_401(cas, req, resp)
            n += 1
            time.sleep(0.2)
        self.fail("the hold did not end within %.0f s" % limit)

    def test_hold_expiry_restores_forwarding(self):
        cas, d = self.world({"passwords": shield(password_failures=3,
                                                 user_failures=3, window=3,
                                                 hold=2)},
                            passwords={USER: RIGHT, "bob@contoso.test": RIGHT})
        a = self.phone(d, password=OLD)
        for _ in range(3):
            req, resp = a.request()
            self.assert_from_cas(cas, req, resp, 401)
        took, n = self.until_forwarded(cas, a)
        self.assertGreater(n, 0, "no local answer: no hold at all")
        self.assertGreaterEqual(took, 0.8, "the hold ended too early")
        self.assertLessEqual(took, 4.5, "the hold outlasted hold (2 s)")
        self.assertEqual(cas.attempts(USER, password=OLD), 4)
        a.password = RIGHT
        req, resp = a.request()
        self.assert_from_cas(cas, req, resp, 200)

        # a guessing hold ends too
        bob = self.phone(d, user="bob@contoso.test")
        for i in range(3):
            bob.password = "guess-%d" % i
            req, resp = bob.request()
            self.assert_from_cas(cas, req, resp, 401)
        bob.password = "guess-new"
        took, n = self.until_forwarded(cas, bob)
        self.assertGreater(n, 0, "no guessing hold")
        self.assertGreaterEqual(took, 0.8, "the hold ended too early")
        self.assertLessEqual(took, 4.5, "the hold outlasted hold (2 s)")
        self.assertEqual(cas.attempts("bob@contoso.test", ok=False), 4)
        self.assertEqual(cas.attempts("bob@contoso.test",
                                      password="guess-new"), 1)


# --------------------------------------------------------------------------
# 5. holds across reloads

class ReloadKeepsHolds(GuardCase):

    def test_reload_keeps_holds(self):
        cas, d = self.world({"passwords": shield(password_failures=3,
                                                 user_failures=3)},
                            passwords={USER: RIGHT, "bob@contoso.test": RIGHT})
        a = self.phone(d, password=OLD)
        for _ in range(4):
            a.request()
        bob = self.phone(d, user="bob@contoso.test")
        for i in range(4):
            bob.password = "guess-%d" % i
            bob.request()
        self.assertEqual(cas.attempts(USER, password=OLD), 3)
        self.assertEqual(cas.attempts("bob@contoso.test"), 3)
        nokia = self.phone(d, device_type="NOKIA")
        req, resp = nokia.request()
        self.assert_from_cas(cas, req, resp, 200)

        # SIGHUP with a new device rule and an idle timeout changed; then
        # `easfront reload` with a smaller table
        steps = [("hup", lambda: d.guard.update(devices=[
                     {"block": {"device_type": "^NOKIA$"}}]), True),
                 ("cmd", lambda: d.guard.update(max_entries=500), False)]
        for how, change, new_rule in steps:
            with self.subTest(reload=how):
                change()
                d.timeouts["idle"] += 1
                d.write_config()
                d.reload(how)
                if new_rule:
                    req, resp = self.phone(d, device_type="NOKIA").request()
                    self.assert_local_403(cas, req, resp)
                for p in (a, self.phone(d, password=OLD)):
                    p.close()
                    req, resp = p.request("Sync")
                    self.assert_local_401(cas, req, resp)
                bob.close()
                bob.password = "after-%s" % how
                req, resp = bob.request()
                self.assert_local_401(cas, req, resp)
                self.assertEqual(self.log_of(d, bob.device_id, 1)[-1][
                    "reason"], "password-guessing")
                self.assertEqual(cas.attempts(USER, password=OLD), 3,
                                 "a reload let the held password through")
                self.assertEqual(cas.attempts("bob@contoso.test"), 3)
        req, resp = self.phone(d).request()
        self.assert_from_cas(cas, req, resp, 200)


# --------------------------------------------------------------------------
# 6. device rules

RULES = [
    {"block": {"device_type": "^SAMSUNGSGHI337$"}},
    {"allow": {"user": "ceo@contoso.test", "device_type": "^WP8$"}},
    {"block": {"user_agent": "^Apple-iPhone.*/1002\\."}},
    {"block": {"device_id": "^BADDEV"}},
    {"block": {"version": "-12.1", "cmd": "Sync"}},
    {"block": {"device_type": "^WP8$"}},
]
CEO = "ceo@contoso.test"
INTERN = "intern@contoso.test"


def rule_lines(d):
    """The config-file line of each `- block:` / `- allow:` entry under
    guard.devices, in order (1-based)."""
    lines = d.config_lines()
    start = lines.index("guard:")
    return [i + 1 for i, ln in enumerate(lines)
            if i > start and re.match(r"^\s*- (block|allow):", ln)]


def b64_target(version, cmd, device_id, device_type):
    return EAS_PATH + "?" + tr.eas_b64_query(
        version, tr.CMD_CODE[cmd], device_id, device_type)


class DeviceRules(GuardCase):

    def world_rules(self):
        return self.world({"devices": [dict(r) for r in RULES],
                           "passwords": shield()},
                          passwords={USER: RIGHT, CEO: RIGHT, INTERN: RIGHT})

    def cases(self):
        """(what, Phone keywords, request keywords, rule index or None)."""
        old_ua = "Apple-iPhone5C1/1002.329"
        return [
            ("type", {"device_type": "SAMSUNGSGHI337"}, {}, 0),
            ("type, other case", {"device_type": "samsungSGHi337"}, {}, 0),
            ("type, longer", {"device_type": "SAMSUNGSGHI3370"}, {}, None),
            ("ua", {"ua": old_ua}, {}, 2),
            ("ua, other case", {"ua": old_ua.lower()}, {}, 2),
            ("ua, newer", {"ua": "Apple-iPhone9C1/1202.466"}, {}, None),
            ("ua, no dot", {"ua": "Apple-iPhone5C1/10021"}, {}, None),
            ("id", {"device_id": new_device("BADDEV")}, {}, 3),
            ("id, other case", {"device_id": new_device("baddev")}, {}, 3),
            ("id, not at the start", {"device_id": new_device("XBADDEV")},
             {}, None),
            ("id, base64 query", {"version": ""},
             {"cmd": "Sync", "b64": (141, new_device("BADDEV"))}, 3),
            ("12.1 Sync", {"version": "12.1"}, {"cmd": "Sync"}, 4),
            ("12.0 Sync", {"version": "12.0"}, {"cmd": "Sync"}, 4),
            ("2.5 Sync", {"version": "2.5"}, {"cmd": "Sync"}, 4),
            ("12.1 Sync base64", {"version": ""},
             {"cmd": "Sync", "b64": (121, new_device())}, 4),
            ("12.1 FolderSync", {"version": "12.1"}, {"cmd": "FolderSync"},
             None),
            ("14.0 Sync", {"version": "14.0"}, {"cmd": "Sync"}, None),
            ("16.1 Sync base64", {"version": ""},
             {"cmd": "Sync", "b64": (161, new_device())}, None),
            ("allowed user", {"user": CEO, "device_type": "WP8"}, {}, None),
            ("allowed user, other spelling",
             {"user": "CEO@Contoso.TEST", "device_type": "WP8"}, {}, None),
            ("allowed user before the ua rule",
             {"user": CEO, "device_type": "WP8", "ua": old_ua}, {}, None),
            ("other user, same type", {"user": INTERN, "device_type": "WP8"},
             {}, 5),
            ("allowed user, other type",
             {"user": CEO, "device_type": "iPhone", "ua": old_ua}, {}, 2),
        ]

    def run_cases(self, cas, d, lines, cases, one=None):
        """Each case on a phone of its own, or all on phone one (its one
        keep-alive connection), its attributes set for each."""
        for what, pkw, rkw, rule in cases:
            with self.subTest(what):
                if one is None:
                    p = self.phone(d, **pkw)
                else:
                    p = one
                    fresh = Phone(d)
                    for k in ("user", "device_type", "ua", "version"):
                        setattr(p, k, pkw.get(k, getattr(fresh, k)))
                    p.device_id = pkw.get("device_id", fresh.device_id)
                cmd = rkw.get("cmd", "FolderSync")
                target = None
                if "b64" in rkw:
                    version, p.device_id = rkw["b64"]
                    target = b64_target(version, cmd, p.device_id,
                                        p.device_type)
                req, resp = p.request(cmd, target=target)
                rec = self.log_of(d, p.device_id)[0]
                self.assertIn("rule", rec)
                if rule is None:
                    self.assert_from_cas(cas, req, resp, 200)
                    self.assertNotEqual(rec["reason"], "device-blocked")
                    if "allowed" not in what:
                        self.assertEqual(rec["rule"], 0, rec)
                else:
                    self.assert_local_403(cas, req, resp)
                    self.assertEqual((rec["status"], rec["reason"],
                                      rec["rule"]),
                                     (403, "device-blocked", lines[rule]),
                                     rec)

    def test_block_and_allow(self):
        cas, d = self.world_rules()
        lines = rule_lines(d)
        self.assertEqual(len(lines), len(RULES))
        self.run_cases(cas, d, lines, self.cases())
        self.assertEqual(cas.attempts(ok=False), 0)

    def test_one_connection(self):
        """The connection's memo of the guard's work never carries one
        request's answer to the next: every case again, then in reverse,
        on one keep-alive connection (blocked after allowed and the other
        way round, a user, a User-Agent, a command or a version changing
        alone)."""
        cas, d = self.world_rules()
        lines = rule_lines(d)
        cases = self.cases()
        p = self.phone(d)
        self.run_cases(cas, d, lines, cases + cases[::-1], one=p)
        self.assertEqual(cas.attempts(ok=False), 0)

    def test_bad_regex_refused_by_check_and_reload(self):
        cas, d = self.world_rules()
        lines = rule_lines(d)
        bad = [dict(r) for r in RULES]
        bad[0] = {"block": {"device_type": "^(unclosed"}}
        del bad[3]                                 # would let BADDEV in
        good_text = d.config_text()
        bad_text = eftest.yaml_dump(dict(d.config(), guard=dict(
            d.guard, devices=bad)))
        value_line = [i + 1 for i, ln in enumerate(bad_text.splitlines())
                      if "^(unclosed" in ln]
        self.assertEqual(len(value_line), 1)
        where = "%s:%d:" % (d.conf_path, value_line[0])

        # easfront check: the good file passes, the bad one is refused
        p = eftest.run([d.bin, "check", "-c", d.conf_path], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(d.conf_path, "w") as f:
            f.write(bad_text)
        p = eftest.run([d.bin, "check", "-c", d.conf_path], check=False)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(where, p.stdout + p.stderr)

        # a reload of it, either way, is refused and the old rules serve
        old = [({"device_type": "SAMSUNGSGHI337"}, 0),
               ({"device_id": new_device("BADDEV")}, 3)]
        for how in ("hup", "cmd"):
            with self.subTest(reload=how):
                if how == "hup":
                    log = d.reload("hup", expect="reload refused")
                else:
                    # the command reads the file first: it refuses to
                    # signal the daemon at all
                    q = eftest.run([d.bin, "reload", "-c", d.conf_path],
                                   timeout=20, check=False)
                    self.assertEqual(q.returncode, 1, q.stdout + q.stderr)
                    log = q.stdout + q.stderr
                self.assertIn(where, log)
                self.assertRegex(log, r"(?i)regular expression|regex|"
                                 r"parenthes")
                d.assert_alive()
                for pkw, rule in old:
                    p = self.phone(d, **pkw)
                    req, resp = p.request()
                    self.assert_local_403(cas, req, resp)
                    self.assertEqual(self.log_of(d, p.device_id)[0]["rule"],
                                     lines[rule])
                req, resp = self.phone(d).request()
                self.assert_from_cas(cas, req, resp, 200)

        # a good file is taken again: BADDEV's rule removed
        d.guard["devices"] = [r for i, r in enumerate(RULES) if i != 3]
        d.write_config()
        self.assertNotEqual(d.config_text(), good_text)
        d.reload("hup")
        p = self.phone(d, device_id=new_device("BADDEV"))
        req, resp = p.request()
        self.assert_from_cas(cas, req, resp, 200)
        p = self.phone(d, device_type="SAMSUNGSGHI337")
        req, resp = p.request()
        self.assert_local_403(cas, req, resp)


# --------------------------------------------------------------------------
# 7. a flood of random users against a small table

class Flood100k(GuardCase):
    N = 100000
    SECONDS = 40         # the flood's own bound (an ASan build is slower)
    AT_LEAST = 20000     # what must fit in it
    MAX_ENTRIES = 1000
    RSS_GROWTH_KIB = 64 * 1024

    def test_random_users_do_not_evict_a_hold(self):
        """The issue's case: password_failures 1, so that every random
        user's password is held too (the table fills with holds)."""
        self.flood_case(password_failures=1)

    def test_random_users_default_thresholds(self):
        """The same flood with password_failures 3: each random user costs
        two plain entries (its password's first refusal, its user's)."""
        self.flood_case(password_failures=3)

    def flood_case(self, password_failures):
        """100,000 distinct users with random wrong passwords, each one
        reaching the CAS once and costing the table a password entry and a
        user entry, against a table of 1000 entries: alice's held password
        stays held (answered here, the CAS never sees it again), bob's
        guessing hold stays, alice's known-good password still passes, and
        the memory stays bounded."""
        pf = password_failures
        cas, d = self.world(
            {"passwords": shield(password_failures=pf, user_failures=10),
             "max_entries": self.MAX_ENTRIES},
            passwords={USER: RIGHT, "bob@contoso.test": RIGHT},
            cas_attrs={"nodelay": True})
        a = self.phone(d)
        req, resp = a.request()                     # known good
        self.assert_from_cas(cas, req, resp, 200)
        a.password = OLD
        for _ in range(pf):                         # held from the last
            req, resp = a.request()
            self.assert_from_cas(cas, req, resp, 401)
        req, resp = a.request()
        self.assert_local_401(cas, req, resp)
        bob = self.phone(d, user="bob@contoso.test")
        for i in range(10):
            bob.password = "guess-%d" % i
            req, resp = bob.request()
            self.assert_from_cas(cas, req, resp, 401)
        bob.password = "guess-new-1"
        req, resp = bob.request()
        self.assert_local_401(cas, req, resp)
        self.assertEqual(self.log_of(d, bob.device_id, 11)[-1]["reason"],
                         "password-guessing")
        alice_seen = cas.attempts(USER)
        bob_seen = cas.attempts("bob@contoso.test")
        refused = cas.attempts(ok=False)
        rss0 = d.rss_kib()

        cas.keep_requests = False       # the flood is counted, not kept
        f = run_flood(d, self.N, conns=8, seconds=self.SECONDS)
        cas.keep_requests = True
        print("\nflood: %d of %d requests answered in %.1f s (%s); easfront"
              " RSS %d -> %d KiB, peak %d KiB" % (
                  f["answered"], self.N, f["elapsed"], f["statuses"], rss0,
                  d.rss_kib(), d.hwm_kib()))
        self.assertGreaterEqual(f["answered"], self.AT_LEAST,
                                "the flood was too slow: %r" % f)
        self.assertEqual(f["statuses"], {"401": f["answered"]}, f)
        self.assertEqual(f["errors"], [], f)
        # every one of them a new user, refused by the CAS itself
        self.assertEqual(cas.attempts(ok=False) - refused, f["answered"],
                         "flood requests did not all reach the CAS")
        d.assert_alive()

        # did the holds survive the flood? (what was lost is said at the
        # end, after the memory checks)
        lost = []
        a.close()
        for _ in range(3):
            req, resp = a.request("Sync")
            self.assertEqual(resp.status, 401)
        if cas.attempts(USER) != alice_seen:
            lost.append("alice's held password reached the CAS again "
                        "(%d times of 3): her hold was evicted" % (
                            cas.attempts(USER) - alice_seen))
        else:
            self.assert_local_401(cas, req, resp)
            self.assertEqual(self.log_of(d, a.device_id, pf + 5)[-1][
                "reason"], "stale-password")
        bob.close()
        bob.password = "guess-new-2"
        req, resp = bob.request()
        self.assertEqual(resp.status, 401)
        if cas.attempts("bob@contoso.test") != bob_seen:
            lost.append("a new password of bob reached the CAS: his "
                        "guessing hold was evicted")
        else:
            self.assert_local_401(cas, req, resp)
        # the good password still works
        a.password = RIGHT
        req, resp = a.request()
        self.assert_from_cas(cas, req, resp, 200)

        grown = d.rss_kib() - rss0
        self.assertLess(grown, self.RSS_GROWTH_KIB, "RSS grew by %d KiB" %
                        grown)
        self.assertLess(d.hwm_kib() - rss0, self.RSS_GROWTH_KIB)
        g = d.guard_status()
        if g is not None:
            g = {k: v for k, v in g.items() if k != "holds"}
            print("GET /guard: %r" % g)
            self.assertLessEqual(g["entries"], self.MAX_ENTRIES, g)
            self.assertGreater(g["evictions"], 0, g)
            self.assertGreaterEqual(g["held_passwords"], 1, g)
            if g["held_passwords"] + g["held_users"] > g["entries"]:
                lost.append("GET /guard counts %d held passwords and %d "
                            "held users in a table of %d entries" % (
                                g["held_passwords"], g["held_users"],
                                g["entries"]))
        m = d.metrics()

        def samples(name):
            return [v for (n, _), v in m.items() if n == name]
        if samples("easfront_guard_entries"):
            print("metrics: entries %r, evictions %r" % (
                samples("easfront_guard_entries"),
                samples("easfront_guard_evictions_total")))
            self.assertLessEqual(max(samples("easfront_guard_entries")),
                                 self.MAX_ENTRIES)
            self.assertGreater(sum(samples(
                "easfront_guard_evictions_total")), 0)
        self.assertEqual(lost, [], "after %d random users (password_"
                         "failures %d, max_entries %d)" % (
                             f["answered"], pf, self.MAX_ENTRIES))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--flood"]:
        port, ca, n, conns, seconds, prefix = sys.argv[2:8]
        f = Flood(int(port), ca, int(n), conns=int(conns),
                  seconds=float(seconds), prefix=prefix).run()
        print(json.dumps(f.result()))
        sys.exit(0)
    unittest.main()
