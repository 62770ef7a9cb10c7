"""TLS: certificate selection by SNI and by signature algorithms, protocol
versions, an sslscan audit and session resumption with tickets."""

import re
import socket
import ssl
import subprocess
import threading
import unittest
import warnings

import eftest
from eftest import SNI, cert_der, http_request

HEALTH = http_request("GET", "/Microsoft-Server-ActiveSync/healthcheck.htm")


def s_client_leaf(port, *args):
    """DER of the leaf certificate `openssl s_client` got, and its output."""
    p = subprocess.run(["openssl", "s_client", "-connect",
                        "127.0.0.1:%d" % port, "-showcerts"] + list(args),
                       input=b"", capture_output=True, timeout=20)
    out = p.stdout.decode("latin-1")
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                  out, re.S)
    if not m:
        raise AssertionError("s_client %s got no certificate: %s %s" % (
            " ".join(args), out[-1500:], p.stderr.decode("latin-1")[-1500:]))
    return ssl.PEM_cert_to_DER_cert(m.group(0)), out


def python_leaf(port, sni, **ctx_args):
    ctx = eftest.client_context(**ctx_args)
    c = eftest.tls_connect(port, sni=sni, ctx=ctx)
    try:
        return c.sock.getpeercert(binary_form=True)
    finally:
        c.close()


class OldTlsServer:
    """A control server that does accept TLS 1.0 and 1.1, to prove that the
    client really offers them."""

    def __init__(self, cert, key):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.minimum_version = ssl.TLSVersion.TLSv1
        self.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.ctx.load_cert_chain(cert, key)
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            try:
                s.settimeout(5)
                t = self.ctx.wrap_socket(s, server_side=True)
                t.close()
            except (OSError, ssl.SSLError):
                s.close()

    def close(self):
        self.ls.close()


def old_client(version):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return eftest.client_context(min_version=version, max_version=version,
                                     ciphers="DEFAULT:@SECLEVEL=0")


def sslscan(port):
    tool = eftest.ensure_tool("sslscan")
    p = subprocess.run([tool, "--no-colour", "--sni-name=" + SNI,
                        "127.0.0.1:%d" % port], capture_output=True,
                       timeout=180)
    return p.stdout.decode("latin-1")


def sslscan_findings(out):
    """Problems in `sslscan --no-colour` output: protocols other than TLS 1.2
    and 1.3, ciphers that are not ECDHE/TLS 1.3 with AES-GCM or ChaCha20,
    compression, insecure renegotiation, heartbleed."""
    bad = []
    protos = dict(re.findall(r"^(SSLv2|SSLv3|TLSv1\.[0-3])\s+(enabled|"
                             r"disabled)\s*$", out, re.M))
    want = {"SSLv2": "disabled", "SSLv3": "disabled", "TLSv1.0": "disabled",
            "TLSv1.1": "disabled", "TLSv1.2": "enabled", "TLSv1.3": "enabled"}
    for proto, state in want.items():
        if protos.get(proto) != state:
            bad.append("%s %s" % (proto, protos.get(proto, "not reported")))
    ciphers = re.findall(r"^(?:Preferred|Accepted)\s+(\S+)\s+\d+ bits\s+"
                         r"(\S+)", out, re.M)
    if not ciphers:
        bad.append("no cipher lines parsed")
    for proto, name in ciphers:
        if proto not in ("TLSv1.2", "TLSv1.3") or \
                not re.search(r"GCM|CHACHA20", name) or \
                (proto == "TLSv1.2" and not name.startswith("ECDHE-")):
            bad.append("cipher %s %s accepted" % (proto, name))
    if "TLS Compression:" not in out or "Compression enabled" in out:
        bad.append("compression enabled or not reported")
    if "TLS renegotiation:" not in out or \
            "Insecure session renegotiation supported" in out or not \
            re.search(r"Secure session renegotiation supported|"
                      r"Session renegotiation not supported", out):
        bad.append("renegotiation insecure or not reported")
    if re.search(r"(?<!not )vulnerable to heartbleed", out):
        bad.append("heartbleed")
    return bad


