"""Autodiscover (issue 4): POST /autodiscover/autodiscover.xml in both
`autodiscover:` modes, checked on the wire, on every stand-in CAS's record
and in the access log.

proxy (the default): routed like an EAS request by the credentials (never a
451: Autodiscover has no EAS version) and proxied to the user's site's CAS,
whose answer passes unchanged. answer: easfront reads the body (at most 64
KiB), answers a mobilesync request itself with the external URL of the
user's mailbox site (EAS.md 6.3), answers a bad one with the Autodiscover
error document (600/601, HTTP 200) and proxies everything else (Outlook's
schema) with the collected body.

Each case builds its own world (World): site1 is this front end's site with a
plain-HTTP stand-in CAS and external URL EXT1 (unless the case takes it
away), site2 a remote site with external URL EXT2 and a stand-in CAS over
TLS, site3 a remote site without external URL; a site map, a config and a
daemon of its own. The users say what they test: local@ lives in site1,
remote@ (and the stand-in's blocked@/expired@) in site2, far@ in site3,
nobody@ is unknown (sitemap.default_site).
"""

import base64
import json
import os
import time
import unittest
import urllib.parse
import xml.etree.ElementTree as ET

import eftest
import standin_cas as sc
from eftest import FAST_HEALTH, assert_passthrough, basic, http_request

EXT1 = "https://site1-eas.contoso.test/Microsoft-Server-ActiveSync"
# A port in the URL: a client sends it in Host, the loop guard must still
# see site2's own name.
EXT2 = "https://site2-eas.contoso.test:8443/Microsoft-Server-ActiveSync"
AD_HOST = "autodiscover.contoso.test"
AD_PATH = "/autodiscover/autodiscover.xml"
EAS_PATH = "/Microsoft-Server-ActiveSync"
UA = "Apple-iPhone9C1/1602.92"

LOCAL = "local@contoso.test"
REMOTE = "remote@contoso.test"
FAR = "far@contoso.test"
NOBODY = "nobody@contoso.test"

NS_RESP = "http://schemas.microsoft.com/exchange/autodiscover/" \
          "responseschema/2006"
NS_MS_REQ = "http://schemas.microsoft.com/exchange/autodiscover/" \
            "mobilesync/requestschema/2006"
NS_MS_RESP = "http://schemas.microsoft.com/exchange/autodiscover/" \
             "mobilesync/responseschema/2006"
NS_OL_REQ = "http://schemas.microsoft.com/exchange/autodiscover/" \
            "outlook/requestschema/2006"
NS_OL_RESP = "http://schemas.microsoft.com/exchange/autodiscover/" \
             "outlook/responseschema/2006a"
AD_MAX = 64 * 1024


# --------------------------------------------------------------------------
# request bodies

def mobilesync_body(email, schema=NS_MS_RESP, requests=1, ns=NS_MS_REQ,
                    prolog='<?xml version="1.0" encoding="utf-8"?>\r\n',
                    pad=""):
    """A mobilesync Autodiscover request (EAS.md 6.2) with `requests`
    Request elements; pad goes after the root element (a comment)."""
    one = ("<Request><EMailAddress>%s</EMailAddress>"
           "<AcceptableResponseSchema>%s</AcceptableResponseSchema>"
           "</Request>" % (email, schema))
    return ('%s<Autodiscover xmlns="%s">%s</Autodiscover>%s'
            % (prolog, ns, one * requests, pad)).encode()


def outlook_body(email):
    """Outlook's Autodiscover request (EAS.md 6.2), which the CAS answers."""
    return mobilesync_body(email, schema=NS_OL_RESP, ns=NS_OL_REQ)


def padded_body(email, size):
    """A valid mobilesync request of exactly size bytes (a trailing
    comment makes up the difference)."""
    base = mobilesync_body(email)
    fill = size - len(base) - len("<!--") - len("-->")
    assert fill >= 0
    return base + b"<!--" + b"x" * fill + b"-->"


def xxe_body(entity_decl, ref="&xxe;", ns=NS_MS_REQ):
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<!DOCTYPE Autodiscover [%s]>\n'
            '<Autodiscover xmlns="%s"><Request><EMailAddress>%s'
            '</EMailAddress><AcceptableResponseSchema>%s'
            '</AcceptableResponseSchema></Request></Autodiscover>'
            % (entity_decl, ns, ref, NS_MS_RESP)).encode()


def billion_laughs_body():
    """The classic entity bomb: ten levels of ten references, a billion
    "lol"s (3 GB) from under 1 KiB."""
    decl = ['<!ENTITY lol0 "lol">']
    for i in range(1, 10):
        decl.append('<!ENTITY lol%d "%s">' % (i, ("&lol%d;" % (i - 1)) * 10))
    return xxe_body("".join(decl), ref="&lol9;")


