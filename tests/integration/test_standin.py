"""The stand-in CAS itself, driven directly (no easfront): it must behave like
Exchange (shared/EAS.md) and record faithfully, or every other test lies."""

import base64
import hashlib
import http.client
import os
import socket
import time
import unittest

import eftest
import standin_cas as sc
from eftest import (RawConn, autodiscover_request, basic, eas_request,
                    http_request, options_request)


def plain_conn(cas, timeout=10):
    return RawConn(socket.create_connection(("127.0.0.1", cas.port),
                                            timeout=timeout))


class StandinTestCase(eftest.EfTestCase):
    def conn(self, cas, timeout=10):
        c = plain_conn(cas, timeout)
        self.addCleanup(c.close)
        return c

    def rt(self, cas, req, method=None):
        c = self.conn(cas)
        try:
            c.send(req.raw)
            return c.read_response(method=method)
        finally:
            c.close()


class Wbxml(unittest.TestCase):
    def test_ping_request_bytes(self):
        # SWITCH_PAGE 13, Ping with content, HeartbeatInterval "60", END END
        self.assertEqual(sc.ping_request(60),
                         b"\x03\x01\x6a\x00\x00\x0d\x45\x48\x0360\x00\x01\x01")

    def test_round_trip(self):
        for data in (sc.ping_response(1), sc.FOLDERSYNC_BODY, sc.SYNC_BODY):
            tree = sc.wbxml_decode(data)
            self.assertEqual(sc.wbxml_encode(tree), data)
        self.assertEqual(sc.wbxml_find_text(sc.wbxml_decode(
            sc.ping_request(480)), sc.PAGE_PING, sc.PING_HEARTBEAT), "480")
        self.assertEqual(sc.wbxml_find_text(sc.wbxml_decode(
            sc.ping_response(1)), sc.PAGE_PING, sc.PING_STATUS), "1")

    def test_truncated_rejected(self):
        with self.assertRaises(sc.WbxmlError):
            sc.wbxml_decode(sc.ping_request(60)[:-2])

    def test_pattern(self):
        data = b"".join(sc.pattern_chunks(200000))
        self.assertEqual(len(data), 200000)
        self.assertNotEqual(data[:65536], data[65536:131072])
        self.assertEqual(sc.pattern_sha256(200000),
                         hashlib.sha256(data).hexdigest())


