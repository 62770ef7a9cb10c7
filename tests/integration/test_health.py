"""CAS health (DESIGN.md "CAS health: what \"up\" means"): by default a CAS
is up while its check path answers any status below 500 (Exchange 2010, which
has no healthcheck.htm and answers 401 everywhere, stays up); it is down on a
5xx, a refused or hung connection, a failed TLS handshake or an answer that is
not HTTP. `health.expect` turns on the strict check: a 200 whose body starts
with that text ("" takes any 200)."""

import json
import re
import socket
import threading
import time
import unittest

import eftest
import standin_cas as sc
from eftest import assert_passthrough, eas_request, http_request

HEALTH_PATH = "/Microsoft-Server-ActiveSync/healthcheck.htm"
# The default check: no "expect" key (eftest's DEFAULT_HEALTH has none
# either). A member flips after rise/fall results in a row.
HEALTH = {"path": HEALTH_PATH, "interval": 1, "timeout": 1, "rise": 2,
          "fall": 3}
SLACK = 2.0                 # seconds on top of what the settings allow
OUT_BOUND = HEALTH["fall"] * HEALTH["interval"] + HEALTH["timeout"] + SLACK
BACK_BOUND = HEALTH["rise"] * HEALTH["interval"] + HEALTH["timeout"] + SLACK
# From start-up: the first check runs within interval + 1 s.
START_BOUND = HEALTH["interval"] + 1 + OUT_BOUND
DOWN_LINE = re.compile(r" CAS (\S+) \(([^)]*)\) is down: (.*)$", re.M)
UP_LINE = re.compile(r" CAS (\S+) \(([^)]*)\) is up$", re.M)


class HealthCase(eftest.EfTestCase):

    def own_health(self, d):
        """The status of easfront's own healthcheck.htm (200 while its site
        has a CAS up)."""
        return d.roundtrip(http_request("GET", HEALTH_PATH).raw).status

    def folder_sync(self, d, device):
        req = eas_request("FolderSync", device_id=device)
        return req, d.roundtrip(req.raw)

    def log_entry(self, d, device):
        """The access-log entry (JSON) of the request from device."""
        def find():
            tag = '"%s"' % device
            return next((e for e in (json.loads(ln) for ln in
                                     d.access_log_lines() if tag in ln)
                         if e.get("device") == device), None)
        e = eftest.wait_until(find, 3)
        self.assertIsNotNone(e, "no access-log line for device %s" % device)
        return e

    @staticmethod
    def down_reasons(d):
        return [m.group(3) for m in DOWN_LINE.finditer(d.stderr_text())]

    @staticmethod
    def up_count(d):
        return len(UP_LINE.findall(d.stderr_text()))

    def wait_down(self, d, t0, bound, label):
        """Waits until easfront logs the CAS down (at most bound seconds
        after t0); returns the reason it gave."""
        got = eftest.wait_until(lambda: self.down_reasons(d),
                                bound - (time.monotonic() - t0), 0.05)
        took = time.monotonic() - t0
        self.assertTrue(got, "%s: the CAS was not marked down within %.1f s;"
                        " easfront said:\n%s" % (label, bound,
                                                 d.stderr_text()[-2000:]))
        print("\n%s: down after %.2f s: %s" % (label, took, got[0]))
        return got[0]

    def assert_site_down(self, d, device):
        """easfront answers for a site without a CAS: its own
        healthcheck.htm is not 200, an EAS request gets 503
        no-site-available."""
        self.assertNotEqual(self.own_health(d), 200,
                            "healthcheck.htm 200 with the only CAS down")
        _, r = self.folder_sync(d, device)
        self.assert_own_error(r, (503,))
        self.assertEqual(self.log_entry(d, device).get("reason"),
                         "no-site-available")