def chunked(body, size=4096):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def ad_request(body, user=None, auth="basic", path=AD_PATH, host=AD_HOST,
               te_chunked=False, extra=()):
    """An Autodiscover POST as exact bytes (eftest.Req). auth: "basic"
    (Basic for user), None, or a whole Authorization value."""
    h = []
    if auth == "basic":
        h.append(("Authorization", basic(user)))
    elif auth:
        h.append(("Authorization", auth))
    h += [("Content-Type", "text/xml"), ("User-Agent", UA)] + list(extra)
    if te_chunked:
        r = http_request("POST", path, h + [("Transfer-Encoding",
                                             "chunked")], b"", host=host)
        return eftest.Req(r.raw + chunked(body), r.mark, len(r.raw))
    return http_request("POST", path, h, body, host=host)


def mobilesync(user, email=None, **kw):
    """The usual request: Basic user, EMailAddress email (default user)."""
    return ad_request(mobilesync_body(email or user), user, **kw)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt(claims):
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(dict(
        {"aud": "https://outlook.office365.com", "iss": "https://sts.test/",
         "exp": 4102444800}, **claims)).encode())
    return "Bearer %s.%s.%s" % (head, body, b64url(os.urandom(64)))


def q(ns, tag):
    return "{%s}%s" % (ns, tag)


# --------------------------------------------------------------------------
# the world of one case

MAP_LINES = [
    "# easfront autodiscover tests",
    "database\tDB01\tsite1",
    "database\tDB02\tsite2",
    "user\tlocal@contoso.test\tDB01",
    "user\tremote@contoso.test\tDB02",
    "user\tcarol\tDB02",
    "user\tblocked@contoso.test\tDB02",
    "user\texpired@contoso.test\tDB02",
    "user\tfar@contoso.test\tsite3",
]


class World(eftest.SitesWorld):
    """site1 (own, plain CAS, external URL own_ext), site2 (TLS CAS, EXT2),
    site3 (plain CAS, no external URL), the map and a started daemon in
    `mode`: eftest.SitesWorld, whose other keywords (default_site,
    site_opts: {site: {key: value}} added to that site, health) pass
    through."""

    def __init__(self, tc, mode, own_ext=EXT1, **kw):
        super().__init__(tc, MAP_LINES, sites=("site1", "site2", "site3"),
                         external_urls={"site1": own_ext, "site2": EXT2},
                         autodiscover=mode, **kw)