class Exchange(StandinTestCase):
    def test_options(self):
        cas = self.start_cas()
        r = self.rt(cas, options_request())
        self.assertEqual(r.status_line, "HTTP/1.1 200 OK")
        self.assertEqual(r.header("MS-ASProtocolVersions"),
                         "2.5,12.0,12.1,14.0,14.1,16.0,16.1")
        cmds = r.header("MS-ASProtocolCommands").split(",")
        for c in ("Sync", "FolderSync", "Ping", "ItemOperations", "Provision",
                  "GetHierarchy", "ValidateCert", "Find"):
            self.assertIn(c, cmds)
        self.assertEqual(r.header("Allow"), "OPTIONS,POST")
        self.assertEqual(r.header("Public"), "OPTIONS,POST")
        self.assertEqual(r.header("MS-Server-ActiveSync"), "15.1")
        self.assertEqual(r.header("Cache-Control"), "private")
        self.assertEqual(r.header("Content-Length"), "0")
        self.assertEqual(len(r.headers_named("Set-Cookie")), 2)

    def test_401_without_authorization(self):
        cas = self.start_cas()
        for req in (eas_request("FolderSync", auth=False),
                    options_request(auth=False),
                    autodiscover_request("alice@contoso.test", auth=False)):
            r = self.rt(cas, req)
            self.assertEqual(r.status_line, "HTTP/1.1 401 Unauthorized")
            self.assertEqual(r.header("WWW-Authenticate"),
                             'Basic realm="cas1.site1.test"')
            self.assertIn(b"401 - Unauthorized", r.body)
            self.assertEqual(int(r.header("Content-Length")), len(r.body))

    def test_user_behaviours(self):
        cas = self.start_cas()
        r = self.rt(cas, eas_request("Sync", user="throttled@contoso.test"))
        self.assertEqual(r.status_line, "HTTP/1.1 503 Service Unavailable")
        self.assertEqual(r.header("X-MS-ASThrottle"), "CommandFrequency")
        self.assertEqual(r.header("Retry-After"), "30")
        r = self.rt(cas, eas_request("FolderSync",
                                     user="expiring@contoso.test"))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-MS-Credentials-Expire"), "3")
        self.assertEqual(r.header("X-MS-Credential-Service-Url"),
                         sc.CREDENTIAL_URL)
        r = self.rt(cas, eas_request("Sync", user="provision@contoso.test"))
        self.assertEqual(r.status_line,
                         "HTTP/1.1 449 Retry after sending a PROVISION "
                         "command")

    def test_autodiscover(self):
        cas = self.start_cas()
        r = self.rt(cas, autodiscover_request("blocked@contoso.test"))
        self.assertEqual(r.status, 456)
        r = self.rt(cas, autodiscover_request(
            "expired@contoso.test", path="/Autodiscover/Autodiscover.xml"))
        self.assertEqual(r.status, 457)
        self.assertEqual(r.header("X-MS-Credential-Service-Url"),
                         sc.CREDENTIAL_URL)
        r = self.rt(cas, autodiscover_request(
            "bob@contoso.test", path="/AutoDiscover/AutoDiscover.xml"))
        self.assertEqual(r.status, 200)
        self.assertIn(b"<EMailAddress>bob@contoso.test</EMailAddress>", r.body)
        self.assertIn(b"<Type>MobileSync</Type>", r.body)

    def test_healthcheck_and_404_and_501(self):
        cas = self.start_cas()
        r = self.rt(cas, http_request(
            "GET", "/Microsoft-Server-ActiveSync/healthcheck.htm"))
        self.assertEqual(r.body, b"200 OK<br/>cas1.site1.test")
        r = self.rt(cas, http_request("GET", "/owa/"))
        self.assertEqual(r.status, 404)
        r = self.rt(cas, http_request("GET", "/Microsoft-Server-ActiveSync",
                                      [("Authorization", basic("a@b.c"))]))
        self.assertEqual(r.status, 501)

    def test_wbxml_commands(self):
        cas = self.start_cas()
        for cmd, body in (("FolderSync", sc.FOLDERSYNC_BODY),
                          ("Sync", sc.SYNC_BODY)):
            r = self.rt(cas, eas_request(cmd, body=b"\x03\x01\x6a\x00"))
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Content-Type"), sc.WBXML_CT)
            self.assertEqual(r.body, body)

    def test_ping_is_held_for_heartbeat(self):
        cas = self.start_cas()
        t0 = time.monotonic()
        r = self.rt(cas, eas_request("Ping", body=sc.ping_request(2)))
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 1.9)
        self.assertLess(took, 5)
        self.assertEqual(r.body, sc.ping_response(1))

    def test_item_operations_chunked(self):
        cas = self.start_cas()
        req = eas_request("ItemOperations", body=b"\x03\x01\x6a\x00")
        r = self.rt(cas, req)
        self.assertTrue(r.chunked)
        rec = cas.find(req.mark)[0]
        self.assertEqual(r.body, rec.response_body)
        self.assertEqual(r.wire_body, rec.response_wire)
        self.assertGreaterEqual(rec.response_wire.count(b"\r\n"), 10)
        self.assertTrue(rec.response_wire.endswith(b"\r\n0\r\n\r\n"))
        # an HTTP/1.0 request gets the same body close-delimited
        req = eas_request("ItemOperations", body=b"x", version="HTTP/1.0")
        r = self.rt(cas, req)
        self.assertFalse(r.chunked)
        self.assertIsNone(r.header("Content-Length"))
        self.assertEqual(r.body, cas.find(req.mark)[0].response_body)

    def test_get_attachment_streams_pattern(self):
        cas = self.start_cas()
        n = 3 * 65536 + 17
        r = self.rt(cas, eas_request("GetAttachment",
                                     AttachmentName="bytes-%d" % n))
        self.assertEqual(int(r.header("Content-Length")), n)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(),
                         sc.pattern_sha256(n))

    def test_send_mail_hashes_content_length_and_chunked(self):
        cas = self.start_cas()
        body = bytes(range(256)) * 1000
        r = self.rt(cas, eas_request("SendMail", body=body))
        self.assertEqual(r.header("X-Test-Body-Length"), str(len(body)))
        self.assertEqual(r.header("X-Test-Body-Sha256"),
                         hashlib.sha256(body).hexdigest())
        req = eas_request("SendMail",
                          extra=[("Transfer-Encoding", "chunked")])
        chunked = b"10\r\n" + body[:16] + b"\r\n3;ext=1\r\nabc\r\n0\r\n\r\n"
        c = self.conn(cas)
        c.send(req.raw + chunked)
        r = c.read_response()
        self.assertEqual(r.header("X-Test-Body-Sha256"),
                         hashlib.sha256(body[:16] + b"abc").hexdigest())
        rec = cas.find(req.mark)[0]
        self.assertTrue(rec.chunked)
        self.assertTrue(rec.complete)
        self.assertEqual(rec.body, body[:16] + b"abc")

    def test_expect_100_continue(self):
        cas = self.start_cas()
        body = b"m" * 5000
        req = eas_request("SendMail", body=body,
                          extra=[("Expect", "100-continue")])
        c = self.conn(cas)
        c.send(req.head)
        interim = c.read_head(timeout=3)
        self.assertEqual(interim.status_line, "HTTP/1.1 100 Continue")
        c.send(req.body)
        r = c.read_response()
        self.assertEqual(r.header("X-Test-Body-Sha256"),
                         hashlib.sha256(body).hexdigest())

    def test_keep_alive_and_recording(self):
        cas = self.start_cas()
        c = self.conn(cas)
        reqs = [eas_request("FolderSync", body=b"abc"), options_request(),
                eas_request("Sync", body=b"")]
        for req in reqs:
            c.send(req.raw)
            self.assertIn(c.read_response().status, (200,))
        c.close()
        self.assertEqual(cas.accepted, 1)
        recs = [cas.find(r.mark)[0] for r in reqs]
        self.assertEqual({r.conn_id for r in recs}, {recs[0].conn_id})
        self.assertEqual(recs[0].raw_head, reqs[0].head)
        self.assertEqual(recs[0].body_len, 3)
        self.assertEqual(recs[0].method, "POST")
        self.assertEqual([n for n, _ in recs[0].headers][:3],
                         ["Host", "Authorization", "MS-ASProtocolVersion"])
        # pipelined: all three answered in order on one connection
        c = self.conn(cas)
        c.send(b"".join(r.raw for r in reqs))
        got = [c.read_response() for _ in reqs]
        self.assertEqual([g.header("Content-Type") for g in got],
                         [sc.WBXML_CT, None, sc.WBXML_CT])
        c.close()

    def test_http10_closes(self):
        cas = self.start_cas()
        c = self.conn(cas)
        c.send(eas_request("FolderSync", version="HTTP/1.0").raw)
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertTrue(c.closed_by_peer(3))

    def test_base64_query(self):
        cas = self.start_cas()
        # 14.1, GetAttachment (4), en-us, device "d1", no policy key, "SP",
        # AttachmentName tag 0 "bytes-10"
        raw = bytes([141, 4, 0x09, 0x04, 2]) + b"d1" + b"\x00\x02SP" + \
            b"\x00\x08bytes-10"
        import base64
        target = "/Microsoft-Server-ActiveSync?" + base64.b64encode(
            raw).decode()
        r = self.rt(cas, eas_request(None, target=target))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"".join(sc.pattern_chunks(10)))

    def test_http_client(self):
        cas = self.start_cas()
        c = http.client.HTTPConnection("127.0.0.1", cas.port, timeout=10)
        c.request("POST", eas_request("ItemOperations").raw.split(b" ")[1]
                  .decode(), body=b"x",
                  headers={"Authorization": basic("alice@contoso.test")})
        r = c.getresponse()
        body = r.read()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
        self.assertIn(b"chunk three", body)
        c.request("OPTIONS", "/Microsoft-Server-ActiveSync",
                  headers={"Authorization": basic("alice@contoso.test")})
        r = c.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        c.close()
        self.assertEqual(cas.accepted, 1)

    def test_tls(self):
        cas = self.start_cas(tls=True)
        self.assertTrue(cas.url.startswith("https://127.0.0.1:"))
        ctx = eftest.client_context()
        conn = eftest.SNIHTTPSConnection(cas.port, sni="cas1.site1.test",
                                         context=ctx)
        conn.request("OPTIONS", "/Microsoft-Server-ActiveSync",
                     headers={"Authorization": basic("alice@contoso.test")})
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 200)
        conn.close()
        # verified by IP address too, the way easfront reaches it
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", cas.port)),
                            server_hostname="127.0.0.1")
        s.close()


