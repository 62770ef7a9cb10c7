"""Site-aware routing (issue 3): whose mailbox a request is for, which site
holds it, and what easfront does about it -- proxy to the right site's CAS,
451 to the mailbox site's external URL, fall back while a site is down,
refuse -- checked on the wire, on every stand-in CAS's record and in the
access log.

Each case builds its own world (World): site1 is this front end's site with a
plain-HTTP stand-in CAS, site2 a remote site with an external URL and a
stand-in CAS over TLS (certificate from the test CA), and where a case needs
it site3, a remote site without external URL; a site map TSV, a config and a
daemon of its own. The users of the map (MAP_LINES) say what they test:
local@ lives in site1, remote@ in site2, nobody@ is unknown, and the
stand-in's throttled@/expiring@/blocked@/expired@ live in site2.
"""

import base64
import json
import os
import re
import threading
import time
import unittest
import uuid

import eftest
import standin_cas as sc
from eftest import FAST_HEALTH, SNI, assert_passthrough, basic, \
    http_request

EXT1 = "https://site1-eas.contoso.test/Microsoft-Server-ActiveSync"
# Mixed case and a port: X-MS-Location must carry this text byte for byte.
EXT2 = "https://Site2-EAS.contoso.test:8443/Microsoft-Server-ActiveSync"
HOST1 = "site1-eas.contoso.test"
HOST2 = "site2-eas.contoso.test"
EAS_PATH = "/Microsoft-Server-ActiveSync"
PROXY_PATH2 = "/Microsoft-Server-ActiveSync/Proxy"

VERSIONS = ["2.5", "12.0", "12.1", "14.0", "14.1", "16.0", "16.1"]
REDIRECTING = {"14.0", "14.1", "16.0", "16.1"}
VERSION_CODE = {"2.5": 25, "12.0": 120, "12.1": 121, "14.0": 140,
                "14.1": 141, "16.0": 160, "16.1": 161}
# MS-ASHTTP 2.2.1.1.1.1: only these may use the base64 query (EAS.md 1.3).
B64_VERSIONS = ["12.1", "14.0", "14.1", "16.0", "16.1"]
CMD_CODE = {name: code for code, name in sc.COMMAND_CODES.items()}
SYNC_BODY = sc.wbxml_encode((sc.PAGE_AIRSYNC, 0x05, [
    (sc.PAGE_AIRSYNC, 0x1C, None)]))
UA = "Apple-iPhone9C1/1602.92"


# --------------------------------------------------------------------------
# the site map

def map_lines(move_site="site1", site3=False, extra=()):
    """The site map as a list of lines (no line ends)."""
    lines = [
        "# easfront routing tests\twhat\tkey\tvalue",
        "database\tDB01\tsite1",
        "database\tDB02\tsite2",
        "database\tDBMOVE\t%s" % move_site,
        "user\tlocal@contoso.test\tDB01",
        "user\tremote@contoso.test\tDB02",
        "user\tjdoe@contoso.test\tDB02",
        "user\tcarol\tDB02",
        "user\tmover@contoso.test\tDBMOVE",
        "user\tthrottled@contoso.test\tDB02",
        "user\texpiring@contoso.test\tDB02",
        "user\tblocked@contoso.test\tDB02",
        "user\texpired@contoso.test\tDB02",
        "domain\tfabrikam.test\tsite2",
    ]
    if site3:
        lines.append("user\tfar@contoso.test\tsite3")
    return lines + list(extra)


def line_of(lines, text):
    """1-based number of the line equal to text."""
    return lines.index(text) + 1


# --------------------------------------------------------------------------
# requests

def eas_b64_query(version, cmd, device_id, device_type="iPhone",
                  locale=0x0409, policy_key=None, params=()):
    """The base64 query value of MS-ASHTTP 2.2.1.1.1.1 (EAS.md 1.3):
    version byte, command code, locale (LE16), device id, policy key (LE32,
    absent when None), device type, then (tag, value) parameters."""
    def lv(b):
        if isinstance(b, str):
            b = b.encode("utf-8")
        assert len(b) < 256
        return bytes([len(b)]) + b
    raw = bytes([version, cmd]) + locale.to_bytes(2, "little")
    raw += lv(device_id)
    raw += (b"\x00" if policy_key is None
            else b"\x04" + policy_key.to_bytes(4, "little"))
    raw += lv(device_type)
    for tag, value in params:
        raw += bytes([tag]) + lv(value)
    return base64.b64encode(raw).decode("ascii")


def new_device():
    return "RT" + uuid.uuid4().hex[:14].upper()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt(claims):
    """An (unsigned for our purposes) JWT carrying claims."""
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(dict(
        {"aud": "https://outlook.office365.com", "iss": "https://sts.test/",
         "exp": 4102444800}, **claims)).encode())
    return "Bearer %s.%s.%s" % (head, body, b64url(os.urandom(64)))