class AdCase(eftest.EfTestCase):

    def world(self, mode, **kw):
        return World(self, mode, **kw)

    # ---- access log. A line is written when its request is over, which
    # may be just after the client read the answer: the line of a request
    # is the first new one after it was sent whose method and fields match
    # (user, device), and a helper that sends a request waits for its line.

    def log_mark(self, w):
        return len(w.d.access_log_lines())

    def log_after(self, w, mark, method="POST", timeout=5, **match):
        def find():
            for rec in w.log_lines()[mark:]:
                if rec.get("method") == method and all(
                        rec.get(k) == v for k, v in match.items()):
                    return rec
            return None
        rec = eftest.wait_until(find, timeout)
        if rec is None:
            raise AssertionError("no access-log line for the %s request %r "
                                 "(last lines: %r)" % (
                                     method, match,
                                     w.d.access_log_lines()[-5:]))
        return rec

    def assert_log(self, rec, **want):
        got = {k: rec.get(k) for k in want}
        self.assertEqual(got, want, "access-log line %r" % rec)

    # ---- answers

    def assert_settings(self, w, req, resp, url, email):
        """resp is easfront's own Settings answer (EAS.md 6.3) with url in
        Url and Name and email in User/EMailAddress (None: not checked);
        no CAS saw req."""
        self.assertEqual(resp.status_line, "HTTP/1.1 200 OK")
        self.assertEqual(w.where(req.mark), [], "an answered Autodiscover "
                         "request reached a CAS")
        self.assertEqual(resp.header("Content-Type"),
                         "text/xml; charset=utf-8")
        self.assertEqual(resp.header("Content-Length"), str(len(resp.body)))
        self.assertIsNone(resp.header("X-MS-ASThrottle"))
        self.assertIsNone(resp.header("X-MS-Location"))
        self.assertTrue(resp.body.startswith(b"<?xml"), resp.body[:80])
        root = ET.fromstring(resp.body)
        self.assertEqual(root.tag, q(NS_RESP, "Autodiscover"))
        self.assertEqual([c.tag for c in root],
                         [q(NS_MS_RESP, "Response")], resp.body)
        r = root[0]
        self.assertEqual([c.tag for c in r],
                         [q(NS_MS_RESP, t) for t in
                          ("Culture", "User", "Action")], resp.body)
        self.assertEqual(r.find(q(NS_MS_RESP, "Culture")).text, "en:us")
        user = r.find(q(NS_MS_RESP, "User"))
        tags = [c.tag for c in user]
        self.assertIn(q(NS_MS_RESP, "EMailAddress"), tags)
        self.assertTrue(set(tags) <= {q(NS_MS_RESP, "EMailAddress"),
                                      q(NS_MS_RESP, "DisplayName")}, tags)
        got_email = user.find(q(NS_MS_RESP, "EMailAddress")).text
        if email is not None:
            self.assertEqual(got_email, email)
        action = r.find(q(NS_MS_RESP, "Action"))
        self.assertEqual([c.tag for c in action],
                         [q(NS_MS_RESP, "Settings")], resp.body)
        servers = list(action[0])
        self.assertEqual([c.tag for c in servers],
                         [q(NS_MS_RESP, "Server")], resp.body)
        srv = servers[0]
        self.assertEqual([(c.tag, c.text) for c in srv],
                         [(q(NS_MS_RESP, "Type"), "MobileSync"),
                          (q(NS_MS_RESP, "Url"), url),
                          (q(NS_MS_RESP, "Name"), url)], resp.body)
        return root

    def assert_error_doc(self, w, req, resp, code):
        """resp is the Autodiscover framework error (EAS.md 6.3) with
        ErrorCode code, HTTP 200; no CAS saw req."""
        self.assertNotEqual(resp.status, 500)
        self.assertEqual(resp.status_line, "HTTP/1.1 200 OK",
                         "an Autodiscover error is a 200 with an error "
                         "document: %s %r" % (resp.status_line,
                                              resp.body[:200]))
        self.assertEqual(w.where(req.mark), [], "a rejected Autodiscover "
                         "request reached a CAS")
        self.assertEqual(resp.header("Content-Type"),
                         "text/xml; charset=utf-8")
        self.assertEqual(resp.header("Content-Length"), str(len(resp.body)))
        self.assertIsNone(resp.header("X-MS-ASThrottle"))
        root = ET.fromstring(resp.body)
        self.assertEqual(root.tag, q(NS_RESP, "Autodiscover"))
        self.assertEqual(len(root), 1, resp.body)
        r = root[0]
        self.assertIn(r.tag, (q(NS_RESP, "Response"),
                              q(NS_MS_RESP, "Response")), resp.body)
        ns = r.tag[1:].split("}")[0]
        self.assertEqual([c.tag for c in r], [q(ns, "Error")], resp.body)
        err = r[0]
        self.assertEqual(err.find(q(ns, "ErrorCode")).text, str(code),
                         resp.body)
        self.assertIsNone(r.find(".//" + q(ns, "Settings")))
        return root

    def assert_proxied(self, w, req, resp, site, path=AD_PATH):
        """resp is site's CAS's answer, unchanged; only that CAS saw req,
        with the path and body the client sent."""
        self.assertNotEqual(resp.status, 451, "an Autodiscover request got "
                            "a 451 (X-MS-Location: %s)"
                            % resp.header("X-MS-Location"))
        self.assertEqual(w.where(req.mark), [site],
                         "wrong CAS(es) for a request routed to %s (%s)"
                         % (site, resp.status_line))
        rec = self.one_cas_request(w.cas[site], req.mark)
        assert_passthrough(self, resp, rec)
        self.assertEqual(rec.method, "POST")
        self.assertEqual(rec.path, path)
        self.assertTrue(rec.complete, "the CAS did not get the whole body")
        return rec

    def next_works(self, w, conn, user=LOCAL, url=EXT1, what=""):
        """A second request on conn gets its proper answer (answer mode)."""
        req = mobilesync(user)
        m = self.log_mark(w)
        try:
            conn.send(req.raw)
            resp = conn.read_response()
        except (OSError, ValueError) as e:
            self.fail("the connection was not usable after %s: %r"
                      % (what, e))
        self.assert_settings(w, req, resp, url, user)
        rec = self.log_after(w, m, user=user)
        self.assert_log(rec, decision="local",
                        reason="autodiscover", status=200)


# --------------------------------------------------------------------------