class Passwords(StandinTestCase):
    """`passwords`: wrong Basic passwords get Exchange's 401, every Basic
    attempt is counted (passwords never recorded)."""

    def basic_req(self, user, password, kind="eas"):
        auth = ("Authorization", basic(user, password))
        if kind == "autodiscover":
            req = autodiscover_request(user, auth=False)
            head, body = req.raw.split(b"\r\n\r\n", 1)
            return http_request("POST", "/autodiscover/autodiscover.xml",
                                [auth, ("Content-Type", "text/xml")], body,
                                host="autodiscover.contoso.test")
        return eas_request("FolderSync", user=user, auth=False,
                           extra=[auth])

    def test_any_password_without_table(self):
        cas = self.start_cas()
        self.assertIsNone(cas.passwords)
        for pw in ("one", "two"):
            r = self.rt(cas, self.basic_req("alice@contoso.test", pw))
            self.assertEqual(r.status, 200)
        r = self.rt(cas, eas_request("FolderSync", auth=False, extra=[
            ("Authorization", "Bearer ")]))
        self.assertEqual(r.status, 200, "Bearer refused without passwords")
        self.assertEqual(cas.attempts("alice@contoso.test"), 2)
        self.assertEqual(cas.attempts("alice", ok=True), 2)
        self.assertEqual(cas.attempts("alice", password="two"), 1)
        self.assertEqual(len(cas.auth_attempts), 2, "Bearer counted")

    def test_right_wrong_and_unknown(self):
        cas = self.start_cas(passwords={"alice": "right-1",
                                        "Bob@Contoso.test": "right-2"})
        cases = [("alice@contoso.test", "right-1", "eas", 200),
                 ("CONTOSO\\alice", "right-1", "eas", 200),
                 ("alice@contoso.test", "wrong", "eas", 401),
                 ("alice@contoso.test", "right-1", "autodiscover", 200),
                 ("alice@contoso.test", "Right-1", "autodiscover", 401),
                 ("bob@contoso.test", "right-2", "eas", 200),
                 ("bob@fabrikam.test", "right-2", "eas", 401),
                 ("bob@contoso.test", "right-1", "eas", 401),
                 ("carol@contoso.test", "anything", "eas", 401),
                 ("carol@contoso.test", "anything", "autodiscover", 401)]
        for user, pw, kind, status in cases:
            with self.subTest(user=user, kind=kind, status=status):
                req = self.basic_req(user, pw, kind)
                r = self.rt(cas, req)
                self.assertEqual(r.status, status, r.status_line)
                self.assertEqual(cas.find(req.mark)[0].auth_ok,
                                 status == 200)
                if status == 401:
                    self.assertEqual(r.status_line,
                                     "HTTP/1.1 401 Unauthorized")
                    self.assertEqual(r.headers_named("WWW-Authenticate"),
                                     ['Basic realm="cas1.site1.test"'])
                    self.assertIn(b"401 - Unauthorized", r.body)
                    self.assertEqual(r.header("Server"), "Microsoft-IIS/10.0")
        self.assertEqual(cas.attempts(), len(cases))
        self.assertEqual(cas.attempts("alice"), 5)
        self.assertEqual(cas.attempts("alice@contoso.test"), 4)
        self.assertEqual(cas.attempts("alice", ok=True), 3)
        self.assertEqual(cas.attempts("alice", ok=False), 2)
        self.assertEqual(cas.attempts("alice", password="wrong"), 1)
        self.assertEqual(cas.attempts("bob", ok=False), 2)
        self.assertEqual(cas.attempts("carol", ok=False), 2)
        self.assertEqual(cas.attempts(ok=True), 4)
        # no password in the records
        text = repr(cas.auth_attempts) + repr([vars(a) for a in
                                               cas.auth_attempts])
        for pw in ("right-1", "right-2", "wrong", "anything"):
            self.assertNotIn(pw, text)

    def test_password_checked_before_user_behaviours(self):
        cas = self.start_cas(passwords={"throttled": "t", "blocked": "b"})
        r = self.rt(cas, self.basic_req("throttled@contoso.test", "x"))
        self.assertEqual(r.status, 401)
        r = self.rt(cas, self.basic_req("throttled@contoso.test", "t"))
        self.assertEqual(r.status, 503)
        r = self.rt(cas, self.basic_req("blocked@contoso.test", "x",
                                        "autodiscover"))
        self.assertEqual(r.status, 401)
        r = self.rt(cas, self.basic_req("blocked@contoso.test", "b",
                                        "autodiscover"))
        self.assertEqual(r.status, 456)

    def test_other_credentials_refused(self):
        cas = self.start_cas(passwords={"alice": "pw"})
        for auth in ("Bearer", "Bearer eyJ0eXAiOiJKV1QifQ.e30.c2ln",
                     "NTLM TlRMTVNTUAABAAAAB4IIAAAAAAAAAAAAAAAAAAAAAAA=",
                     "Digest username=\"alice\""):
            with self.subTest(auth=auth):
                r = self.rt(cas, eas_request("Sync", auth=False, extra=[
                    ("Authorization", auth)]))
                self.assertEqual(r.status, 401)
                want = ['Basic realm="cas1.site1.test"']
                if auth.startswith("Bearer"):
                    want.insert(0, sc.BEARER_CHALLENGE)
                self.assertEqual(r.headers_named("WWW-Authenticate"), want)
        self.assertEqual(cas.auth_attempts, [], "non-Basic attempts counted")

    def test_exchange2010_challenges(self):
        cas = self.start_cas(passwords={"alice": "pw"},
                             flavour="exchange2010")
        r = self.rt(cas, self.basic_req("alice@contoso.test", "bad"))
        self.assertEqual(r.status, 401)
        self.assertEqual(r.headers_named("WWW-Authenticate"),
                         ["Negotiate", "NTLM",
                          'Basic realm="cas1.site1.test"'])
        r = self.rt(cas, self.basic_req("alice@contoso.test", "pw"))
        self.assertEqual(r.status, 200)

    def test_ntlm_handshake_unaffected(self):
        import test_routing as tr
        cas = self.start_cas(passwords={"alice": "pw"}, ntlm=True)
        c = self.conn(cas)
        c.send(options_request(auth=False).raw.replace(
            b"User-Agent", b"Authorization: NTLM " + base64.b64encode(
                tr.ntlm_negotiate()) + b"\r\nUser-Agent", 1))
        r = c.read_response()
        self.assertEqual(r.status, 401)
        chal = tr.ntlm_challenge_of(r)
        c.send(options_request(auth=False).raw.replace(
            b"User-Agent", b"Authorization: NTLM " + base64.b64encode(
                tr.ntlm_authenticate("CONTOSO", "alice", chal)) +
            b"\r\nUser-Agent", 1))
        self.assertEqual(c.read_response().status, 200)
        c.send(eas_request("Sync", auth=False).raw)
        self.assertEqual(c.read_response().status, 200)
        self.assertEqual(cas.auth_attempts, [])


