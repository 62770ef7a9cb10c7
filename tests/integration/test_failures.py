"""Failures: a CAS that refuses, hangs, answers garbage or closes; clients
that vanish mid-transfer; and request smuggling attempts, which must be
rejected by easfront and never reach the CAS."""

import json
import os
import socket
import time
import unittest

import eftest
import standin_cas as sc
from eftest import (assert_passthrough, basic, eas_request, eas_target,
                    http_request)

FAST = {"upstream_response": 3, "long_poll": 30}
NO_PROBES = {"interval": 600}      # health probes would disturb fd counts


class Upstream(eftest.EfTestCase):

    def timed(self, d, req, timeout=20):
        t0 = time.monotonic()
        r = d.roundtrip(req.raw, timeout=timeout)
        return r, time.monotonic() - t0

    def still_serves(self, d, cas):
        cas.mode = None
        req = eas_request("FolderSync")
        r = d.roundtrip(req.raw)
        self.assertEqual(r.status, 200, "easfront no longer serves")
        assert_passthrough(self, r, self.one_cas_request(cas, req.mark))

    def test_refused_503_fast(self):
        """No CAS took the connection and there is no fallback: a 503 the
        client may retry (nothing reached any CAS), at once."""
        port = eftest.closed_port()
        d = self.start_daemon(["http://127.0.0.1:%d" % port],
                              wait_healthy=False, health=NO_PROBES)
        r, took = self.timed(d, eas_request("FolderSync"))
        print("\nrefused: %s after %.2f s" % (r.status_line, took))
        self.assert_own_error(r, (503,))
        self.assertRegex(r.header("Retry-After") or "", r"^[0-9]+$")
        self.assertLess(took, 2.0)

    def test_hang_504_after_upstream_response(self):
        cas = self.start_cas(mode="hang")
        d = self.start_daemon(cas, timeouts=FAST)
        r, took = self.timed(d, eas_request("FolderSync"))
        print("\nhang: %s after %.2f s" % (r.status_line, took))
        self.assert_own_error(r, (504,))
        self.assertGreaterEqual(took, 2.5, "504 before upstream_response")
        self.assertLess(took, 6.0)
        self.assertEqual(len(cas.client_requests()), 1)
        self.still_serves(d, cas)

    def test_hang_ping_waits_long_poll(self):
        cas = self.start_cas(mode="hang")
        d = self.start_daemon(cas, timeouts={"upstream_response": 2,
                                             "long_poll": 6})
        r, took = self.timed(d, eas_request("Ping",
                                            body=sc.ping_request(60)))
        print("\nhung Ping: %s after %.2f s" % (r.status_line, took))
        self.assert_own_error(r, (504,))
        self.assertGreaterEqual(took, 5.5, "a Ping was cut by "
                                "upstream_response instead of long_poll")
        self.assertLess(took, 10.0)

    def test_garbage_502(self):
        cas = self.start_cas(mode="garbage")
        d = self.start_daemon(cas, timeouts=FAST)
        r, took = self.timed(d, eas_request("FolderSync"))
        self.assert_own_error(r, (502,))
        self.assertLess(took, 2.0)
        self.assertNotIn(b"garbage", r.raw_head + r.body)
        self.still_serves(d, cas)

    def test_close_after_head_502(self):
        cas = self.start_cas(mode="close")
        d = self.start_daemon(cas, timeouts=FAST)
        r, took = self.timed(d, eas_request("Sync"))
        self.assert_own_error(r, (502,))
        self.assertLess(took, 2.0)
        self.still_serves(d, cas)

    def test_slow_headers_delivered_intact(self):
        cas = self.start_cas(mode="slow_headers", slow_delay=0.1)
        d = self.start_daemon(cas, timeouts={"upstream_response": 5})
        req = eas_request("FolderSync")
        r, took = self.timed(d, req)
        self.assertGreater(took, 1.5)
        self.assertEqual(r.status, 200)
        assert_passthrough(self, r, self.one_cas_request(cas, req.mark))

    def test_all_cas_down_503_retry_after_then_recovers(self):
        cas = self.start_cas()
        port = cas.port
        d = self.start_daemon(cas, health={"interval": 1, "timeout": 1,
                                           "rise": 1, "fall": 2})
        cas.refuse()
        got = []

        def down():
            r = d.roundtrip(eas_request("FolderSync").raw)
            got.append(r.status)
            return r if r.status == 503 else None
        r = eftest.wait_until(down, 10, 0.5)
        self.assertIsNotNone(r, "never 503 while the only CAS is down "
                             "(statuses seen: %s)" % got)
        self.assert_own_error(r, (503,))
        self.assertRegex(r.header("Retry-After") or "", r"^[0-9]+$",
                         "503 without Retry-After")
        # Requests fail over at once; the health checks take up to `fall`
        # intervals to agree that the front end has nothing to offer.
        hc = eftest.wait_until(
            lambda: (lambda x: x if x.status != 200 else None)(d.roundtrip(
                http_request("GET", "/Microsoft-Server-ActiveSync/"
                             "healthcheck.htm").raw)), 6, 0.5)
        self.assertIsNotNone(hc, "healthcheck.htm says 200 with no CAS "
                             "reachable")
        # the CAS comes back on the same port
        back = sc.StandinCAS(port=port).start()
        self.addCleanup(back.stop)
        r = eftest.wait_until(
            lambda: (lambda x: x if x.status == 200 else None)(
                d.roundtrip(eas_request("FolderSync").raw)), 10, 0.5)
        self.assertIsNotNone(r, "easfront did not notice the CAS came back")