class EasReq:
    """One EAS request: .req (eftest.Req), .device, .version, .form,
    .query."""

    def __init__(self, cmd, user, version=None, form="plain", auth="basic",
                 query_user=None, host=SNI, body=None, method="POST",
                 path=EAS_PATH, b64_version=None, extra=()):
        """auth: "basic" (Basic for user), None (no Authorization) or a
        whole Authorization value; query_user: the User= value or User tag
        (default: user; "" leaves it out); form: "plain" or "base64" (the
        version then goes in the first byte, b64_version overriding it)."""
        self.device = new_device()
        self.version = version
        self.form = form
        self.user = user
        quser = user if query_user is None else query_user
        headers = []
        if auth == "basic":
            headers.append(("Authorization", basic(user)))
        elif auth:
            headers.append(("Authorization", auth))
        if form == "plain":
            q = "Cmd=%s" % cmd
            if quser:
                q += "&User=" + quser.replace("\\", "%5C").replace(
                    "@", "%40")
            q += "&DeviceId=%s&DeviceType=iPhone" % self.device
            if version:
                headers.append(("MS-ASProtocolVersion", version))
        else:
            vb = b64_version if b64_version is not None else \
                VERSION_CODE[version]
            params = [(8, quser)] if quser else []
            q = eas_b64_query(vb, CMD_CODE[cmd], self.device,
                              policy_key=1307199584, params=params)
        self.query = q
        headers += [("User-Agent", UA),
                    ("Content-Type", "application/vnd.ms-sync.wbxml")]
        headers += list(extra)
        if body is None:
            body = SYNC_BODY if method == "POST" else b""
        self.req = http_request(method, path + "?" + q, headers, body,
                                host=host)

    @property
    def raw(self):
        return self.req.raw

    @property
    def mark(self):
        return self.req.mark


def options(user=None, host=SNI, auth="basic"):
    h = []
    if user and auth == "basic":
        h.append(("Authorization", basic(user)))
    elif auth and auth != "basic":
        h.append(("Authorization", auth))
    h.append(("User-Agent", UA))
    return http_request("OPTIONS", EAS_PATH, h, host=host)


# --------------------------------------------------------------------------
# NTLM messages of the client side (MS-NLMP 2.2.1.1 and 2.2.1.3)

def ntlm_negotiate():
    """A type 1 (NEGOTIATE) message, no domain or workstation."""
    flags = 0x00000001 | 0x00000004 | 0x00000200 | 0x00008000
    return (sc.NTLM_SIGNATURE + (1).to_bytes(4, "little")
            + flags.to_bytes(4, "little") + b"\x00" * 16)


def ntlm_authenticate(domain, user, challenge, workstation="PHONE"):
    """A type 3 (AUTHENTICATE) message, Unicode, whose NT response is the
    stand-in's proof for challenge."""
    fields = [os.urandom(24),                           # LM response
              sc.ntlm_proof(challenge, user),           # NT response
              domain.encode("utf-16-le"),
              user.encode("utf-16-le"),
              workstation.encode("utf-16-le"),
              b""]                                      # session key
    flags = 0x00000001 | 0x00000200 | 0x00008000
    head_len = 64
    head = sc.NTLM_SIGNATURE + (3).to_bytes(4, "little")
    payload = b""
    for f in fields:
        head += (len(f).to_bytes(2, "little") * 2
                 + (head_len + len(payload)).to_bytes(4, "little"))
        payload += f
    head += flags.to_bytes(4, "little")
    assert len(head) == head_len
    return head + payload


def ntlm_challenge_of(resp):
    """The server challenge of a 401's WWW-Authenticate: NTLM <type 2>."""
    for v in resp.headers_named("WWW-Authenticate"):
        scheme, _, tok = v.partition(" ")
        if scheme.lower() in ("ntlm", "negotiate") and tok.strip():
            msg = base64.b64decode(tok.strip())
            if msg[:8] == sc.NTLM_SIGNATURE and msg[8] == 2:
                return msg[24:32]
    raise AssertionError("no NTLM challenge in %r" % resp.headers)


# --------------------------------------------------------------------------
# the world of one case

class World(eftest.SitesWorld):
    """site1 (own; plain CAS unless tls_own), site2 (TLS CAS, external URL
    EXT2; plain when tls_own), optionally site3 (plain CAS, no external URL),
    the site map (map_lines() unless lines) and a daemon: eftest.SitesWorld,
    whose other keywords (default_site, site_opts, health, timeouts,
    workers, start: False writes only the config, ...) pass through."""

    def __init__(self, tc, site3=False, tls_own=False, lines=None, **kw):
        super().__init__(
            tc, map_lines(site3=site3) if lines is None else lines,
            sites=("site1", "site2", "site3")[:3 if site3 else 2],
            tls=("site1",) if tls_own else ("site2",),
            external_urls={"site1": EXT1, "site2": EXT2}, **kw)


class RoutingCase(eftest.EfTestCase):

    def world(self, **kw):
        return World(self, **kw)

    def assert_proxied(self, w, req, resp, site, path=EAS_PATH, query=None):
        """resp came from site's CAS, unchanged; no other CAS saw req; the
        CAS got path and the query as the client sent it."""
        self.assertNotEqual(resp.status, 451, "redirected instead of "
                            "proxied to %s: %s X-MS-Location: %s" % (
                                site, resp.status_line,
                                resp.header("X-MS-Location")))
        self.assertEqual(w.where(req.mark), [site],
                         "wrong CAS(es) for a request routed to %s (%s)"
                         % (site, resp.status_line))
        rec = self.one_cas_request(w.cas[site], req.mark)
        assert_passthrough(self, resp, rec)
        self.assertEqual(rec.path, path)
        if query is not None:
            self.assertEqual(rec.query, query, "the query was changed")
        return rec

    def assert_redirected(self, w, req, resp, url):
        """A 451 from easfront itself: X-MS-Location exactly url, Cache-
        Control private, Content-Length 0, no body, no CAS contact."""
        self.assertEqual(resp.status, 451, "expected a 451 to %s, got %s"
                         % (url, resp.status_line))
        self.assertEqual(resp.headers_named("X-MS-Location"), [url])
        self.assert_own_headers(resp, cache_control="private")
        self.assertEqual(resp.headers_named("Content-Length"), ["0"])
        self.assertIsNone(resp.header("Transfer-Encoding"))
        self.assertEqual(resp.body, b"")
        self.assertIsNone(resp.header("X-MS-ASThrottle"))
        self.assertEqual(w.where(req.mark), [], "a redirected request "
                         "reached a CAS")

    def assert_log(self, w, device, **want):
        rec = w.log_entry(device)
        got = {k: rec.get(k) for k in want}
        self.assertEqual(got, want, "access-log line %r" % rec)
        return rec

    def expect(self, home, version, own="site1"):
        """(decision, site, reason) for a mailbox in home at version."""
        if home == own:
            return "proxy", home, "local"
        if version in REDIRECTING:
            return "redirect", home, "redirect"
        if version in ("2.5", "12.0", "12.1"):
            return "proxy", home, "proxy-legacy-version"
        return "proxy", home, "proxy-unknown-version"