class ProxyMode(AdCase):
    """`autodiscover: proxy` (the default): to the user's site's CAS."""

    def run_users(self, w, cases):
        for user, site in cases:
            with self.subTest(user=user):
                req = eftest.autodiscover_request(user)
                m = self.log_mark(w)
                resp = w.send(req)
                rec = self.assert_proxied(w, req, resp, site)
                self.assertEqual(resp.status, 200)
                self.assertEqual(rec.body, req.body)
                self.assertEqual(rec.headers_named("Authorization"),
                                 [basic(user)])
                rec = self.log_after(w, m, user=user)
                self.assert_log(rec, decision="proxy",
                                site=site, status=200, user=user)

    def test_users_of_every_site(self):
        # the key left out: proxy is the default
        w = self.world(None)
        self.run_users(w, [(LOCAL, "site1"), (REMOTE, "site2"),
                           (FAR, "site3"), (NOBODY, "site1")])

    def test_unknown_user_default_site_remote(self):
        w = self.world("proxy", default_site="site2")
        self.run_users(w, [(NOBODY, "site2"), (LOCAL, "site1"),
                           (FAR, "site3")])

    def test_credential_forms_and_no_451(self):
        w = self.world("proxy")
        cases = [
            ("Basic NetBIOS", ad_request(mobilesync_body(REMOTE),
                                         "CONTOSO\\remote"), "site2"),
            ("Basic bare user", ad_request(mobilesync_body(
                "carol@contoso.test"), "carol"), "site2"),
            ("Bearer upn", ad_request(mobilesync_body(REMOTE), auth=jwt(
                {"upn": REMOTE})), "site2"),
            # an MS-ASProtocolVersion header does not make it an EAS
            # request: never a 451
            ("remote with MS-ASProtocolVersion 14.1", mobilesync(
                REMOTE, extra=[("MS-ASProtocolVersion", "14.1")]), "site2"),
            ("remote, path in capitals", mobilesync(
                REMOTE, path="/AUTODISCOVER/AUTODISCOVER.XML"), "site2"),
            ("chunked body", mobilesync(REMOTE, te_chunked=True), "site2"),
            # no credentials: the body is not read in proxy mode, so the
            # default site's CAS asks for them
            ("no credentials", ad_request(mobilesync_body(REMOTE),
                                          auth=None), "site1"),
        ]
        for name, req, site in cases:
            with self.subTest(name):
                resp = w.send(req)
                path = "/AUTODISCOVER/AUTODISCOVER.XML" if "capitals" in \
                    name else AD_PATH
                rec = self.assert_proxied(w, req, resp, site, path=path)
                if name == "no credentials":
                    self.assertEqual(resp.status, 401)
                else:
                    self.assertEqual(resp.status, 200)
                    self.assertEqual(rec.body, mobilesync_body(
                        "carol@contoso.test" if "bare" in name else REMOTE))

    def test_456_457_pass_through(self):
        w = self.world("proxy")
        for user, line in (("blocked@contoso.test",
                            "HTTP/1.1 456 Account Blocked"),
                           ("expired@contoso.test",
                            "HTTP/1.1 457 Password Expired")):
            with self.subTest(user=user):
                c = w.d.connect(sni=AD_HOST)
                self.addCleanup(c.close)
                req = eftest.autodiscover_request(user)
                c.send(req.raw)
                resp = c.read_response()
                self.assert_proxied(w, req, resp, "site2")
                self.assertEqual(resp.status_line, line)
                if "expired" in user:
                    self.assertEqual(resp.headers_named(
                        "X-MS-Credential-Service-Url"), [sc.CREDENTIAL_URL])
                # the connection stays usable
                req = eftest.autodiscover_request(LOCAL)
                c.send(req.raw)
                self.assert_proxied(w, req, c.read_response(), "site1")
                c.close()