class FallbackAtOnce(eftest.EfTestCase):
    """Every CAS of a site refuses connections right after start, before any
    health check could say so: its users' very first requests are proxied to
    the fallback site (never a 451 to it), and the dead CAS count against
    nothing else."""

    def start(self, site1_cas, site2):
        dead = ["http://127.0.0.1:%d" % eftest.closed_port()
                for _ in range(site1_cas)]
        sites = [{"name": "site1", "cas": dead, "fallback": "site2",
                  "health": NO_PROBES},
                 {"name": "site2", "cas": [site2.url], "health": NO_PROBES,
                  "proxy_path": "/microsoft-server-activesync",
                  "external_url": "https://site2-eas.contoso.test/"
                                  "Microsoft-Server-ActiveSync"}]
        return self.start_daemon(dead, wait_healthy=False,
                                 extra={"sites": sites})

    def check_first_requests(self, d, site2):
        for version in ("12.1", "14.1", "16.1"):
            with self.subTest(version=version):
                req = http_request(
                    "POST", eas_target("Sync"),
                    [("Authorization", basic("alice@contoso.test")),
                     ("MS-ASProtocolVersion", version)], b"abc")
                r, took = Upstream.timed(self, d, req)
                self.assertEqual(r.status, 200, r.status_line)
                self.assertLess(took, 3.0)
                rec = self.one_cas_request(site2, req.mark)
                assert_passthrough(self, r, rec)
                self.assertEqual(rec.path, "/microsoft-server-activesync")
                self.assertEqual(rec.body, b"abc")
        lines = [json.loads(ln) for ln in d.access_log_lines()]
        lines = [ln for ln in lines if ln.get("cmd") == "Sync"]
        self.assertEqual(len(lines), 3)
        for ln in lines:
            self.assertEqual((ln["decision"], ln["reason"], ln["site"]),
                             ("proxy", "fallback", "site2"), ln)

    def test_one_dead_cas(self):
        site2 = self.start_cas()
        d = self.start(1, site2)
        self.check_first_requests(d, site2)

    def test_every_cas_of_three_dead(self):
        site2 = self.start_cas()
        d = self.start(3, site2)
        self.check_first_requests(d, site2)

    def test_fallback_dead_too(self):
        site2 = self.start_cas()
        d = self.start(1, site2)
        site2.refuse()
        r, took = Upstream.timed(self, d, eas_request("FolderSync"))
        self.assert_own_error(r, (503,))
        self.assertRegex(r.header("Retry-After") or "", r"^[0-9]+$")
        self.assertLess(took, 3.0)