# --------------------------------------------------------------------------

class Encoder(unittest.TestCase):
    """The test's own base64 query encoder against the vectors of EAS.md 1.7
    (so the matrix below sends what the spec says)."""

    def test_eas_md_vectors(self):
        self.assertEqual(eas_b64_query(140, 0, "v140Device", "SmartPhone"),
                         "jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l")
        self.assertEqual(eas_b64_query(
            141, 3, bytes.fromhex("6f24cad599a5bf1a690246b8c2691695"),
            "WP8", policy_key=0xEB042D59,
            params=[(1, "5"), (3, "5:12"), (7, b"\x01"),
                    (8, "jdoe@contoso.com")]),
            "jQMJBBBvJMrVmaW/GmkCRrjCaRaVBFktBOsDV1A4AQE1AwQ1OjEyBwEBCBBqZG9l"
            "QGNvbnRvc28uY29t")
        self.assertEqual(eas_b64_query(121, 18, "Appl9C8A1B2C3D", "iPhone",
                                       locale=0x0407,
                                       params=[(8, "CONTOSO\\jdoe")]),
                         "eRIHBA5BcHBsOUM4QTFCMkMzRAAGaVBob25lCAxDT05UT1NPXGpk"
                         "b2U=")
        self.assertEqual(eas_b64_query(161, 19, "v161Device", "SmartPhone",
                                       policy_key=0, params=[(7, b"\x02")]),
                         "oRMJBAp2MTYxRGV2aWNlBAAAAAAKU21hcnRQaG9uZQcBAg==")


class Matrix(RoutingCase):
    """Versions x query forms x local / remote / unknown users."""

    def forms(self):
        """(version, form, b64_version) of every request of a row: each
        version plain, the base64-capable ones base64 too, no version, an
        unknown version, and a base64 query with the 2.5 byte (2.5 may not
        use base64: unknown, so proxied)."""
        out = [(v, "plain", None) for v in VERSIONS]
        out += [(v, "base64", None) for v in B64_VERSIONS]
        out += [(None, "plain", None), ("15.0", "plain", None),
                ("2.5", "base64", 25)]
        return out

    def run_row(self, w, user, home, url_of):
        for version, form, b64v in self.forms():
            with self.subTest(user=user, version=version, form=form,
                              b64_byte=b64v):
                r = EasReq("Sync", user, version, form, b64_version=b64v)
                log_version = 0 if version == "15.0" or b64v == 25 \
                    else VERSION_CODE.get(version, 0)
                decision, site, reason = self.expect(
                    home, "unknown" if log_version == 0 else version)
                c = w.d.connect()
                self.addCleanup(c.close)
                c.send(r.raw)
                resp = c.read_response()
                if decision == "redirect":
                    self.assert_redirected(w, r.req, resp, url_of[home])
                    # the connection stays open for the next request
                    f = EasReq("FolderSync", user, "12.1")
                    c.send(f.raw)
                    try:
                        nxt = c.read_response()
                    except (OSError, ValueError) as e:
                        self.fail("no answer on the connection after a 451 "
                                  "(%r): it must stay open" % e)
                    self.assert_proxied(w, f.req, nxt, home)
                    status = 451
                else:
                    self.assert_proxied(w, r.req, resp, site, query=r.query)
                    self.assertEqual(resp.status, 200)
                    status = 200
                c.close()
                self.assert_log(w, r.device, decision=decision,
                                reason=reason, site=site,
                                version=log_version, status=status,
                                user=user)

    def test_default_site_is_own_site(self):
        w = self.world()
        urls = {"site2": EXT2}
        self.run_row(w, "local@contoso.test", "site1", urls)
        self.run_row(w, "remote@contoso.test", "site2", urls)
        self.run_row(w, "nobody@contoso.test", "site1", urls)

    def test_default_site_is_remote(self):
        w = self.world(default_site="site2")
        urls = {"site2": EXT2}
        self.run_row(w, "nobody@contoso.test", "site2", urls)
        # a user the map knows keeps its own site
        for user, home in (("local@contoso.test", "site1"),
                           ("remote@contoso.test", "site2")):
            with self.subTest(user=user):
                r = EasReq("Sync", user, "14.1")
                resp = w.send(r)
                if home == "site1":
                    self.assert_proxied(w, r.req, resp, "site1")
                else:
                    self.assert_redirected(w, r.req, resp, EXT2)
        # no user at all (the first, anonymous OPTIONS): default_site, and
        # without a version proxied there
        req = options()
        resp = w.send(req)
        self.assert_proxied(w, req, resp, "site2")
        self.assertEqual(resp.status, 401)