class Tls(eftest.EfTestCase):

    def daemon(self, **kw):
        cas = self.start_cas()
        return self.start_daemon(cas, **kw)

    def test_sni_picks_certificate(self):
        d = self.daemon()
        eas = {cert_der(self.pki.eas_ec[0]), cert_der(self.pki.eas_rsa[0])}
        fab = cert_der(self.pki.fabrikam[0])
        for name in ("eas.contoso.test", "site1-eas.contoso.test",
                     "autodiscover.contoso.test"):
            with self.subTest(sni=name):
                self.assertIn(python_leaf(d.port, name), eas)
        for name in ("x.fabrikam.test", "mail.fabrikam.test"):
            with self.subTest(sni=name):
                self.assertEqual(python_leaf(d.port, name), fab)
        # and the request over the fabrikam name is served
        c = d.connect(sni="x.fabrikam.test")
        self.addCleanup(c.close)
        c.send(http_request("GET",
                            "/Microsoft-Server-ActiveSync/healthcheck.htm",
                            host="x.fabrikam.test").raw)
        self.assertEqual(c.read_response().status, 200)

    def test_no_sni_gets_first_certificate(self):
        d = self.daemon()
        leaf, out = s_client_leaf(d.port, "-noservername")
        self.assertEqual(leaf, cert_der(self.pki.eas_ec[0]))
        self.assertEqual(python_leaf(d.port, None, verify=False),
                         cert_der(self.pki.eas_ec[0]))

    def test_no_sni_first_certificate_follows_config_order(self):
        p = self.pki
        d = self.daemon(certs=[p.fabrikam, p.eas_ec, p.eas_rsa])
        leaf, _ = s_client_leaf(d.port, "-noservername")
        self.assertEqual(leaf, cert_der(p.fabrikam[0]))
        self.assertIn(python_leaf(d.port, SNI),
                      {cert_der(p.eas_ec[0]), cert_der(p.eas_rsa[0])})

    def test_unknown_sni_gets_default(self):
        d = self.daemon()
        self.assertEqual(python_leaf(d.port, "unknown.example.test",
                                     verify=False),
                         cert_der(self.pki.eas_ec[0]))

    def test_ecdsa_or_rsa_by_client_capabilities(self):
        d = self.daemon()
        ec, rsa = cert_der(self.pki.eas_ec[0]), cert_der(self.pki.eas_rsa[0])
        cases = [
            ("TLS 1.3, RSA-PSS only", rsa,
             ["-tls1_3", "-sigalgs",
              "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384"]),
            ("TLS 1.3, ECDSA only", ec,
             ["-tls1_3", "-sigalgs", "ecdsa_secp256r1_sha256"]),
            ("TLS 1.2, RSA sigalgs", rsa,
             ["-tls1_2", "-sigalgs", "RSA+SHA256:RSA-PSS+SHA256"]),
            ("TLS 1.2, ECDHE-RSA cipher", rsa,
             ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]),
            ("TLS 1.2, ECDHE-ECDSA cipher", ec,
             ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]),
        ]
        for name, want, args in cases:
            with self.subTest(name):
                leaf, out = s_client_leaf(d.port, "-servername", SNI,
                                          "-CAfile", self.pki.ca_cert, *args)
                self.assertEqual(leaf, want, "wrong certificate for %s" % name)
                self.assertIn("Verify return code: 0 (ok)", out)

    def test_old_protocols_refused(self):
        d = self.daemon()
        ctl = OldTlsServer(*self.pki.eas_ec)
        self.addCleanup(ctl.close)
        for version in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
            with self.subTest(version=version.name):
                ctx = old_client(version)
                c = eftest.tls_connect(ctl.port, ctx=ctx)
                got = c.sock.version()
                c.close()
                self.assertIn(got, ("TLSv1.1", "TLSv1"),
                              "the control server did not speak %s" % got)
                with self.assertRaises((ssl.SSLError, OSError)):
                    c = eftest.tls_connect(d.port, ctx=old_client(version))
                    c.close()
        # s_client too
        p = subprocess.run(["openssl", "s_client", "-connect",
                            "127.0.0.1:%d" % d.port, "-servername", SNI,
                            "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
                           input=b"", capture_output=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        # s_client names the protocol it tried even when it failed; a
        # negotiated cipher is the proof of a handshake
        self.assertNotRegex(p.stdout.decode("latin-1"),
                            r"Cipher is (?!\(NONE\))\S+")

    def test_tls12_and_tls13_accepted(self):
        d = self.daemon()
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(version=v.name):
                ctx = eftest.client_context(min_version=v, max_version=v)
                c = eftest.tls_connect(d.port, ctx=ctx)
                self.addCleanup(c.close)
                self.assertEqual(c.sock.version(),
                                 {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                  ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[v])
                c.send(HEALTH.raw)
                self.assertEqual(c.read_response().status, 200)

    def test_sslscan_audit(self):
        d = self.daemon()
        out = sslscan(d.port)
        print("\n" + out)
        self.assertEqual(sslscan_findings(out), [])
        self.assertIsNone(d.proc.poll())

    def test_sslscan_audit_flags_a_weak_server(self):
        """The audit itself can fail: a server with TLS 1.0/1.1 and CBC
        ciphers is reported."""
        ctl = OldTlsServer(*self.pki.eas_ec)
        self.addCleanup(ctl.close)
        findings = sslscan_findings(sslscan(ctl.port))
        text = "\n".join(findings)
        self.assertIn("TLSv1.0 enabled", text)
        self.assertIn("TLSv1.1 enabled", text)
        self.assertRegex(text, r"ECDHE-ECDSA-AES\d+-SHA")

    def test_session_resumed_with_ticket(self):
        d = self.daemon()
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            with self.subTest(version=v.name):
                ctx = eftest.client_context(min_version=v, max_version=v)
                c = eftest.tls_connect(d.port, ctx=ctx)
                c.send(HEALTH.raw)
                self.assertEqual(c.read_response().status, 200)
                sess = c.sock.session
                self.assertFalse(c.sock.session_reused)
                c.close()
                self.assertIsNotNone(sess)
                self.assertTrue(sess.has_ticket, "no session ticket issued")
                c = eftest.tls_connect(d.port, ctx=ctx, session=sess)
                self.addCleanup(c.close)
                self.assertTrue(c.sock.session_reused, "session not resumed")
                c.send(HEALTH.raw)
                self.assertEqual(c.read_response().status, 200)


if __name__ == "__main__":
    unittest.main()