class AnswerMode(AdCase):
    """`autodiscover: answer`: easfront's own Settings answer."""

    def run_users(self, w, cases):
        for user, url in cases:
            with self.subTest(user=user):
                req = mobilesync(user)
                m = self.log_mark(w)
                resp = w.send(req)
                self.assert_settings(w, req, resp, url, user)
                rec = self.log_after(w, m, user=user)
                self.assert_log(rec, decision="local",
                                reason="autodiscover", status=200, user=user)

    def test_users_of_every_site(self):
        w = self.world("answer")
        # far@'s site3 has no external URL: this front end proxies for it,
        # so the phone gets this site's URL
        self.run_users(w, [(LOCAL, EXT1), (REMOTE, EXT2), (FAR, EXT1),
                           (NOBODY, EXT1)])
        for site, c in w.cas.items():
            self.assertEqual([r for r in c.client_requests()], [],
                             "%s's CAS was contacted in answer mode" % site)

    def test_unknown_user_default_site_remote(self):
        w = self.world("answer", default_site="site2")
        self.run_users(w, [(NOBODY, EXT2), (LOCAL, EXT1), (REMOTE, EXT2),
                           (FAR, EXT1)])

    def test_path_any_case_and_keep_alive(self):
        w = self.world("answer")
        # the organisation's common name serves Autodiscover too
        c = w.d.connect(sni=eftest.SNI)
        self.addCleanup(c.close)
        for path in (AD_PATH, "/Autodiscover/Autodiscover.xml",
                     "/AutoDiscover/AutoDiscover.xml",
                     "/AUTODISCOVER/AUTODISCOVER.XML"):
            with self.subTest(path=path):
                req = mobilesync(REMOTE, path=path, host=eftest.SNI)
                c.send(req.raw)
                self.assert_settings(w, req, c.read_response(), EXT2, REMOTE)
        # a chunked request body is read the same way, and an
        # MS-ASProtocolVersion header changes nothing (never a 451)
        req = mobilesync(REMOTE, te_chunked=True, host=eftest.SNI,
                         extra=[("MS-ASProtocolVersion", "14.1")])
        c.send(req.raw)
        self.assert_settings(w, req, c.read_response(), EXT2, REMOTE)
        # an EAS request on the same connection is proxied as usual, and
        # the Autodiscover after it is answered again
        eas = http_request("POST", eftest.eas_target(
            "FolderSync", user=LOCAL, device_id="ADKEEP0001"),
            eftest.eas_headers(LOCAL), b"\x03\x01\x6a\x00\x00\x07\x56\x52"
            b"\x03\x30\x00\x01\x01")
        c.send(eas.raw)
        resp = c.read_response()
        self.assertEqual(w.where(eas.mark), ["site1"])
        self.assertEqual(resp.status, 200)
        req = mobilesync(REMOTE, host=eftest.SNI)
        c.send(req.raw)
        self.assert_settings(w, req, c.read_response(), EXT2, REMOTE)

    def test_credential_forms(self):
        """The credentials decide; EMailAddress only without them."""
        w = self.world("answer")
        cases = [
            ("Basic NetBIOS", ad_request(mobilesync_body(REMOTE),
                                         "CONTOSO\\remote"), EXT2),
            # carol@contoso.test is not in the map (default site1), the
            # bare user carol is (site2)
            ("Basic bare user", ad_request(mobilesync_body(
                "carol@contoso.test"), "carol"), EXT2),
            ("Bearer upn", ad_request(mobilesync_body(REMOTE), auth=jwt(
                {"upn": REMOTE})), EXT2),
            ("Bearer upn local, EMailAddress remote", ad_request(
                mobilesync_body(REMOTE), auth=jwt({"upn": LOCAL})), EXT1),
            ("no credentials: EMailAddress remote", ad_request(
                mobilesync_body(REMOTE), auth=None), EXT2),
            ("no credentials: EMailAddress far", ad_request(
                mobilesync_body(FAR), auth=None), EXT1),
        ]
        for name, req, url in cases:
            with self.subTest(name):
                self.assert_settings(w, req, w.send(req), url, None)
        with self.subTest("markup in EMailAddress is escaped"):
            req = ad_request(mobilesync_body("o&amp;b&lt;x&gt;@contoso.test"),
                             auth=None)
            self.assert_settings(w, req, w.send(req), EXT1,
                                 "o&b<x>@contoso.test")

    def test_basic_credentials_win_over_emailaddress(self):
        w = self.world("answer")
        for creds, email, url in ((LOCAL, REMOTE, EXT1),
                                  (REMOTE, LOCAL, EXT2),
                                  ("CONTOSO\\local", REMOTE, EXT1),
                                  (NOBODY, REMOTE, EXT1)):
            with self.subTest(credentials=creds, email=email):
                req = mobilesync(creds, email)
                m = self.log_mark(w)
                resp = w.send(req)
                root = self.assert_settings(w, req, resp, url, None)
                got = root.find(".//" + q(NS_MS_RESP, "EMailAddress")).text
                self.assertIn(got, (email, creds))
                rec = self.log_after(w, m, user=creds)
                self.assert_log(rec, decision="local",
                                reason="autodiscover", user=creds)

    def test_own_site_without_external_url(self):
        """The user's site has an external URL: it is given. Neither it nor
        this front end's site has one: nothing to give, proxied."""
        w = self.world("answer", own_ext=None)
        req = mobilesync(REMOTE)
        self.assert_settings(w, req, w.send(req), EXT2, REMOTE)
        for user, site in ((LOCAL, "site1"), (FAR, "site3"),
                           (NOBODY, "site1")):
            with self.subTest(user=user):
                req = mobilesync(user)
                m = self.log_mark(w)
                resp = w.send(req)
                rec = self.assert_proxied(w, req, resp, site)
                self.assertEqual(resp.status, 200)
                self.assertEqual(rec.body, req.body)
                self.assertEqual(rec.header("Content-Length"),
                                 str(len(req.body)))
                rec = self.log_after(w, m, user=user)
                self.assert_log(rec, decision="proxy",
                                reason="autodiscover-proxied", site=site,
                                status=200)

    def test_fallback_site_url_while_site_down(self):
        w = self.world("answer", site_opts={"site2": {"fallback": "site1"}},
                       health=FAST_HEALTH)
        req = mobilesync(REMOTE)
        self.assert_settings(w, req, w.send(req), EXT2, REMOTE)
        port = w.cas["site2"].port
        w.cas["site2"].stop()

        def url_now():
            r = w.send(mobilesync(REMOTE))
            if r.status != 200:
                return None
            u = ET.fromstring(r.body).find(".//" + q(NS_MS_RESP, "Url"))
            return u is not None and u.text == EXT1
        self.assertTrue(eftest.wait_until(url_now, 15, interval=0.3),
                        "site2's users were not given site1's URL while "
                        "every CAS of site2 was down")
        req = mobilesync(REMOTE)
        self.assert_settings(w, req, w.send(req), EXT1, REMOTE)
        # site2 comes back: its own URL again
        w.cas["site2"] = w.start_cas("site2", port=port)

        def back():
            r = w.send(mobilesync(REMOTE))
            u = ET.fromstring(r.body).find(".//" + q(NS_MS_RESP, "Url")) \
                if r.status == 200 else None
            return u is not None and u.text == EXT2
        self.assertTrue(eftest.wait_until(back, 15, interval=0.3),
                        "site2's URL did not come back")