class OneConnection(RoutingCase):
    """Routing is per request: one keep-alive connection may see 451s and
    requests for different sites, in order."""

    def test_451_with_request_body_keeps_connection(self):
        w = self.world()
        remote = "remote@contoso.test"
        big = os.urandom(300000)
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (
            os.urandom(5000), os.urandom(70000), b"end")) + b"0\r\n\r\n"
        c = w.d.connect()
        self.addCleanup(c.close)
        for name, r in (
                ("Content-Length body", EasReq(
                    "SendMail", remote, "14.1", body=big,
                    extra=[("X-Body", "cl")])),
                ("chunked body", EasReq(
                    "SendMail", remote, "16.1", body=b"",
                    extra=[("Transfer-Encoding", "chunked")]))):
            with self.subTest(name):
                raw = r.raw + (chunked if name == "chunked body" else b"")
                c.send(raw)
                resp = c.read_response(timeout=15)
                self.assert_redirected(w, r.req, resp, EXT2)
                f = EasReq("FolderSync", remote, "12.1")
                c.send(f.raw)
                try:
                    nxt = c.read_response()
                except (OSError, ValueError) as e:
                    self.fail("no answer after a 451 to a request with a "
                              "%s (%r)" % (name, e))
                rec = self.assert_proxied(w, f.req, nxt, "site2")
                self.assertEqual(rec.body, SYNC_BODY, "the redirected "
                                 "request's body leaked into the next one")

    def test_pipelined_requests_for_different_sites(self):
        w = self.world()
        reqs = [EasReq("Sync", "remote@contoso.test", "14.1"),
                EasReq("FolderSync", "local@contoso.test", "14.1"),
                EasReq("FolderSync", "remote@contoso.test", "12.1"),
                EasReq("Sync", "nobody@contoso.test", "16.1", "base64"),
                EasReq("Sync", "remote@contoso.test", "16.0", "base64"),
                EasReq("FolderSync", "remote@contoso.test", "2.5")]
        want = ["redirect", "site1", "site2", "site1", "redirect", "site2"]
        c = w.d.connect()
        self.addCleanup(c.close)
        c.send(b"".join(r.raw for r in reqs))
        for i, (r, where) in enumerate(zip(reqs, want)):
            with self.subTest(i=i, where=where):
                resp = c.read_response()
                if where == "redirect":
                    self.assert_redirected(w, r.req, resp, EXT2)
                else:
                    self.assert_proxied(w, r.req, resp, where, query=r.query)
                    self.assertEqual(resp.status, 200)


class Credentials(RoutingCase):
    """The credentials name the user; User= only without credentials."""

    def check(self, w, r, home, version="14.1"):
        resp = w.send(r)
        if home == "site1" or version not in REDIRECTING:
            return self.assert_proxied(w, r.req, resp, home)
        self.assert_redirected(w, r.req, resp, EXT2)
        return None

    def test_basic_forms(self):
        w = self.world()
        cases = [
            ("CONTOSO\\jdoe", "site2"),      # NetBIOS -> jdoe@contoso.test
            ("contoso\\JDoe", "site2"),      # NetBIOS name and user any case
            ("jdoe@contoso.test", "site2"),  # UPN
            ("JDoe@Contoso.TEST", "site2"),
            ("carol", "site2"),              # bare user, map line "carol"
            ("x.y@fabrikam.test", "site2"),  # domain line
            ("OTHER\\jdoe", "site1"),        # unknown NetBIOS: not jdoe@
            ("local@contoso.test", "site1"),
        ]
        for user, home in cases:
            with self.subTest(user=user):
                r = EasReq("Sync", user, "14.1", query_user="")
                self.check(w, r, home)
                self.assert_log(w, r.device, user=user, site=home)
        # proxied at 12.1, the CAS gets the credentials unchanged
        r = EasReq("FolderSync", "CONTOSO\\jdoe", "12.1")
        rec = self.check(w, r, "site2", "12.1")
        self.assertEqual(rec.headers_named("Authorization"),
                         [basic("CONTOSO\\jdoe")])

    def test_bearer_jwt_claims(self):
        w = self.world()
        for claim in ("upn", "preferred_username", "unique_name", "email"):
            with self.subTest(claim=claim):
                r = EasReq("Sync", "remote@contoso.test", "16.1",
                           auth=jwt({claim: "remote@contoso.test",
                                     "name": "Remote User"}),
                           query_user="")
                self.check(w, r, "site2", "16.1")
        with self.subTest("upn before preferred_username"):
            r = EasReq("Sync", "local@contoso.test", "16.1",
                       auth=jwt({"preferred_username": "remote@contoso.test",
                                 "upn": "local@contoso.test"}),
                       query_user="")
            self.check(w, r, "site1", "16.1")
        with self.subTest("proxied at 12.1 with the token unchanged"):
            tok = jwt({"upn": "jdoe@contoso.test"})
            r = EasReq("FolderSync", "jdoe@contoso.test", "12.1", auth=tok)
            rec = self.check(w, r, "site2", "12.1")
            self.assertEqual(rec.headers_named("Authorization"), [tok])

    def test_user_parameter_only_without_credentials(self):
        w = self.world()
        remote = "remote@contoso.test"
        cases = [
            # (name, request, home)
            ("no credentials, User=", EasReq(
                "Sync", remote, "14.1", auth=None), "site2"),
            ("no credentials, User=DOMAIN%5Cuser", EasReq(
                "Sync", "CONTOSO\\jdoe", "14.1", auth=None), "site2"),
            ("no credentials, base64 User tag", EasReq(
                "Sync", remote, "14.1", form="base64", auth=None), "site2"),
            ("Basic local, User= remote", EasReq(
                "Sync", "local@contoso.test", "14.1", query_user=remote),
             "site1"),
            ("Basic local, base64 User tag remote", EasReq(
                "Sync", "local@contoso.test", "14.1", form="base64",
                query_user=remote), "site1"),
            ("Bearer local, User= remote", EasReq(
                "Sync", "local@contoso.test", "14.1",
                auth=jwt({"upn": "local@contoso.test"}), query_user=remote),
             "site1"),
            ("unusable Basic, User= remote", EasReq(
                "Sync", "x", "14.1", auth="Basic !!!!", query_user=remote),
             "site1"),
            ("no credentials, no User", EasReq(
                "Sync", "", "14.1", auth=None), "site1"),
        ]
        for name, r, home in cases:
            with self.subTest(name):
                self.check(w, r, home)


