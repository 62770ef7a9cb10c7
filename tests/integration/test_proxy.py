"""Proxying: byte-exact pass-through of what Exchange answers, request header
hygiene, connection handling, served paths and real clients."""

import hashlib
import json
import os
import subprocess
import tempfile
import time
import unittest

import eftest
import standin_cas as sc
from eftest import (INTERNAL_HEADERS, PASSWORD, SNI, assert_passthrough,
                    autodiscover_request, basic, eas_request, http_request,
                    options_request)


class PassThrough(eftest.EfTestCase):
    """What the client gets equals what the CAS sent, minus hop-by-hop."""

    def check(self, req, method=None, expect_status=None):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        resp = d.roundtrip(req.raw, method=method)
        rec = self.one_cas_request(cas, req.mark)
        assert_passthrough(self, resp, rec)
        if expect_status is not None:
            self.assertEqual(resp.status_line, expect_status)
        return resp, rec

    def test_options(self):
        resp, _ = self.check(options_request(),
                             expect_status="HTTP/1.1 200 OK")
        self.assertEqual(resp.header("MS-ASProtocolVersions"), sc.EAS_VERSIONS)
        self.assertEqual(resp.header("MS-ASProtocolCommands"), sc.EAS_COMMANDS)

    def test_401_www_authenticate(self):
        resp, _ = self.check(eas_request("FolderSync", auth=False),
                             expect_status="HTTP/1.1 401 Unauthorized")
        self.assertEqual(resp.header("WWW-Authenticate"),
                         'Basic realm="cas1.site1.test"')

    def test_503_throttle(self):
        resp, _ = self.check(
            eas_request("Sync", user="throttled@contoso.test"),
            expect_status="HTTP/1.1 503 Service Unavailable")
        self.assertEqual(resp.header("X-MS-ASThrottle"), "CommandFrequency")
        self.assertEqual(resp.header("Retry-After"), "30")

    def test_200_credentials_expire(self):
        resp, _ = self.check(eas_request("FolderSync",
                                         user="expiring@contoso.test"),
                             expect_status="HTTP/1.1 200 OK")
        self.assertEqual(resp.header("X-MS-Credentials-Expire"), "3")
        self.assertEqual(resp.header("X-MS-Credential-Service-Url"),
                         sc.CREDENTIAL_URL)
        self.assertEqual(resp.body, sc.FOLDERSYNC_BODY)

    def test_449_reason_phrase(self):
        self.check(eas_request("Sync", user="provision@contoso.test"),
                   expect_status="HTTP/1.1 449 Retry after sending a "
                                 "PROVISION command")

    def test_chunked_response_stays_chunked(self):
        resp, rec = self.check(eas_request("ItemOperations",
                                           body=b"\x03\x01\x6a\x00"))
        self.assertTrue(resp.chunked, "an HTTP/1.1 client must get the "
                        "chunked response chunked")
        self.assertEqual(resp.header("Transfer-Encoding"), "chunked")
        self.assertIsNone(resp.header("Content-Length"))
        self.assertEqual(len(resp.body), len(rec.response_body))

    def test_autodiscover_456(self):
        self.check(autodiscover_request("blocked@contoso.test"),
                   expect_status="HTTP/1.1 456 Account Blocked")

    def test_autodiscover_457(self):
        resp, _ = self.check(autodiscover_request("expired@contoso.test"),
                             expect_status="HTTP/1.1 457 Password Expired")
        self.assertEqual(resp.header("X-MS-Credential-Service-Url"),
                         sc.CREDENTIAL_URL)

    def test_autodiscover_200(self):
        resp, _ = self.check(autodiscover_request("bob@contoso.test"),
                             expect_status="HTTP/1.1 200 OK")
        self.assertIn(b"<EMailAddress>bob@contoso.test</EMailAddress>",
                      resp.body)

    def test_response_hop_by_hop_removed(self):
        cas = self.start_cas(hop_headers=True)
        d = self.start_daemon(cas)
        c = d.connect()
        self.addCleanup(c.close)
        for _ in range(2):          # and the connection stays usable
            req = eas_request("FolderSync")
            c.send(req.raw)
            resp = c.read_response()
            rec = self.one_cas_request(cas, req.mark)
            self.assertIn(b"X-Hop-Test", rec.response_head)
            assert_passthrough(self, resp, rec)
            for name in ("X-Hop-Test", "Keep-Alive", "Upgrade"):
                self.assertIsNone(resp.header(name),
                                  "%s reached the client" % name)
            for v in resp.headers_named("Connection"):
                self.assertNotIn("x-hop-test", v.lower())