class Walk(AdCase):
    """A phone from Autodiscover to its first FolderSync, answer mode."""

    def walk(self, w, user, url, site, reason):
        req = mobilesync(user, extra=[("X-Test-Client", "EAS 14.1")])
        root = self.assert_settings(w, req, w.send(req), url, user)
        got = root.find(".//" + q(NS_MS_RESP, "Url")).text
        u = urllib.parse.urlsplit(got)
        self.assertEqual(u.scheme, "https")
        c = w.d.connect(sni=u.hostname)     # the host the phone now uses
        self.addCleanup(c.close)
        opt = http_request("OPTIONS", u.path, [
            ("Authorization", basic(user)), ("User-Agent", UA)],
            host=u.netloc)
        c.send(opt.raw)
        resp = c.read_response()
        self.assertNotEqual(resp.status, 451, resp.header("X-MS-Location"))
        self.assertEqual(w.where(opt.mark), [site])
        assert_passthrough(self, resp, self.one_cas_request(w.cas[site],
                                                            opt.mark))
        self.assertEqual(resp.status, 200)
        self.assertIn("14.1", resp.header("MS-ASProtocolVersions"))
        device = "WALK" + os.urandom(6).hex().upper()
        fs = http_request("POST", eftest.eas_target(
            "FolderSync", user=user, device_id=device, path=u.path),
            eftest.eas_headers(user, version="14.1"),
            b"\x03\x01\x6a\x00\x00\x07\x56\x52\x03\x30\x00\x01\x01",
            host=u.netloc)
        m = self.log_mark(w)
        c.send(fs.raw)
        resp = c.read_response()
        self.assertNotEqual(resp.status, 451, "the URL Autodiscover gave "
                            "led to a 451 (X-MS-Location: %s)"
                            % resp.header("X-MS-Location"))
        self.assertEqual(w.where(fs.mark), [site])
        assert_passthrough(self, resp, self.one_cas_request(w.cas[site],
                                                            fs.mark))
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.body, sc.FOLDERSYNC_BODY)
        self.assert_log(self.log_after(w, m, device=device), decision="proxy",
                        reason=reason, site=site, version=141, status=200)
        c.close()
        return fs

    def test_remote_user(self):
        w = self.world("answer")
        self.walk(w, REMOTE, EXT2, "site2", "proxy-loop-guard")
        # the same FolderSync by the organisation's common name is
        # redirected: it was the Autodiscover URL that saved the 451
        fs = http_request("POST", eftest.eas_target(
            "FolderSync", user=REMOTE, device_id="WALKCOMMON01"),
            eftest.eas_headers(REMOTE, version="14.1"), b"\x03\x01")
        resp = w.send(fs)
        self.assertEqual(resp.status, 451)
        self.assertEqual(resp.header("X-MS-Location"), EXT2)

    def test_local_user(self):
        w = self.world("answer")
        self.walk(w, LOCAL, EXT1, "site1", "local")

    def test_user_of_site_without_external_url(self):
        w = self.world("answer")
        self.walk(w, FAR, EXT1, "site3", "proxy-no-external-url")


class ProxiedInAnswerMode(AdCase):
    """What easfront cannot answer goes to the user's site's CAS."""

    def test_outlook_schema_proxied_with_content_length(self):
        w = self.world("answer")
        for user, site in ((REMOTE, "site2"), (LOCAL, "site1"),
                           (FAR, "site3")):
            for te in (False, True):
                with self.subTest(user=user, chunked=te):
                    body = outlook_body(user)
                    req = ad_request(body, user, te_chunked=te)
                    m = self.log_mark(w)
                    resp = w.send(req)
                    rec = self.assert_proxied(w, req, resp, site)
                    self.assertEqual(resp.status, 200)
                    self.assertEqual(rec.body, body)
                    self.assertEqual(rec.headers_named("Content-Length"),
                                     [str(len(body))])
                    self.assertEqual(rec.headers_named("Transfer-Encoding"),
                                     [])
                    self.assertEqual(rec.headers_named("Authorization"),
                                     [basic(user)])
                    rec = self.log_after(w, m, user=user)
                    self.assert_log(rec, decision="proxy",
                                    reason="autodiscover-proxied", site=site,
                                    status=200)

    def test_456_457_pass_through(self):
        w = self.world("answer")
        c = w.d.connect(sni=AD_HOST)
        self.addCleanup(c.close)
        for user, line in (("blocked@contoso.test",
                            "HTTP/1.1 456 Account Blocked"),
                           ("expired@contoso.test",
                            "HTTP/1.1 457 Password Expired")):
            with self.subTest(user=user):
                req = ad_request(outlook_body(user), user)
                c.send(req.raw)
                resp = c.read_response()
                self.assert_proxied(w, req, resp, "site2")
                self.assertEqual(resp.status_line, line)
                self.assertEqual(resp.body, b"")
                if "expired" in user:
                    self.assertEqual(resp.headers_named(
                        "X-MS-Credential-Service-Url"), [sc.CREDENTIAL_URL])
        self.next_works(w, c, REMOTE, EXT2, "a proxied 457")

    def test_other_namespace_proxied(self):
        w = self.world("answer")
        body = mobilesync_body(REMOTE, ns="urn:example:not-autodiscover")
        req = ad_request(body, REMOTE)
        resp = w.send(req)
        rec = self.assert_proxied(w, req, resp, "site2")
        self.assertEqual(rec.body, body)