class FailureModes(StandinTestCase):
    def test_hang(self):
        cas = self.start_cas(mode="hang")
        c = self.conn(cas, timeout=1)
        c.send(eas_request("FolderSync").raw)
        with self.assertRaises((socket.timeout, TimeoutError)):
            c.read_head(timeout=1.5)
        c.close()
        # health probes are spared
        r = self.rt(cas, http_request(
            "GET", "/Microsoft-Server-ActiveSync/healthcheck.htm", mark=False))
        self.assertEqual(r.status, 200)

    def test_garbage(self):
        cas = self.start_cas(mode="garbage")
        c = self.conn(cas)
        c.send(eas_request("FolderSync").raw)
        data = c.read_until_close(3)
        self.assertTrue(data)
        self.assertFalse(data.startswith(b"HTTP/"))

    def test_close(self):
        cas = self.start_cas(mode="close")
        c = self.conn(cas)
        c.send(eas_request("FolderSync").raw)
        self.assertEqual(c.read_until_close(3), b"")
        self.assertEqual(len(cas.client_requests()), 1)

    def test_slow_headers(self):
        cas = self.start_cas(mode="slow_headers", slow_delay=0.05)
        c = self.conn(cas)
        t0 = time.monotonic()
        c.send(eas_request("FolderSync").raw)
        r = c.read_response()
        self.assertGreater(time.monotonic() - t0, 0.5)
        self.assertEqual(r.body, sc.FOLDERSYNC_BODY)

    def test_refuse(self):
        cas = self.start_cas()
        cas.refuse()
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", cas.port), timeout=2)

    def test_mode_switch_at_run_time(self):
        cas = self.start_cas()
        c = self.conn(cas)
        c.send(eas_request("FolderSync").raw)
        self.assertEqual(c.read_response().status, 200)
        cas.mode = "close"
        c.send(eas_request("FolderSync").raw)
        self.assertEqual(c.read_until_close(3), b"")

    def test_read_pause_and_partial_body_recorded(self):
        cas = self.start_cas(read_pause=1.0)
        body = b"z" * (3 << 20)
        c = self.conn(cas)
        t0 = time.monotonic()
        req = eas_request("SendMail", body=body)
        c.send(req.raw)
        r = c.read_response()
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        self.assertEqual(r.header("X-Test-Body-Length"), str(len(body)))
        # a body cut short is recorded as incomplete
        req = eas_request("SendMail", content_length=100)
        c = self.conn(cas)
        c.send(req.raw + b"x" * 10)
        c.close()
        rec = cas.wait_for(lambda rs: [x for x in rs if x.header(
            "X-Test-Mark") == req.mark and x.body_error])
        self.assertTrue(rec)
        self.assertFalse(rec[0].complete)
        self.assertEqual(rec[0].body_len, 10)