class DefaultCheck(HealthCase):
    """No health.expect: any status below 500 is up."""

    def test_exchange2010_stays_up_for_a_minute(self):
        cas = self.start_cas(tls=True, flavour="exchange2010")
        d = self.start_daemon(cas, health=HEALTH)
        t_end = time.monotonic() + 60
        n = 0
        while time.monotonic() < t_end:
            n += 1
            with self.subTest(round=n):
                self.assertEqual(self.own_health(d), 200,
                                 "easfront's healthcheck.htm not 200")
                req, r = self.folder_sync(d, "EFHEALTH%04d" % n)
                self.assertEqual(r.status, 200, r.status_line)
                assert_passthrough(self, r, self.one_cas_request(cas,
                                                                 req.mark))
            time.sleep(min(5.0, max(0.0, t_end - time.monotonic())))
        req, r = self.folder_sync(d, "EFHEALTHLAST")
        self.assertEqual(r.status, 200, r.status_line)
        self.assertEqual(r.body, sc.FOLDERSYNC_BODY)
        self.assertEqual(self.log_entry(d, "EFHEALTHLAST").get("status"),
                         200)
        self.assertEqual(self.own_health(d), 200)
        self.assertEqual(self.down_reasons(d), [],
                         "easfront took the Exchange 2010 CAS down")
        # The checks really ran, and the CAS answered each with its 401.
        probes = [q for q in cas.requests if cas.is_health_probe(q)]
        print("\nexchange2010: %d rounds, %d health probes, statuses %s"
              % (n, len(probes),
                 sorted({q.response_status for q in probes})))
        self.assertGreaterEqual(len(probes), 30, "too few health checks")
        self.assertEqual({q.response_status for q in probes
                          if q.response_head}, {401})
        head = probes[0].response_head.decode("latin-1")
        for scheme in ("Negotiate", "NTLM", "Basic realm="):
            self.assertIn("\r\nWWW-Authenticate: " + scheme, head)

    def test_404_and_other_4xx_are_up(self):
        # A CAS without the page (SOGo, Z-Push): 404 on the check path.
        cas = self.start_cas()
        d = self.start_daemon(cas, health=dict(HEALTH, path="/no/such.htm"))
        time.sleep(HEALTH["interval"] * (HEALTH["fall"] + 2))
        self.assertEqual(self.down_reasons(d), [])
        probes = [q for q in cas.requests if q.path == "/no/such.htm"]
        self.assertGreaterEqual(len(probes), HEALTH["fall"])
        self.assertEqual({q.response_status for q in probes
                          if q.response_head}, {404})
        self.assertEqual(self.own_health(d), 200)
        _, r = self.folder_sync(d, "EFHEALTH404")
        self.assertEqual(r.status, 200, r.status_line)

    def test_503_down_within_fall_then_up_within_rise(self):
        cas = self.start_cas()
        d = self.start_daemon(cas, health=HEALTH)
        self.assertEqual(self.own_health(d), 200)
        t0 = time.monotonic()
        cas.health_status = 503
        why = self.wait_down(d, t0, OUT_BOUND, "health 503")
        self.assertEqual(why, "health check answered 503")
        self.assert_site_down(d, "EFHEALTH503")
        t0 = time.monotonic()
        cas.health_status = 200
        up = eftest.wait_until(lambda: self.up_count(d), BACK_BOUND,
                               0.05)
        took = time.monotonic() - t0
        self.assertTrue(up, "the CAS was not put back within %.1f s of "
                        "answering 200; easfront said:\n%s" % (
                            BACK_BOUND, d.stderr_text()[-2000:]))
        print("health 200 again: up after %.2f s" % took)
        self.assertGreaterEqual(took, (HEALTH["rise"] - 1)
                                * HEALTH["interval"] - 0.5,
                                "put back before rise checks")
        self.assertEqual(self.own_health(d), 200)
        _, r = self.folder_sync(d, "EFHEALTHBACK")
        self.assertEqual(r.status, 200, r.status_line)


class StrictCheck(HealthCase):
    """health.expect set: a 200 whose body starts with it."""

    def test_expect_200_ok_takes_exchange2010_down(self):
        cas = self.start_cas(flavour="exchange2010")
        t0 = time.monotonic()
        d = self.start_daemon(cas, wait_healthy=False,
                              health=dict(HEALTH, expect="200 OK"))
        why = self.wait_down(d, t0, START_BOUND, "expect 200 OK, 401")
        self.assertEqual(why, "health check answered 401, expected 200")
        self.assert_site_down(d, "EFHEALTHSTRICT")

    def test_expect_200_ok_wrong_body_down(self):
        cas = self.start_cas(health_body=b"<html>SOGo login</html>")
        t0 = time.monotonic()
        d = self.start_daemon(cas, wait_healthy=False,
                              health=dict(HEALTH, expect="200 OK"))
        why = self.wait_down(d, t0, START_BOUND, "expect 200 OK, login page")
        self.assertEqual(why,
                         "health check answered 200 without the expected "
                         "body")

    def test_expect_empty_any_200_up(self):
        cas = self.start_cas(health_body=b"<html>SOGo login</html>")
        d = self.start_daemon(cas, health=dict(HEALTH, expect=""))
        self.assertIn('expect: ""', d.config_text())
        time.sleep(HEALTH["interval"] * (HEALTH["fall"] + 2))
        self.assertEqual(self.down_reasons(d), [])
        probes = [q for q in cas.requests if cas.is_health_probe(q)]
        self.assertGreaterEqual(len(probes), HEALTH["fall"])
        self.assertEqual(self.own_health(d), 200)
        _, r = self.folder_sync(d, "EFHEALTHEMPTY")
        self.assertEqual(r.status, 200, r.status_line)
        # ... but "" still wants a 200: a 401 is down.
        t0 = time.monotonic()
        cas.flavour = "exchange2010"
        why = self.wait_down(d, t0, OUT_BOUND, "expect \"\", 401")
        self.assertEqual(why, "health check answered 401, expected 200")