class ClientAborts(eftest.EfTestCase):

    def baseline(self, d, cas):
        self.assertEqual(d.roundtrip(eas_request("FolderSync").raw).status,
                         200)
        time.sleep(0.5)
        return d.fd_count()

    def back_to(self, d, base):
        n = eftest.wait_until(lambda: d.fd_count() <= base and d.fd_count(),
                              10, 0.1)
        now = d.fd_count()
        print("\nfds: baseline %d, after the aborts %d" % (base, now))
        self.assertLessEqual(now, base, "file descriptors leaked")
        return n

    def test_abort_mid_upload(self):
        cas = self.start_cas()
        d = self.start_daemon(cas, health=NO_PROBES)
        base = self.baseline(d, cas)
        for i in range(6):
            c = d.connect()
            req = eas_request("SendMail", content_length=10 << 20)
            c.send(req.head)
            c.send(os.urandom(1 << 20))
            # (whether body bytes are streamed before the whole body is in
            # is test_bodies' business; here the head must be up)
            seen = cas.wait_for(lambda rs: [r for r in rs if r.header(
                "X-Test-Mark") == req.mark], 5)
            self.assertTrue(seen, "the upload's head never reached the CAS")
            time.sleep(0.2)
            if i % 2:
                c.abort()
            else:
                c.close()
        self.back_to(d, base)
        recs = [r for r in cas.client_requests() if r.method == "POST"
                and "SendMail" in r.target]
        self.assertEqual(len(recs), 6)
        self.assertFalse(any(r.complete for r in recs),
                         "a cut upload was completed towards the CAS")
        self.assertEqual(d.roundtrip(eas_request("FolderSync").raw).status,
                         200)

    def test_abort_mid_download(self):
        cas = self.start_cas()
        d = self.start_daemon(cas, health=NO_PROBES)
        base = self.baseline(d, cas)
        for i in range(6):
            c = d.connect()
            c.send(eas_request("GetAttachment",
                               AttachmentName="bytes-%d" % (64 << 20)).raw)
            r = c.read_head()
            self.assertEqual(r.status, 200)
            got = 0
            while got < (1 << 20):
                if not c._fill(5):
                    break
                got += len(c.buf)
                del c.buf[:]
            if i % 2:
                c.abort()
            else:
                c.close()
        self.back_to(d, base)
        self.assertEqual(d.roundtrip(eas_request("FolderSync").raw).status,
                         200)

    def test_slow_client_head_cut(self):
        cas = self.start_cas()
        d = self.start_daemon(cas, timeouts={"client_header": 2})
        c = d.connect()
        self.addCleanup(c.close)
        c.send(b"POST /Microsoft-Server-ActiveSync?Cmd=Sync HTTP/1.1\r\n"
               b"Host: eas.contoso.test\r\n")
        t0 = time.monotonic()
        try:
            rest = c.read_until_close(8)
        except (socket.timeout, TimeoutError):
            self.fail("a client stalling inside its head was not cut after "
                      "client_header")
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 1.5)
        if rest:
            self.assertNotIn(b" 500 ", rest.split(b"\r\n")[0])
        self.assertEqual(cas.client_requests(), [])


def _head(lines, body=b""):
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def smuggling_cases():
    """(name, raw bytes, allowed statuses, framing: the connection must close
    after the answer). Each is a valid SendMail apart from its one defect."""
    target = eas_target("SendMail").encode()
    rl = b"POST " + target + b" HTTP/1.1"
    host = b"Host: eas.contoso.test"
    auth = ("Authorization: " + basic("alice@contoso.test")).encode()
    ver = b"MS-ASProtocolVersion: 14.1"
    std = [rl, host, auth, ver]
    cl5 = b"Content-Length: 5"
    te = b"Transfer-Encoding: chunked"
    smuggled = (b"0\r\n\r\nPOST " + target + b" HTTP/1.1\r\n" + host +
                b"\r\n" + auth + b"\r\nContent-Length: 0\r\n\r\n")
    c = []

    def add(name, lines, body=b"hello", statuses=(400,), framing=False):
        c.append((name, _head(lines, body), statuses, framing))

    add("space before colon (CL)", std + [b"Content-Length : 5"],
        framing=True)
    add("space before colon", std + [b"X-Foo : bar", cl5])
    add("tab before colon", std + [b"X-Foo\t: bar", cl5])
    add("obs-fold", std + [b"X-Foo: a", b" folded", cl5])
    add("obs-fold of CL", std + [b"Content-Length:", b" 5"], framing=True)
    add("NUL in value", std + [b"X-Foo: a\x00b", cl5])
    add("CR in value", std + [b"X-Foo: a\rb", cl5])
    add("LF in value", std + [b"X-Foo: a\nb: c", cl5])
    add("CL non-digit", std + [b"Content-Length: 5a"], framing=True)
    add("CL plus sign", std + [b"Content-Length: +5"], framing=True)
    add("CL negative", std + [b"Content-Length: -5"], framing=True)
    add("CL hex", std + [b"Content-Length: 0x5"], framing=True)
    add("CL empty", std + [b"Content-Length: "], framing=True)
    add("two different CLs", std + [cl5, b"Content-Length: 6"],
        body=b"hello!", framing=True)
    add("CL list of different values", std + [b"Content-Length: 5, 6"],
        framing=True)
    add("CL + TE", std + [cl5, te], body=smuggled, framing=True)
    add("TE + CL", std + [te, cl5], body=smuggled, framing=True)
    add("TE gzip, chunked", std + [b"Transfer-Encoding: gzip, chunked"],
        body=b"0\r\n\r\n", statuses=(501,), framing=True)
    add("TE identity", std + [b"Transfer-Encoding: identity", cl5],
        statuses=(400, 501), framing=True)
    add("TE xchunked", std + [b"Transfer-Encoding: xchunked"],
        body=b"0\r\n\r\n", statuses=(501,), framing=True)
    add("TE chunked twice", std + [te, te], body=b"0\r\n\r\n",
        statuses=(400, 501), framing=True)
    add("TE with vertical tab", std + [b"Transfer-Encoding:\x0bchunked"],
        body=b"0\r\n\r\n", statuses=(400, 501), framing=True)
    add("oversized head", std + [b"X-Pad-%02d: %s" % (i, b"a" * 1000)
                                 for i in range(40)] + [cl5],
        statuses=(431,), framing=True)
    add("oversized header line", std + [b"X-Big: " + b"b" * 40000, cl5],
        statuses=(431,), framing=True)
    add("oversized request line",
        [b"POST " + target + b"&Pad=" + b"p" * 16384 + b" HTTP/1.1", host,
         auth, ver, cl5], statuses=(414,), framing=True)
    add("too many headers", std + [b"X-N%03d: 1" % i for i in range(150)]
        + [cl5], statuses=(431,), framing=True)
    c.append(("bare LF line endings",
              b"\n".join(std + [cl5]) + b"\n\nhello", (400,), True))
    c.append(("bare LF after request line",
              rl + b"\n" + b"\r\n".join([host, auth, ver, cl5]) +
              b"\r\n\r\nhello", (400,), True))
    add("header without colon", std + [b"X-Foo bar", cl5])
    add("missing Host in HTTP/1.1", [rl, auth, ver, cl5])
    add("two Host headers", std + [b"Host: evil.contoso.test", cl5])
    add("HTTP/3.0", [b"POST " + target + b" HTTP/3.0", host, auth, ver, cl5],
        statuses=(505,), framing=True)
    add("double space in request line",
        [b"POST  " + target + b" HTTP/1.1", host, auth, ver, cl5],
        framing=True)
    return c