class Harness(eftest.EfTestCase):
    """The Daemon class's end-of-test checks fail when they should (run
    against fake_easfront.py, not the real daemon)."""

    FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "fake_easfront.py")

    def fake(self, mode, **kw):
        old = os.environ.get("EASFRONT_BIN")
        os.environ["EASFRONT_BIN"] = self.FAKE
        os.environ["FAKE_EASFRONT_MODE"] = mode
        try:
            d = eftest.Daemon(self, ["http://127.0.0.1:1"], **kw)
            d.start(wait_healthy=True)
        finally:
            if old is None:
                del os.environ["EASFRONT_BIN"]
            else:
                os.environ["EASFRONT_BIN"] = old
        return d

    def test_clean_run_passes(self):
        d = self.fake("ok")
        with open(d.pid_path) as f:
            self.assertEqual(int(f.read()), d.pid)
        self.assertGreater(d.rss_kib(), 0)
        self.assertGreaterEqual(d.hwm_kib(), d.rss_kib())
        self.assertGreater(d.fd_count(), 2)
        d._cleanup()

    def test_sanitizer_report_fails(self):
        d = self.fake("asan")
        with self.assertRaisesRegex(AssertionError, "sanitizer report"):
            d._cleanup()

    def test_fatal_line_fails(self):
        d = self.fake("fatal")
        with self.assertRaisesRegex(AssertionError, "fatal line"):
            d._cleanup()

    def test_unclean_exit_fails(self):
        d = self.fake("rc3")
        with self.assertRaisesRegex(AssertionError, "exited 3 after SIGTERM"):
            d._cleanup()

    def test_ignored_sigterm_fails(self):
        d = self.fake("ignore_term", timeouts={"drain": -8})
        t0 = time.monotonic()
        with self.assertRaisesRegex(AssertionError, "did not exit within"):
            d._cleanup()
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIsNotNone(d.proc.poll())

    def test_daemon_dying_fails(self):
        d = self.fake("exit_early")
        time.sleep(1.5)
        with self.assertRaisesRegex(AssertionError, "exited on its own"):
            d._cleanup()

    def test_missing_binary_fails_clearly(self):
        old = os.environ.pop("EASFRONT_BIN", None)
        try:
            with self.assertRaisesRegex(AssertionError,
                                        "EASFRONT_BIN is not set"):
                eftest.easfront_bin()
            os.environ["EASFRONT_BIN"] = "/nonexistent/easfront"
            with self.assertRaisesRegex(AssertionError, "not an executable"):
                eftest.easfront_bin()
        finally:
            if old is None:
                os.environ.pop("EASFRONT_BIN", None)
            else:
                os.environ["EASFRONT_BIN"] = old


if __name__ == "__main__":
    unittest.main()