class NtlmPinning(RoutingCase):
    """NTLM and Negotiate authenticate the connection: each client
    connection keeps its own upstream connection, never shared, never
    pooled. The stand-in only accepts a type 3 on the upstream connection
    that got the matching challenge, and serves later requests without
    Authorization only on an authenticated connection."""

    def open_client(self, w):
        c = w.d.connect()
        self.addCleanup(c.close)
        c.marks = []
        return c

    def exchange(self, w, c, req, status):
        c.send(req.raw)
        resp = c.read_response()
        c.marks.append(req.mark)
        rec = self.one_cas_request(w.cas["site1"], req.mark)
        assert_passthrough(self, resp, rec)
        self.assertEqual(resp.status, status, "NTLM handshake broken: %s "
                         "(the CAS had it on its connection %d, as %r)"
                         % (resp.status_line, rec.conn_id, rec.user))
        return resp, rec

    def type1(self, w, c, scheme="NTLM"):
        req = options(auth=scheme + " " + base64.b64encode(
            ntlm_negotiate()).decode())
        resp, _ = self.exchange(w, c, req, 401)
        return ntlm_challenge_of(resp)

    def type3(self, w, c, user, challenge, scheme="NTLM"):
        auth = scheme + " " + base64.b64encode(ntlm_authenticate(
            "CONTOSO", user, challenge)).decode()
        _, rec = self.exchange(w, c, options(auth=auth), 200)
        self.assertEqual(rec.user, "CONTOSO\\" + user)

    def anonymous(self, w, c, user, cmd="FolderSync"):
        """A request without Authorization on an authenticated connection."""
        r = EasReq(cmd, "", "14.1", auth=None, query_user="")
        _, rec = self.exchange(w, c, r.req, 200)
        self.assertEqual(rec.user, "CONTOSO\\" + user)

    def upstream_of(self, cas, c):
        conns = {r.conn_id for m in c.marks for r in cas.find(m)}
        self.assertEqual(len(conns), 1, "one client connection's requests "
                         "went over several upstream connections: %s"
                         % conns)
        return conns.pop()

    def run_pinning(self, tls_own):
        w = self.world(tls_own=tls_own, workers=1)
        cas = w.cas["site1"]
        cas.ntlm = True
        a, b, e = (self.open_client(w) for _ in range(3))
        # A speaks NTLM, B Negotiate, interleaved
        chal_a = self.type1(w, a)
        chal_b = self.type1(w, b, "Negotiate")
        self.type3(w, a, "alice", chal_a)
        self.type3(w, b, "bob", chal_b, "Negotiate")
        # E starts without credentials: the CAS's NTLM challenge pins it
        r = EasReq("FolderSync", "", "14.1", auth=None, query_user="")
        resp, _ = self.exchange(w, e, r.req, 401)
        self.assertIn("NTLM", resp.headers_named("WWW-Authenticate"))
        chal_e = self.type1(w, e)
        self.type3(w, e, "erin", chal_e)
        # authenticated connections need no Authorization from now on
        for _ in range(3):
            self.anonymous(w, a, "alice")
            self.anonymous(w, b, "bob", "Sync")
            self.anonymous(w, e, "erin")
        xa, xb, xe = (self.upstream_of(cas, c) for c in (a, b, e))
        self.assertEqual(len({xa, xb, xe}), 3, "NTLM clients share an "
                         "upstream connection: %r" % ([xa, xb, xe],))
        # nobody else's request on a pinned connection, while they idle
        r = EasReq("FolderSync", "local@contoso.test", "14.1")
        rec = self.assert_proxied(w, r.req, w.send(r), "site1")
        self.assertNotIn(rec.conn_id, (xa, xb, xe), "a Basic client was "
                         "given an NTLM-pinned upstream connection")
        self.assertEqual(rec.user, "local@contoso.test")
        for x, c in ((xa, a), (xb, b), (xe, e)):
            others = [q for q in cas.client_requests() if q.conn_id == x
                      and q.header("X-Test-Mark") not in c.marks]
            self.assertEqual(others, [], "foreign requests on the pinned "
                             "upstream connection %d" % x)
        # A goes: its upstream connection goes with it, never pooled
        a.close()
        self.assertTrue(eftest.wait_until(lambda: xa in cas.closed, 5),
                        "the pinned upstream connection outlived its "
                        "client connection")
        for _ in range(3):
            r = EasReq("FolderSync", "local@contoso.test", "14.1")
            rec = self.assert_proxied(w, r.req, w.send(r), "site1")
            self.assertNotIn(rec.conn_id, (xa, xb, xe))
        # B and E still have their own
        self.anonymous(w, b, "bob")
        self.anonymous(w, e, "erin")
        self.assertEqual(self.upstream_of(cas, b), xb)
        self.assertEqual(self.upstream_of(cas, e), xe)

    def test_interleaved_handshakes_plain_cas(self):
        self.run_pinning(tls_own=False)

    def test_interleaved_handshakes_tls_cas(self):
        self.run_pinning(tls_own=True)