BODY_CASES = [
    ("bad chunk size", b"zz\r\nhello\r\n0\r\n\r\n"),
    ("chunk size overflow", b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("chunk without CRLF", b"5\r\nhelloXX0\r\n\r\n"),
    ("chunk size with bare LF", b"5\nhello\r\n0\r\n\r\n"),
]


class Smuggling(eftest.EfTestCase):

    def control(self, d, cas):
        """The undamaged request goes through, so a rejection below is due
        to its defect alone."""
        req = http_request("POST", eas_target("SendMail"),
                           [("Authorization", basic("alice@contoso.test")),
                            ("MS-ASProtocolVersion", "14.1")], b"hello")
        r = d.roundtrip(req.raw)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(cas.find(req.mark)), 1)

    def test_head_level_rejections(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        self.control(d, cas)
        before = len(cas.client_requests())
        for name, raw, statuses, framing in smuggling_cases():
            with self.subTest(case=name):
                c = d.connect()
                try:
                    c.send(raw)
                    r = c.read_response(timeout=10)
                    self.assert_own_error(r, statuses)
                    conn = (r.header("Connection") or "").lower()
                    if framing or "close" in conn:
                        self.assertTrue(c.closed_by_peer(3),
                                        "the connection stayed open after "
                                        "%r (Connection: %s)" % (
                                            r.status_line,
                                            r.header("Connection")))
                finally:
                    c.close()
                time.sleep(0.1)
                self.assertEqual(cas.client_requests()[before:], [],
                                 "%s reached the CAS" % name)
        self.assertTrue(d.proc.poll() is None)
        self.control(d, cas)

    def test_bad_chunked_bodies(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        self.control(d, cas)
        for name, body in BODY_CASES:
            with self.subTest(case=name):
                req = http_request(
                    "POST", eas_target("SendMail"),
                    [("Authorization", basic("alice@contoso.test")),
                     ("MS-ASProtocolVersion", "14.1"),
                     ("Transfer-Encoding", "chunked")])
                c = d.connect()
                try:
                    c.send(req.raw + body)
                    r = c.read_response(timeout=10)
                    self.assert_own_error(r, range(400, 500))
                    self.assertTrue(c.closed_by_peer(3),
                                    "after %r (Connection: %s) the connection"
                                    " stayed open: a bad chunked body must "
                                    "end it" % (r.status_line,
                                                r.header("Connection")))
                finally:
                    c.close()
                time.sleep(0.2)
                # easfront may have streamed the head up before it saw the
                # bad chunk, but the CAS must never get a complete request
                for rec in cas.find(req.mark):
                    self.assertFalse(rec.complete,
                                     "a bad chunked body reached the CAS "
                                     "as a complete request")
                    self.assertIsNone(rec.response_head)
        self.control(d, cas)


if __name__ == "__main__":
    unittest.main()