class Unreachable(HealthCase):
    """A CAS that cannot be asked is down, whatever the settings."""

    def test_refused_hung_tls_garbage_down(self):
        hang = self.start_cas(mode="hang", modes_apply_to_health=True)
        garbage = self.start_cas(mode="garbage", modes_apply_to_health=True)
        # a TLS CAS whose certificate easfront's CA bundle does not know
        other = eftest.Pki()
        untrusted = sc.StandinCAS(tls_context=other.server_context(
            *other.leaf("cas-untrusted", ["IP:127.0.0.1"])))
        untrusted.start()
        self.addCleanup(untrusted.stop)
        # an https:// CAS whose port speaks plain HTTP: OpenSSL's reason
        # for the failed handshake reaches the log, not only for
        # verification
        plain = FixedAnswer(b"HTTP/1.1 400 Bad Request\r\n"
                            b"Content-Length: 0\r\n\r\n", whole_head=False)
        self.addCleanup(plain.stop)
        kinds = {
            "refused": ("http://127.0.0.1:%d" % eftest.closed_port(),
                        r"^connection failed(: .*refused.*)?$", START_BOUND),
            "hang": (hang.url, r"^health check timed out$",
                     START_BOUND + HEALTH["fall"] * HEALTH["timeout"]),
            "tls": (untrusted.url, r"^TLS failed: certificate verify failed$",
                    START_BOUND),
            "notls": (plain.url.replace("http:", "https:"),
                      r"^TLS failed: wrong version number$", START_BOUND),
            "garbage": (garbage.url, r"^malformed health response$",
                        START_BOUND),
        }
        t0 = time.monotonic()
        daemons = {k: self.start_daemon([url], wait_healthy=False,
                                        health=HEALTH)
                   for k, (url, _, _) in kinds.items()}
        for k, (url, pattern, bound) in kinds.items():
            with self.subTest(kind=k):
                d = daemons[k]
                why = self.wait_down(d, t0, bound + len(kinds), k)
                self.assertRegex(why, pattern)
                self.assert_site_down(d, "EFHEALTH" + k.upper())


class FixedAnswer:
    """A server on 127.0.0.1 that reads a request head (or, without
    whole_head, what the first read brings), sends the same bytes on every
    connection and closes: for answers the stand-in does not make."""

    def __init__(self, answer, whole_head=True):
        self.answer = answer
        self.whole_head = whole_head
        self.served = 0
        self.ls = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.ls.getsockname()[1]
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            with s:
                s.settimeout(5)
                head = b""
                try:
                    while b"\r\n\r\n" not in head:
                        data = s.recv(4096)
                        if not data:
                            break
                        head += data
                        if not self.whole_head:
                            break
                    s.sendall(self.answer)
                    self.served += 1
                except OSError:
                    pass

    def stop(self):
        self.ls.close()


class InterimAnswers(HealthCase):
    """A 1xx head is not the answer: the check reads on to the final one."""

    def test_continue_then_503_down_continue_alone_down(self):
        kinds = {
            "100 then 503": (b"HTTP/1.1 100 Continue\r\n\r\n"
                             b"HTTP/1.1 503 Service Unavailable\r\n"
                             b"Content-Length: 0\r\n\r\n",
                             "health check answered 503"),
            "100 alone": (b"HTTP/1.1 100 Continue\r\n\r\n",
                          "connection closed before an answer"),
        }
        servers = {}
        for k, (answer, _) in kinds.items():
            servers[k] = FixedAnswer(answer)
            self.addCleanup(servers[k].stop)
        t0 = time.monotonic()
        daemons = {k: self.start_daemon([servers[k].url], wait_healthy=False,
                                        health=HEALTH) for k in kinds}
        for k, (_, want) in kinds.items():
            with self.subTest(kind=k):
                why = self.wait_down(daemons[k], t0, START_BOUND + 2, k)
                self.assertEqual(why, want)
                self.assertGreaterEqual(servers[k].served, HEALTH["fall"])


class Exchange2010Standin(eftest.EfTestCase):
    """The stand-in's exchange2010 flavour on its own."""

    def test_401_everywhere_without_credentials(self):
        cas = self.start_cas(flavour="exchange2010")
        for path in (HEALTH_PATH, "/Microsoft-Server-ActiveSync",
                     "/autodiscover/autodiscover.xml", "/no/such"):
            with self.subTest(path=path):
                r = raw_roundtrip(cas.port, http_request("GET", path).raw)
                self.assertEqual(r.status, 401, r.status_line)
                self.assertEqual(r.headers_named("WWW-Authenticate"),
                                 ["Negotiate", "NTLM",
                                  'Basic realm="%s"' % cas.name])
        auth = [("Authorization", eftest.basic("alice@contoso.test"))]
        r = raw_roundtrip(cas.port, http_request("GET", HEALTH_PATH,
                                                 auth).raw)
        self.assertEqual(r.status, 404, r.status_line)
        r = raw_roundtrip(cas.port, eas_request("FolderSync").raw)
        self.assertEqual(r.status, 200, r.status_line)
        self.assertEqual(r.body, sc.FOLDERSYNC_BODY)


def raw_roundtrip(port, raw, timeout=5):
    """One request over plain TCP to the stand-in; the response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c = eftest.RawConn(s)
    try:
        c.send(raw)
        return c.read_response(timeout=timeout)
    finally:
        c.close()


if __name__ == "__main__":
    unittest.main()