class SpecialRoutes(RoutingCase):

    def test_loop_guard(self):
        w = self.world()
        remote = "remote@contoso.test"
        port = w.d.port
        for host, sni in ((HOST2, HOST2),
                          ("%s:%d" % (HOST2, port), HOST2),
                          ("SITE2-EAS.Contoso.Test", HOST2),
                          (HOST2, None)):       # no SNI: the Host counts
            with self.subTest(host=host, sni=sni):
                for version, form in (("14.1", "plain"), ("16.1", "base64"),
                                      ("12.1", "plain")):
                    r = EasReq("Sync", remote, version, form, host=host)
                    if sni is None:
                        c = eftest.tls_connect(
                            port, sni=None,
                            ctx=eftest.client_context(verify=False))
                        try:
                            c.send(r.raw)
                            resp = c.read_response()
                        finally:
                            c.close()
                    else:
                        resp = w.send(r, sni=sni)
                    self.assert_proxied(w, r.req, resp, "site2",
                                        query=r.query)
                    self.assertEqual(resp.status, 200)
                    if version != "12.1":
                        self.assert_log(w, r.device, decision="proxy",
                                        reason="proxy-loop-guard",
                                        site="site2")
        # the guard is about the target site's own name only
        for host in (SNI, HOST1):
            with self.subTest(host=host):
                r = EasReq("Sync", remote, "14.1", host=host)
                self.assert_redirected(w, r.req, w.send(r), EXT2)
        # a local user who came in by site2's name is still local
        r = EasReq("Sync", "local@contoso.test", "14.1", host=HOST2)
        self.assert_proxied(w, r.req, w.send(r), "site1")

    def test_site_without_external_url(self):
        w = self.world(site3=True)
        for version, form in (("14.0", "plain"), ("14.1", "base64"),
                              ("16.1", "plain"), ("16.1", "base64"),
                              ("12.1", "plain"), ("2.5", "plain")):
            with self.subTest(version=version, form=form):
                r = EasReq("Sync", "far@contoso.test", version, form)
                resp = w.send(r)
                self.assert_proxied(w, r.req, resp, "site3", query=r.query)
                self.assertEqual(resp.status, 200)
                if version in REDIRECTING:
                    self.assert_log(w, r.device, decision="proxy",
                                    reason="proxy-no-external-url",
                                    site="site3")

    def test_proxy_path_override(self):
        w = self.world(site_opts={"site2": {"proxy_path": PROXY_PATH2}})
        remote = "remote@contoso.test"
        for form in ("plain", "base64"):
            with self.subTest(form=form):
                r = EasReq("Sync", remote, "12.1", form)
                rec = self.assert_proxied(w, r.req, w.send(r), "site2",
                                          path=PROXY_PATH2, query=r.query)
                self.assertEqual(rec.raw_head.split(b"\r\n", 1)[0],
                                 ("POST %s?%s HTTP/1.1" % (
                                     PROXY_PATH2, r.query)).encode())
        with self.subTest("any case of the virtual directory"):
            r = EasReq("FolderSync", remote, "12.1",
                       path="/microsoft-server-activesync")
            self.assert_proxied(w, r.req, w.send(r), "site2",
                                path=PROXY_PATH2, query=r.query)
        with self.subTest("OPTIONS"):
            req = options(remote)
            rec = self.assert_proxied(w, req, w.send(req), "site2",
                                      path=PROXY_PATH2)
            self.assertEqual(rec.target, PROXY_PATH2)
        with self.subTest("Autodiscover keeps its path"):
            req = eftest.autodiscover_request(remote)
            self.assert_proxied(w, req, w.send(req), "site2",
                                path="/autodiscover/autodiscover.xml")
        with self.subTest("site1 keeps the default path"):
            r = EasReq("Sync", "local@contoso.test", "14.1")
            self.assert_proxied(w, r.req, w.send(r), "site1",
                                query=r.query)


class RemotePassThrough(RoutingCase):
    """What a remote site's CAS answers reaches the client unchanged."""

    def test_remote_throttle_and_expiry_headers(self):
        w = self.world()
        for form in ("plain", "base64"):
            with self.subTest(form=form):
                r = EasReq("Sync", "throttled@contoso.test", "12.1", form)
                resp = w.send(r)
                self.assert_proxied(w, r.req, resp, "site2")
                self.assertEqual(resp.status_line,
                                 "HTTP/1.1 503 Service Unavailable")
                self.assertEqual(resp.header("X-MS-ASThrottle"),
                                 "CommandFrequency")
                self.assertEqual(resp.header("Retry-After"), "30")
                r = EasReq("FolderSync", "expiring@contoso.test", "12.1",
                           form)
                resp = w.send(r)
                self.assert_proxied(w, r.req, resp, "site2")
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.header("X-MS-Credentials-Expire"), "3")
                self.assertEqual(resp.header("X-MS-Credential-Service-Url"),
                                 sc.CREDENTIAL_URL)
                self.assertEqual(resp.body, sc.FOLDERSYNC_BODY)

    def test_remote_autodiscover_456_457(self):
        w = self.world()
        for user, status in (("blocked@contoso.test",
                              "HTTP/1.1 456 Account Blocked"),
                             ("expired@contoso.test",
                              "HTTP/1.1 457 Password Expired")):
            with self.subTest(user=user):
                req = eftest.autodiscover_request(user)
                resp = w.send(req)
                self.assert_proxied(w, req, resp, "site2",
                                    path="/autodiscover/autodiscover.xml")
                self.assertEqual(resp.status_line, status)
        self.assertEqual(resp.header("X-MS-Credential-Service-Url"),
                         sc.CREDENTIAL_URL)