class AnswerErrors(AdCase):
    """Bad requests in answer mode: the error document, never a 500, never
    a CAS, the connection still good."""

    def check_error(self, w, body, code, what, user=LOCAL, timeout=10):
        c = w.d.connect(sni=AD_HOST, timeout=timeout)
        self.addCleanup(c.close)
        req = ad_request(body, user)
        m = self.log_mark(w)
        t0 = time.monotonic()
        c.send(req.raw)
        resp = c.read_response(timeout=timeout)
        took = time.monotonic() - t0
        self.assert_error_doc(w, req, resp, code)
        rec = self.log_after(w, m, user=user)
        self.assert_log(rec, decision="local",
                        reason="autodiscover-error", status=200)
        self.next_works(w, c, what=what)
        c.close()
        return resp, took

    def test_malformed(self):
        w = self.world("answer")
        good = mobilesync_body(LOCAL)
        cases = [
            ("truncated", good[:-20]),
            ("not XML", b"hello, Exchange"),
            ("empty body", b""),
            ("two root elements", good + b"<Autodiscover/>"),
            ("unclosed tag", good.replace(b"</Request>", b"")),
            ("another root element", good.replace(b"<Autodiscover ",
                                                  b"<Discover ").replace(
                b"</Autodiscover>", b"</Discover>")),
            ("invalid UTF-8", mobilesync_body(LOCAL).replace(
                b"local@", b"l\xff\xfeocal@")),
            ("no EMailAddress", good.replace(
                b"<EMailAddress>local@contoso.test</EMailAddress>", b"")),
            ("no AcceptableResponseSchema", mobilesync_body(LOCAL).replace(
                b"<AcceptableResponseSchema>" + NS_MS_RESP.encode()
                + b"</AcceptableResponseSchema>", b"")),
            ("no Request", ('<?xml version="1.0"?><Autodiscover xmlns="%s">'
                            '</Autodiscover>' % NS_MS_REQ).encode()),
        ]
        for name, body in cases:
            with self.subTest(name):
                self.check_error(w, body, 600, name)

    def test_wrong_acceptable_response_schema_601(self):
        w = self.world("answer")
        for schema in (NS_OL_RESP, NS_MS_REQ, "urn:example:other"):
            with self.subTest(schema=schema):
                resp, _ = self.check_error(
                    w, mobilesync_body(LOCAL, schema=schema), 601,
                    "a 601")

    def test_two_requests_600(self):
        w = self.world("answer")
        for user in (LOCAL, REMOTE):
            with self.subTest(user=user):
                self.check_error(w, mobilesync_body(user, requests=2), 600,
                                 "a 600 for two Request elements", user)

    def test_xxe(self):
        w = self.world("answer")
        with open("/etc/passwd", "rb") as f:
            passwd = f.read()
        first = passwd.splitlines()[0]
        # a fetch by URL would show up at site1's CAS as /xxe-...
        probe = "/xxe-%s" % os.urandom(4).hex()
        http_ent = '<!ENTITY xxe SYSTEM "%s%s">' % (w.cas["site1"].url,
                                                    probe)
        cases = [
            ("file entity", xxe_body(
                '<!ENTITY xxe SYSTEM "file:///etc/passwd">'), NS_MS_REQ),
            ("parameter entity", xxe_body(
                '<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;',
                ref="x@contoso.test"), NS_MS_REQ),
            ("http entity", xxe_body(http_ent), NS_MS_REQ),
            ("external DTD", ('<?xml version="1.0"?>\n<!DOCTYPE Autodiscover'
                              ' SYSTEM "%s%s">\n' % (w.cas["site1"].url,
                                                     probe)).encode()
             + mobilesync_body(LOCAL, prolog=""), NS_MS_REQ),
            # a DTD is refused whatever the namespace: an Outlook request
            # with one is not handed to the CAS either
            ("file entity, Outlook schema", xxe_body(
                '<!ENTITY xxe SYSTEM "file:///etc/passwd">',
                ns=NS_OL_REQ), NS_OL_REQ),
        ]
        for name, body, _ns in cases:
            with self.subTest(name):
                resp, _ = self.check_error(w, body, 600, name)
                self.assertNotIn(first, resp.body)
                self.assertNotIn(b"root:", resp.body)
                self.assertNotIn(b"/bin/", resp.body)
        self.assertEqual(w.cas_saw_path(probe), [],
                         "easfront fetched an external entity")
        with open(w.d.access_path, "rb") as f:
            self.assertNotIn(b"root:", f.read())

    def test_billion_laughs(self):
        w = self.world("answer")
        body = billion_laughs_body()
        self.assertLess(len(body), 2048)
        # warm up the answer path before measuring
        self.check_error(w, mobilesync_body(LOCAL, requests=2), 600,
                         "a warm-up")
        rss0, hwm0 = w.d.rss_kib(), w.d.hwm_kib()
        for i in range(5):
            with self.subTest(round=i):
                _, took = self.check_error(w, body, 600, "billion laughs",
                                           timeout=5)
                self.assertLess(took, 2.0, "billion laughs took %.2f s"
                                % took)
        rss1, hwm1 = w.d.rss_kib(), w.d.hwm_kib()
        print("\nbillion laughs: RSS %d -> %d KiB, HWM %d -> %d KiB"
              % (rss0, rss1, hwm0, hwm1))
        self.assertLess(hwm1 - hwm0, 16 * 1024, "peak RSS jumped by %d KiB"
                        % (hwm1 - hwm0))
        self.assertLess(rss1 - rss0, 16 * 1024)
        w.d.assert_alive()