class RequestHeaders(eftest.EfTestCase):
    """What the CAS sees of a client's request."""

    def test_forwarded_added_internal_stripped(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        body = b"\x03\x01\x6a\x00\x00\x07\x56\x52\x030\x00\x01\x01"
        extra = [("X-Forwarded-For", "6.6.6.6"),
                 ("X-Forwarded-Proto", "http"),
                 ("X-CommonAccessToken", "VgEAVAdXaW5kb3dzQwBBCEtlcmJlcm9z"),
                 ("x-isfromcafe", "1"),
                 ("X-SourceCafeServer", "evil.contoso.test"),
                 ("msExchProxyUri", "https://evil.contoso.test/ews"),
                 ("X-MSExchangeActivityCtx", "V=1.0.0.0;Id=evil"),
                 ("X-Custom-Keep", "kept  as  sent"),
                 ("X-forwarded-for", "7.7.7.7")]
        req = eas_request("FolderSync", body=body, extra=extra)
        resp = d.roundtrip(req.raw)
        self.assertEqual(resp.status, 200)
        rec = self.one_cas_request(cas, req.mark)
        self.assertEqual(rec.headers_named("X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(rec.headers_named("X-Forwarded-Proto"), ["https"])
        for name in INTERNAL_HEADERS:
            self.assertEqual(rec.headers_named(name), [],
                             "%s reached the CAS" % name)
        # the request line is unchanged
        self.assertEqual(rec.raw_head.split(b"\r\n", 1)[0],
                         req.request_line)
        # every other header arrives byte for byte, in the client's order
        dropped = {n.lower() for n in INTERNAL_HEADERS} | {
            "x-forwarded-for", "x-forwarded-proto"}
        sent = [ln for ln in eftest.split_head(req.head)[1]
                if ln.partition(b":")[0].decode().lower() not in dropped]
        got = [ln for ln in eftest.split_head(rec.raw_head)[1]
               if ln.partition(b":")[0].decode().lower() not in dropped]
        self.assertEqual(got, sent)
        self.assertEqual(rec.body_sha256, hashlib.sha256(body).hexdigest())
        self.assertTrue(rec.complete)

    def test_request_hop_by_hop_removed(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        extra = [("Connection", "keep-alive, X-Client-Hop"),
                 ("Keep-Alive", "300"), ("X-Client-Hop", "secret"),
                 ("Proxy-Connection", "keep-alive"), ("TE", "trailers"),
                 ("Proxy-Authorization", "Basic cHJveHk6cHJveHk="),
                 ("X-End-To-End", "yes")]
        req = eas_request("FolderSync", body=b"x", extra=extra)
        resp = d.roundtrip(req.raw)
        self.assertEqual(resp.status, 200)
        rec = self.one_cas_request(cas, req.mark)
        for name in ("X-Client-Hop", "Keep-Alive", "Proxy-Connection", "TE",
                     "Proxy-Authorization"):
            self.assertEqual(rec.headers_named(name), [],
                             "%s reached the CAS" % name)
        for v in rec.headers_named("Connection"):
            self.assertNotIn("x-client-hop", v.lower())
        self.assertEqual(rec.headers_named("X-End-To-End"), ["yes"])
        self.assertEqual(rec.headers_named("Authorization"),
                         [basic("alice@contoso.test")])


class Connections(eftest.EfTestCase):

    def test_keepalive_reuse_across_client_connections(self):
        workers = 2
        cas = self.start_cas()
        d = self.start_daemon(cas, workers=workers)
        marks = []
        for i in range(20):
            req = eas_request("FolderSync", body=b"%d" % i)
            resp = d.roundtrip(req.raw)
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.body, sc.FOLDERSYNC_BODY)
            marks.append(req.mark)
        conns = {self.one_cas_request(cas, m).conn_id for m in marks}
        print("\n20 client connections used %d upstream connection(s); "
              "the CAS accepted %d in all" % (len(conns), cas.accepted))
        self.assertGreaterEqual(len(conns), 1)
        self.assertLessEqual(len(conns), workers,
                             "upstream connections are not reused")

    def test_many_requests_on_one_client_connection(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        c = d.connect()
        self.addCleanup(c.close)
        for i in range(10):
            body = os.urandom(100 + i)
            c.send(eas_request("SendMail", body=body).raw)
            r = c.read_response()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-Test-Body-Sha256"),
                             hashlib.sha256(body).hexdigest())

    def test_pipelining_in_order(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        a, b = os.urandom(3000), os.urandom(70000)
        reqs = [eas_request("SendMail", body=a),
                options_request(),
                http_request("GET",
                             "/Microsoft-Server-ActiveSync/healthcheck.htm"),
                eas_request("SendMail", body=b),
                eas_request("ItemOperations", body=b"io"),
                eas_request("FolderSync", body=b"fs")]
        c = d.connect()
        self.addCleanup(c.close)
        c.send(b"".join(r.raw for r in reqs))
        got = []
        for i, _ in enumerate(reqs):
            try:
                got.append(c.read_response(timeout=10))
            except (OSError, ValueError) as e:
                self.fail("pipelined response %d of %d never came (%r); got "
                          "%s; the CAS saw %s" % (
                              i + 1, len(reqs), e,
                              [g.status_line for g in got],
                              [(r.target[:40], r.body_len, r.complete)
                               for r in cas.client_requests()]))
        self.assertEqual([g.status for g in got], [200] * 6)
        self.assertEqual(got[0].header("X-Test-Body-Sha256"),
                         hashlib.sha256(a).hexdigest())
        self.assertEqual(got[1].header("MS-ASProtocolVersions"),
                         sc.EAS_VERSIONS)
        self.assertTrue(got[2].body.startswith(b"200 OK<br/>"))
        self.assertEqual(got[3].header("X-Test-Body-Sha256"),
                         hashlib.sha256(b).hexdigest())
        self.assertTrue(got[4].chunked)
        self.assertEqual(got[5].body, sc.FOLDERSYNC_BODY)
        for i in (0, 1, 3, 4, 5):
            assert_passthrough(self, got[i],
                               self.one_cas_request(cas, reqs[i].mark))
        self.assertEqual(cas.find(reqs[2].mark), [])

    def test_http10_client(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        c = d.connect()
        self.addCleanup(c.close)
        req = eas_request("FolderSync", body=b"abc", version="HTTP/1.0")
        c.send(req.raw)
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, sc.FOLDERSYNC_BODY)
        rec = self.one_cas_request(cas, req.mark)
        self.assertEqual(rec.body_len, 3)
        self.assertTrue(c.closed_by_peer(5),
                        "an HTTP/1.0 connection without keep-alive must close")

    def test_http10_client_gets_no_chunked(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        c = d.connect()
        self.addCleanup(c.close)
        req = eas_request("ItemOperations", body=b"abc", version="HTTP/1.0")
        c.send(req.raw)
        r = c.read_response(timeout=10)
        self.assertEqual(r.status, 200)
        self.assertFalse(r.chunked, "chunked sent to an HTTP/1.0 client")
        self.assertIsNone(r.header("Transfer-Encoding"))
        rec = self.one_cas_request(cas, req.mark)
        self.assertEqual(r.body, rec.response_body)
        self.assertTrue(c.closed_by_peer(5))

    def test_expect_100_continue(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        body = os.urandom(200000)
        req = eas_request("SendMail", body=body,
                          extra=[("Expect", "100-continue")])
        c = d.connect()
        self.addCleanup(c.close)
        c.send(req.head)
        interim = c.read_head(timeout=5)
        self.assertEqual(interim.status_line, "HTTP/1.1 100 Continue")
        c.send(req.body)
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Test-Body-Sha256"),
                         hashlib.sha256(body).hexdigest())
        rec = self.one_cas_request(cas, req.mark)
        self.assertEqual(rec.headers_named("Expect"), [],
                         "Expect must not be forwarded")

    def test_pid_file_and_access_log(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        with open(d.pid_path) as f:
            self.assertEqual(int(f.read().strip()), d.pid)
        for i in range(5):
            self.assertEqual(d.roundtrip(eas_request("FolderSync").raw).status,
                             200)
        d.stop()
        lines = [ln for ln in d.access_log_lines() if ln.strip()]
        self.assertGreaterEqual(len(lines), 5, "one access-log line per "
                                "request expected")
        auth = basic("alice@contoso.test").split(" ")[1]
        for ln in lines:
            self.assertIsInstance(json.loads(ln), dict)
            self.assertNotIn(auth, ln, "Authorization logged")
            self.assertNotIn(PASSWORD, ln)


class Paths(eftest.EfTestCase):

    def test_unserved_paths_404_locally(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        for target in ("/owa", "/owa/auth/logon.aspx", "/", "/ecp/",
                       "/EWS/Exchange.asmx", "/Microsoft-Server-ActiveSyncX",
                       "/autodiscover/autodiscover.json?Email=a@contoso.test",
                       "/mapi/healthcheck.htm"):
            with self.subTest(target=target):
                auth = [("Authorization", basic("a@contoso.test"))]
                req = http_request("GET", target, auth)
                r = d.roundtrip(req.raw)
                self.assert_own_error(r, (404,))
        time.sleep(0.2)
        self.assertEqual(cas.client_requests(), [],
                         "an unserved path reached the CAS")

    def test_healthcheck_answered_locally(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        req = http_request("GET",
                           "/Microsoft-Server-ActiveSync/healthcheck.htm")
        r = d.roundtrip(req.raw)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.body.startswith(b"200 OK<br/>"), r.body)
        self.assertNotEqual(r.body, b"200 OK<br/>cas1.site1.test",
                            "the CAS's page was proxied")
        self.assert_own_headers(r)
        self.assertIsNone(r.header("Strict-Transport-Security"),
                          "HSTS without tls.hsts")
        time.sleep(0.2)
        self.assertEqual(cas.find(req.mark), [])

    def test_autodiscover_any_case_proxied(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        for path in ("/autodiscover/autodiscover.xml",
                     "/Autodiscover/Autodiscover.xml",
                     "/AutoDiscover/AutoDiscover.xml",
                     "/AUTODISCOVER/AUTODISCOVER.XML"):
            with self.subTest(path=path):
                req = autodiscover_request("bob@contoso.test", path=path)
                r = d.roundtrip(req.raw)
                self.assertEqual(r.status, 200)
                rec = self.one_cas_request(cas, req.mark)
                self.assertEqual(rec.path, path)
                assert_passthrough(self, r, rec)

    def test_eas_path_any_case_proxied(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        for prefix in ("/microsoft-server-activesync",
                       "/MICROSOFT-SERVER-ACTIVESYNC",
                       "/Microsoft-Server-ActiveSync"):
            with self.subTest(prefix=prefix):
                req = eas_request("FolderSync", target=eftest.eas_target(
                    "FolderSync", path=prefix))
                r = d.roundtrip(req.raw)
                self.assertEqual(r.status, 200)
                rec = self.one_cas_request(cas, req.mark)
                # the prefix may be rewritten to proxy_path; the query not
                self.assertEqual(rec.path.lower(),
                                 "/microsoft-server-activesync")
                self.assertEqual(rec.query, req.request_line.decode().split(
                    "?", 1)[1].split(" ")[0])


class Hsts(eftest.EfTestCase):
    """tls.hsts: easfront's own answers carry Strict-Transport-Security;
    a CAS's answer gets it only when the CAS sent none of its own."""

    def start(self, cas):
        pki = self.pki
        tls = {"certificates": [{"cert": c, "key": k}
                                for c, k in (pki.eas_ec, pki.eas_rsa)],
               "hsts": 31536000}
        return self.start_daemon(cas, extra={"tls": tls})

    def test_own_answers(self):
        cas = self.start_cas()
        d = self.start(cas)
        for target in ("/owa", "/Microsoft-Server-ActiveSync/healthcheck.htm"):
            with self.subTest(target=target):
                r = d.roundtrip(http_request("GET", target).raw)
                self.assertIn(r.status, (200, 404))
                self.assert_own_headers(r)
                self.assertEqual(r.headers_named("Strict-Transport-Security"),
                                 ["max-age=31536000"])

    def test_proxied_answer(self):
        cas = self.start_cas()
        d = self.start(cas)
        req = eas_request("FolderSync")
        resp = d.roundtrip(req.raw)
        rec = self.one_cas_request(cas, req.mark)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.headers_named("Strict-Transport-Security"),
                         ["max-age=31536000"])
        # Everything else is the CAS's answer, unchanged.
        _, cas_lines = eftest.end_to_end_lines(rec.response_head)
        _, lines = eftest.end_to_end_lines(resp.raw_head)
        self.assertEqual([ln for ln in lines if not ln.lower().startswith(
            b"strict-transport-security:")], cas_lines)

    def test_cas_policy_kept(self):
        cas = self.start_cas()
        real = cas._std_headers

        def with_hsts(ctype=None):
            return real(ctype) + [("Strict-Transport-Security",
                                   "max-age=60")]
        cas._std_headers = with_hsts
        d = self.start(cas)
        req = eas_request("FolderSync")
        resp = d.roundtrip(req.raw)
        self.assertEqual(resp.headers_named("Strict-Transport-Security"),
                         ["max-age=60"])
        assert_passthrough(self, resp, self.one_cas_request(cas, req.mark))


class UpstreamTls(eftest.EfTestCase):
    """https:// CAS URLs: verified against upstream.ca_file, pooled."""

    def test_https_cas(self):
        cas = self.start_cas(tls=True)
        d = self.start_daemon(cas, workers=1)
        req = options_request()
        r = d.roundtrip(req.raw)
        assert_passthrough(self, r, self.one_cas_request(cas, req.mark))
        body = os.urandom(500000)
        r = d.roundtrip(eas_request("SendMail", body=body).raw)
        self.assertEqual(r.header("X-Test-Body-Sha256"),
                         hashlib.sha256(body).hexdigest())
        r = d.roundtrip(eas_request("GetAttachment",
                                    AttachmentName="bytes-3000000").raw)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(),
                         sc.pattern_sha256(3000000))
        marks = []
        for _ in range(10):
            req = eas_request("FolderSync")
            self.assertEqual(d.roundtrip(req.raw).status, 200)
            marks.append(req.mark)
        conns = {self.one_cas_request(cas, m).conn_id for m in marks}
        self.assertEqual(len(conns), 1, "TLS upstream connections are not "
                         "reused")
        self.assertEqual(cas.tls_failures, 0)

    def test_https_cas_untrusted_certificate(self):
        other = eftest.Pki()
        cert = other.leaf("rogue-cas", ["DNS:cas1.site1.test",
                                        "IP:127.0.0.1"])
        cas = sc.StandinCAS(tls_context=other.server_context(*cert)).start()
        self.addCleanup(cas.stop)
        d = self.start_daemon(cas, wait_healthy=False,
                              health={"interval": 600})
        r = d.roundtrip(eas_request("FolderSync").raw)
        self.assert_own_error(r, (502, 503))
        self.assertEqual(cas.client_requests(), [],
                         "a request went to a CAS whose certificate does "
                         "not verify")
        self.assertGreaterEqual(cas.tls_failures, 1)


class RealClients(eftest.EfTestCase):

    def test_curl(self):
        curl = eftest.ensure_tool("curl")
        cas = self.start_cas()
        d = self.start_daemon(cas)
        tmp = tempfile.mkdtemp(prefix="eftest-curl-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", tmp]))
        base = "https://eas.contoso.test:%d" % d.port
        common = [curl, "-sS", "--max-time", "20",
                  "--cacert", self.pki.ca_cert,
                  "--resolve", "eas.contoso.test:%d:127.0.0.1" % d.port,
                  "-u", "alice@contoso.test:" + PASSWORD]
        hdrs = os.path.join(tmp, "h")
        eftest.run(common + ["-X", "OPTIONS", "-D", hdrs, "-o", "/dev/null",
                             base + "/Microsoft-Server-ActiveSync"])
        with open(hdrs, "rb") as f:
            head = f.read()
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        self.assertIn(b"\r\nMS-ASProtocolVersions: " +
                      sc.EAS_VERSIONS.encode() + b"\r\n", head)
        data = os.path.join(tmp, "mail")
        payload = os.urandom(300000)
        with open(data, "wb") as f:
            f.write(payload)
        p = eftest.run(common + [
            "-H", "Content-Type: message/rfc822",
            "-H", "MS-ASProtocolVersion: 14.1",
            "--data-binary", "@" + data, "-D", "-", "-o", "/dev/null",
            base + eftest.eas_target("SendMail", SaveInSent="T")])
        self.assertIn("X-Test-Body-Sha256: " +
                      hashlib.sha256(payload).hexdigest(), p.stdout)
        out = os.path.join(tmp, "att")
        eftest.run(common + ["-X", "POST", "-o", out, base + eftest.eas_target(
            "GetAttachment", AttachmentName="bytes-1000000")])
        with open(out, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(),
                             sc.pattern_sha256(1000000))

    def test_http_client(self):
        cas = self.start_cas()
        d = self.start_daemon(cas)
        conn = eftest.SNIHTTPSConnection(d.port, sni=SNI)
        self.addCleanup(conn.close)
        headers = {"Authorization": basic("alice@contoso.test"),
                   "MS-ASProtocolVersion": "14.1",
                   "Content-Type": "application/vnd.ms-sync.wbxml",
                   "Host": SNI}
        for cmd, expect in (("FolderSync", sc.FOLDERSYNC_BODY),
                            ("Sync", sc.SYNC_BODY)):
            conn.request("POST", eftest.eas_target(cmd), body=b"\x03\x01j\x00",
                         headers=headers)
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Content-Type"), sc.WBXML_CT)
            self.assertEqual(r.read(), expect)
        conn.request("POST", eftest.eas_target("ItemOperations"), body=b"x",
                     headers=headers)
        r = conn.getresponse()
        self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
        self.assertIn(b"chunk three", r.read())

    def test_openssl_s_client(self):
        ossl = eftest.ensure_tool("openssl")
        cas = self.start_cas()
        d = self.start_daemon(cas)
        req = http_request("OPTIONS", "/Microsoft-Server-ActiveSync",
                           [("Authorization", basic("alice@contoso.test")),
                            ("Connection", "close")])
        p = subprocess.run(
            [ossl, "s_client", "-connect", "127.0.0.1:%d" % d.port,
             "-servername", SNI, "-CAfile", self.pki.ca_cert,
             "-verify_return_error", "-verify_hostname", SNI, "-quiet"],
            input=req.raw, capture_output=True, timeout=20)
        self.assertIn(b"HTTP/1.1 200 OK\r\n", p.stdout, p.stderr[-2000:])
        self.assertIn(b"MS-ASProtocolCommands: " + sc.EAS_COMMANDS.encode(),
                      p.stdout)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])


if __name__ == "__main__":
    unittest.main()