class Reload(RoutingCase):
    """SIGHUP: a moved database takes effect for the next request; requests
    in flight finish where they started; a broken map is refused."""

    HEARTBEAT = 20

    def test_database_moves_while_ping_held(self):
        w = self.world()
        mover = "mover@contoso.test"
        ping = EasReq("Ping", mover, "14.1",
                      body=sc.ping_request(self.HEARTBEAT))
        result = {}
        conn = w.d.connect(timeout=self.HEARTBEAT + 30)
        self.addCleanup(conn.close)

        def do_ping():
            t0 = time.monotonic()
            try:
                conn.send(ping.raw)
                result["resp"] = conn.read_response(
                    timeout=self.HEARTBEAT + 30)
            except Exception as e:            # reported below
                result["error"] = e
            result["took"] = time.monotonic() - t0

        t = threading.Thread(target=do_ping, daemon=True)
        t.start()
        self.addCleanup(t.join, 5)
        self.assertTrue(w.cas["site1"].wait_for(lambda rs: [
            r for r in rs if r.header("X-Test-Mark") == ping.mark
            and r.complete], 5), "the Ping never reached site1's CAS")
        # DBMOVE fails over to site2
        w.write_map(map_lines(move_site="site2"))
        w.sighup()
        r = EasReq("FolderSync", mover, "14.1")
        self.assert_redirected(w, r.req, w.send(r), EXT2)
        r = EasReq("FolderSync", mover, "12.1")
        self.assert_proxied(w, r.req, w.send(r), "site2")
        r = EasReq("FolderSync", "local@contoso.test", "14.1")
        self.assert_proxied(w, r.req, w.send(r), "site1")
        self.assertTrue(t.is_alive(), "the held Ping ended early: %r"
                        % result)
        t.join(self.HEARTBEAT + 35)
        self.assertFalse(t.is_alive())
        self.assertNotIn("error", result, "the held Ping failed: %r"
                         % result.get("error"))
        resp = result["resp"]
        self.assertEqual(resp.status, 200, resp.status_line)
        self.assertEqual(resp.body, sc.ping_response(1))
        self.assertGreaterEqual(result["took"], self.HEARTBEAT - 2)
        self.assertEqual(w.where(ping.mark), ["site1"])
        assert_passthrough(self, resp,
                           self.one_cas_request(w.cas["site1"], ping.mark))
        self.assert_log(w, ping.device, decision="proxy", reason="local",
                        site="site1", status=200)
        # the next request on the same connection gets the new route
        r = EasReq("FolderSync", mover, "14.1")
        conn.send(r.raw)
        self.assert_redirected(w, r.req, conn.read_response(), EXT2)

    def test_broken_map_refused_old_one_serves(self):
        w = self.world()
        w.write_map(map_lines(move_site="site2"))
        w.sighup()
        mover = "mover@contoso.test"
        r = EasReq("FolderSync", mover, "14.1")
        self.assert_redirected(w, r.req, w.send(r), EXT2)
        # DBMOVE back to site1, but with a line naming no database
        bad = map_lines(move_site="site1",
                        extra=["user\tghost@contoso.test\tNODB"])
        bad_line = len(bad)
        w.write_map(bad)
        text = w.sighup(expect="reload refused")
        self.assertRegex(text, re.escape("%s:%d:" % (w.map_path, bad_line)),
                         "the refusal does not name FILE:LINE")
        r = EasReq("FolderSync", mover, "14.1")
        self.assert_redirected(w, r.req, w.send(r), EXT2)
        r = EasReq("FolderSync", mover, "12.1")
        self.assert_proxied(w, r.req, w.send(r), "site2")
        r = EasReq("FolderSync", "local@contoso.test", "14.1")
        self.assert_proxied(w, r.req, w.send(r), "site1")
        # fixed: the next reload is taken
        w.write_map(map_lines(move_site="site1"))
        w.sighup()
        r = EasReq("FolderSync", mover, "14.1")
        self.assert_proxied(w, r.req, w.send(r), "site1")

    def test_config_reload_external_url(self):
        w = self.world()
        remote = "remote@contoso.test"
        new_url = "https://eas.site2.contoso.test/Microsoft-Server-ActiveSync"
        w.d.extra["sites"][1]["external_url"] = new_url
        w.d.write_config()
        w.sighup()
        r = EasReq("Sync", remote, "14.1")
        self.assert_redirected(w, r.req, w.send(r), new_url)
        # a fallback naming no site: refused with its line, old config kept
        w.d.extra["sites"][1]["fallback"] = "nosuchsite"
        w.d.write_config()
        bad_line = 1 + w.d.config_text().splitlines().index(
            '    fallback: "nosuchsite"')
        text = w.sighup(expect="reload refused")
        self.assertRegex(text, re.escape("%s:%d:" % (w.d.conf_path,
                                                     bad_line)),
                         "the refusal does not name FILE:LINE")
        r = EasReq("Sync", remote, "14.1")
        self.assert_redirected(w, r.req, w.send(r), new_url)
        r = EasReq("Sync", "local@contoso.test", "14.1")
        self.assert_proxied(w, r.req, w.send(r), "site1")