class BodyLimit(AdCase):
    """At most 64 KiB of Autodiscover body in answer mode; more is a 413
    from easfront itself, never a CAS contact."""

    def assert_413(self, w, req, resp):
        self.assert_own_error(resp, (413,))
        self.assertEqual(w.where(req.mark), [])

    def after_413(self, w, c, what):
        """The connection either closes (after a Connection: close) or
        serves the next request properly: never the rest of the body read
        as a request."""
        req = mobilesync(LOCAL)
        try:
            c.send(req.raw)
            resp = c.read_response(timeout=5)
        except (OSError, ValueError):
            return "closed"
        self.assert_settings(w, req, resp, EXT1, LOCAL)
        return "kept"

    def test_limit_exactly(self):
        w = self.world("answer")
        c = w.d.connect(sni=AD_HOST)
        self.addCleanup(c.close)
        for te in (False, True):
            with self.subTest(chunked=te):
                body = padded_body(REMOTE, AD_MAX)
                self.assertEqual(len(body), AD_MAX)
                req = ad_request(body, REMOTE, te_chunked=te)
                c.send(req.raw)
                self.assert_settings(w, req, c.read_response(), EXT2,
                                     REMOTE)

    def test_announced_too_large(self):
        w = self.world("answer")
        body = padded_body(LOCAL, AD_MAX + 1)
        c = w.d.connect(sni=AD_HOST)
        self.addCleanup(c.close)
        req = ad_request(body, LOCAL)
        m = self.log_mark(w)
        c.send(req.raw)
        resp = c.read_response()
        self.assert_413(w, req, resp)
        self.assert_log(self.log_after(w, m, status=413), status=413)
        print("\nafter an announced 413 with its body: %s"
              % self.after_413(w, c, "a 413"))

    def test_announced_too_large_answered_before_the_body(self):
        w = self.world("answer")
        c = w.d.connect(sni=AD_HOST)
        self.addCleanup(c.close)
        req = http_request("POST", AD_PATH, [
            ("Authorization", basic(LOCAL)), ("Content-Type", "text/xml")],
            host=AD_HOST, content_length=1000000)
        c.send(req.raw)
        t0 = time.monotonic()
        resp = c.read_response(timeout=5)
        self.assertLess(time.monotonic() - t0, 3)
        self.assert_413(w, req, resp)
        c.close()

    def test_chunked_too_large(self):
        w = self.world("answer")
        for size in (AD_MAX + 1, 200 * 1024):
            with self.subTest(size=size):
                c = w.d.connect(sni=AD_HOST)
                self.addCleanup(c.close)
                req = ad_request(padded_body(LOCAL, size), LOCAL,
                                 te_chunked=True)
                m = self.log_mark(w)
                try:
                    c.send(req.raw)
                except OSError:
                    # easfront may close once it has seen too much (after
                    # its 413): the answer must still be readable
                    pass
                resp = c.read_response()
                self.assert_413(w, req, resp)
                self.assert_log(self.log_after(w, m, status=413), status=413)
                if resp.header("Connection") == "close":
                    self.assertTrue(c.closed_by_peer(5), "Connection: close"
                                    " but the connection stayed open")
                else:
                    self.after_413(w, c, "a chunked 413")
                c.close()
        # the daemon is fine for the next client
        req = mobilesync(LOCAL)
        self.assert_settings(w, req, w.send(req), EXT1, LOCAL)


if __name__ == "__main__":
    unittest.main()