class Fallback(RoutingCase):
    """A site whose every CAS is down: its fallback serves its users,
    proxied at every version; without a fallback, 503 + Retry-After."""

    def wait_route(self, w, pred, what, timeout=20):
        """Sends remote@'s 14.1 FolderSync until pred(resp); never contacts
        a CAS while the answer is still a 451."""
        last = []

        def probe():
            r = EasReq("FolderSync", "remote@contoso.test", "14.1")
            resp = w.send(r)
            last[:] = [resp.status_line]
            return pred(resp)
        if not eftest.wait_until(probe, timeout, interval=0.3):
            self.fail("%s did not happen within %d s (last answer %s)"
                      % (what, timeout, last))

    def all_forms(self):
        return ([(v, "plain") for v in VERSIONS] + [(None, "plain")]
                + [(v, "base64") for v in B64_VERSIONS])

    def test_fallback_and_back(self):
        w = self.world(site_opts={"site2": {"fallback": "site1"}},
                       health=FAST_HEALTH)
        remote = "remote@contoso.test"
        r = EasReq("Sync", remote, "14.1")
        self.assert_redirected(w, r.req, w.send(r), EXT2)
        port = w.cas["site2"].port
        w.cas["site2"].stop()
        t0 = time.monotonic()
        self.wait_route(w, lambda resp: resp.status != 451,
                        "falling back from site2")
        print("\nsite2 down: fallback after %.1f s" % (time.monotonic() - t0))
        for version, form in self.all_forms():
            with self.subTest(version=version, form=form):
                r = EasReq("Sync", remote, version, form)
                resp = w.send(r)
                self.assert_proxied(w, r.req, resp, "site1", query=r.query)
                self.assertEqual(resp.status, 200)
                self.assert_log(w, r.device, decision="proxy",
                                reason="fallback", site="site1")
        r = EasReq("Sync", "local@contoso.test", "14.1")
        self.assert_proxied(w, r.req, w.send(r), "site1")
        # site2 recovers
        w.cas["site2"] = w.start_cas("site2", port=port)
        self.wait_route(w, lambda resp: resp.status == 451,
                        "returning to site2")
        r = EasReq("Sync", remote, "14.1")
        self.assert_redirected(w, r.req, w.send(r), EXT2)
        r = EasReq("Sync", remote, "12.1")
        resp = w.send(r)
        self.assert_proxied(w, r.req, resp, "site2")
        self.assertEqual(resp.status, 200)

    def test_no_fallback_503(self):
        w = self.world(health=FAST_HEALTH)
        w.cas["site2"].stop()
        self.wait_route(w, lambda resp: resp.status != 451,
                        "noticing that site2 is down")
        for version, form in self.all_forms():
            with self.subTest(version=version, form=form):
                r = EasReq("Sync", "remote@contoso.test", version, form)
                resp = w.send(r)
                self.assert_own_error(resp, (503,))
                self.assertRegex(resp.header("Retry-After") or "",
                                 r"^[0-9]+$", "503 without Retry-After")
                self.assertIsNone(resp.header("X-MS-Location"))
                self.assertEqual(w.where(r.mark), [])
                self.assert_log(w, r.device, decision="reject",
                                reason="no-site-available", status=503)
        r = EasReq("Sync", "local@contoso.test", "14.1")
        self.assert_proxied(w, r.req, w.send(r), "site1")


class RouteCommand(RoutingCase):
    """`easfront route` prints the decision and the map line behind it."""

    def route(self, w, user, version=None, host=None):
        cmd = [w.d.bin, "route", "-c", w.d.conf_path, user]
        if version:
            cmd += ["--version", version]
        if host:
            cmd += ["--host", host]
        p = eftest.run(cmd, timeout=30)
        return p.stdout

    def test_route_command(self):
        w = World(self, start=False)
        m, lines = w.map_path, w.lines

        def db_line(db, site):
            return line_of(lines, "database\t%s\t%s" % (db, site))

        def user_db(user, db, site):
            return (r"^map:\s+%s:%d: user -> database %s; %s:%d: database "
                    r"%s -> site %s$" % (
                        re.escape(m), line_of(lines, "user\t%s\t%s" % (
                            user, db)), db, re.escape(m), db_line(db, site),
                        db, site))
        cases = [
            ("local@contoso.test", "14.1", None,
             r"^decision:\s+PROXY to the CAS pool of site1$",
             user_db("local@contoso.test", "DB01", "site1")),
            ("remote@contoso.test", "14.1", None,
             r"^decision:\s+REDIRECT 451 X-MS-Location: %s$"
             % re.escape(EXT2),
             user_db("remote@contoso.test", "DB02", "site2")),
            ("remote@contoso.test", "12.1", None,
             r"^decision:\s+PROXY to the CAS pool of site2$",
             user_db("remote@contoso.test", "DB02", "site2")),
            ("CONTOSO\\jdoe", "16.1", None,
             r"^decision:\s+REDIRECT 451 X-MS-Location: %s$"
             % re.escape(EXT2),
             user_db("jdoe@contoso.test", "DB02", "site2")),
            ("remote@contoso.test", "14.1", HOST2,
             r"^decision:\s+PROXY to the CAS pool of site2$",
             r"^reason:\s+proxy-loop-guard"),
            ("x@fabrikam.test", "14.1", None,
             r"^decision:\s+REDIRECT 451",
             r"^map:\s+%s:%d: domain fabrikam.test -> site site2$" % (
                 re.escape(m),
                 line_of(lines, "domain\tfabrikam.test\tsite2"))),
            ("nobody@contoso.test", "14.1", None,
             r"^decision:\s+PROXY to the CAS pool of site1$",
             r"^map:\s+%s: no user line, no domain line$" % re.escape(m)),
        ]
        for user, version, host, decision, why in cases:
            with self.subTest(user=user, version=version, host=host):
                out = self.route(w, user, version, host)
                self.assertRegex(out, re.compile(decision, re.M))
                self.assertRegex(out, re.compile(why, re.M))
        out = self.route(w, "nobody@contoso.test", "14.1")
        self.assertRegex(out, re.compile(r"^home:\s+site1 \(default_site",
                                         re.M))


class Misdirected(RoutingCase):

    def test_421_sni_host_differ(self):
        w = self.world()
        local = "local@contoso.test"
        for sni, host in ((SNI, HOST2), (HOST2, SNI), (HOST1, HOST2)):
            with self.subTest(sni=sni, host=host):
                r = EasReq("Sync", local, "14.1", host=host)
                resp = w.send(r, sni=sni)
                self.assert_own_error(resp, (421,))
                self.assertEqual(w.where(r.mark), [])
        # the same name, with a port or in another case, is no mismatch
        for sni, host in ((SNI, "%s:%d" % (SNI, w.d.port)),
                          (HOST1, "SITE1-EAS.contoso.test")):
            with self.subTest(sni=sni, host=host):
                r = EasReq("Sync", local, "14.1", host=host)
                resp = w.send(r, sni=sni)
                self.assert_proxied(w, r.req, resp, "site1")
                self.assertEqual(resp.status, 200)


if __name__ == "__main__":
    unittest.main()
