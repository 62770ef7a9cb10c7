"""Request smuggling through easfront, beyond test_failures.Smuggling.

The issue behind this file: a request naming Content-Length in its
Connection header was framed by easfront with that Content-Length, but the
head sent to the CAS dropped every field Connection lists (hop-by-hop, RFC
9110 7.6.1). The CAS saw a POST without framing, then the body as a new
request on a pooled upstream connection: the next client got the answer to a
request it never sent.

What easfront must do (each point is one class below):

1. ConnectionNamesFraming: a Connection header naming Content-Length,
   Transfer-Encoding or Host (any Connection header, any case, OWS, empty list
   elements, with close or keep-alive) is refused: 400 + Connection: close,
   the connection closed, nothing at the CAS, access-log reason
   "connection-lists-framing".
2. ConnectionNamesRouting: naming Authorization, MS-ASProtocolVersion or
   X-MS-PolicyKey (what easfront routes by: the CAS must see what easfront saw)
   is refused the same way, reason "connection-lists-routing".
3. ConnectionNotTokens: an element of Connection that is not a token is
   refused with 400, nothing at the CAS, reason "bad-connection-header".
4. ConnectionNamesOther: naming any other field the request carries is
   obeyed: exactly one request at the CAS, without the named field, with one
   unambiguous framing and the whole body.
5. Mutations: Transfer-Encoding / Content-Length / chunked-body mutations
   from public request-smuggling corpora. For each, EITHER easfront answers
   4xx itself and the CAS never saw a complete request of it, OR exactly one
   request reached the CAS with exactly one framing header and the body the
   RFC reading of the message gives.
6. ResponseSide: a CAS answer whose Connection header names Content-Length
   or Transfer-Encoding becomes a 502, and its upstream connection is closed,
   never handed to another client (a scripted raw-socket CAS in this file).
7. PooledInterleaving: a client smuggling over and over while another one
   sends ordinary requests over the same pooled upstream connection: every
   answer the second client gets is the answer to its own request.

In every class, no request the test did not mean to send ever reaches the
CAS: every body carries a complete `GET /smuggled` request with
`X-CommonAccessToken: evil`, so a desync shows as a request for /smuggled
(a path easfront never forwards itself, DESIGN.md "request outside the
served paths"), or as a request without one of the test's marks.

Sources of the mutations (ideas taken, code written here):
- defparam/smuggler, configs/default.py and configs/exhaustive.py: the
  Transfer-Encoding gadgets ("nameprefix1", "tabprefix1/2", "spacejoin1",
  "underjoin1", "smashed", "space1", "valueprefix1", "vertprefix1",
  "commaCow", "cowComma", "contentEnc", "linewrapped1", "quoted", "aposed",
  "lazygrep", "sarcasm", "yelling", "0dsuffix", "tabsuffix",
  "revdualchunk", "0dspam", "nested", "spaceFF", "accentCH", "accentTE",
  "x-rout", "x-nout", and the midspace/postspace/prespace/endspace control
  byte families), each sent with a Content-Length like smuggler does;
  configs/doubles.py for the doubled Transfer-Encoding.
- James Kettle, "HTTP Desync Attacks: Request Smuggling Reborn" (PortSwigger
  Research, 2019): CL.TE / TE.CL bodies, duplicate and obfuscated
  Transfer-Encoding, "Transfer-Encoding\\n : chunked",
  "X: X\\nTransfer-Encoding".
- James Kettle, "HTTP/1.1 must die: the desync endgame" (PortSwigger
  Research, 2025): TE.0 / 0.CL (framing hidden by obs-fold or whitespace
  before the colon) and obfuscated Expect: 100-continue.
- The HTTP Garden (narfindustries/http-garden): chunk-size overflow
  (2^63, 2^64, 16 x f), over-long zero padding, BWS in chunk lines, chunk
  extensions with quoted strings, bare LF in chunk lines, trailers,
  a last chunk without its final CRLF.
- RFC 9112 sections 2.2 (bare CR/LF, whitespace after the start line), 5
  (no whitespace before the colon, obs-fold), 6.1 (Transfer-Encoding in
  HTTP/1.0, chunked not last, TE with CL: TE wins and CL must be removed),
  6.3 (framing), 7.1 (chunk grammar), 11.2 (request smuggling); RFC 9110
  5.5 (CR/LF/NUL in values), 7.6.1 (Connection), 8.6 (Content-Length lists).

Deviations from the brief, on purpose: a Transfer-Encoding with a coding
easfront does not implement may be answered 501 (RFC 9112 6.1 says SHOULD,
and test_failures expects 501 for it); everything else on the refusal branch
is 4xx.
"""

import hashlib
import json
import socket
import threading
import time
import unittest
import uuid
from collections import namedtuple

import eftest
from eftest import assert_passthrough, basic, eas_target

USER = "alice@contoso.test"
# Short client timeouts: a mutation that leaves easfront waiting for body
# bytes ends in a few seconds instead of the defaults' ten.
TIMEOUTS = {"client_header": 3, "client_body": 3, "upstream_response": 5}
FRAMING = ("content-length", "transfer-encoding")
OWN_4XX = tuple(range(400, 500))
OWN_4XX_501 = OWN_4XX + (501,)
SETTLE = 0.15           # seconds for stray bytes to reach the CAS

# Every CAS of this module, looked at once more when the module ends.
ALL_CAS = []


def tearDownModule():
    problems = []
    for cas, intended in ALL_CAS:
        problems += unintended(cas, intended)
    if problems:
        raise AssertionError("requests the tests never sent reached a CAS: "
                             "%s" % problems[:10])


# --------------------------------------------------------------------------
# requests as exact bytes

def smuggled(mark):
    """A complete request a desync would deliver as a request of its own."""
    return (b"GET /smuggled?behind=" + mark.encode() + b" HTTP/1.1\r\n"
            b"Host: eas.contoso.test\r\n"
            b"X-CommonAccessToken: evil\r\n"
            b"X-Test-Mark: smuggled-" + mark.encode() + b"\r\n"
            b"Content-Length: 0\r\n\r\n")


def chunked(data):
    return b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n"


def std_lines(mark):
    """What every request here carries (before its own lines): a valid EAS
    request for alice, proxied to site1's CAS."""
    return [b"Host: eas.contoso.test",
            ("Authorization: " + basic(USER)).encode(),
            b"MS-ASProtocolVersion: 14.1",
            b"X-MS-PolicyKey: 1307199584",
            b"User-Agent: Apple-iPhone9C1/1602.92",
            b"X-Test-Mark: " + mark.encode()]


def build(mark, lines, body=b"", first=(), version=b"HTTP/1.1",
          cmd="SendMail"):
    """Request line, first (lines before Host), the standard lines, lines,
    a blank line, body. Lines are bytes sent as given (they may hold odd
    bytes, even CR or LF)."""
    head = [b"POST " + eas_target(cmd).encode() + b" " + version]
    head += list(first) + std_lines(mark) + list(lines)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def unintended(cas, intended, since=0):
    """Descriptions of requests at cas (from the since-th on) that no test
    meant to reach it: a /smuggled target, an Exchange-internal header, a
    mark the tests did not hand out (easfront's own health probes are left
    out)."""
    out = []
    for r in cas.client_requests()[since:]:
        mark = r.header("X-Test-Mark")
        if "smuggled" in (r.target or "") or "smuggled" in (r.raw_head
                                                            .decode(
                                                                "latin-1")):
            out.append("smuggled request %r on CAS connection %s" % (
                r.raw_head[:120], r.conn_id))
        elif r.header("X-CommonAccessToken") is not None:
            out.append("X-CommonAccessToken reached the CAS: %r" %
                       r.raw_head[:120])
        elif mark not in intended:
            out.append("unexpected request %r (mark %r)" % (
                r.raw_head[:120], mark))
    return out


def log_entries(d, before, timeout=3):
    """The access-log lines written after the first `before` ones, parsed."""
    lines = eftest.wait_until(lambda: d.access_log_lines()[before:], timeout)
    out = []
    for ln in lines or []:
        try:
            out.append(json.loads(ln))
        except ValueError:
            out.append({"unparsed": ln})
    return out


class SmugglingCase(eftest.EfTestCase):
    """Shared steps: one stand-in CAS, one daemon, the marks handed out."""

    def setUp(self):
        super().setUp()
        self.intended = set()

    def start(self, **kw):
        cas = self.start_cas()
        ALL_CAS.append((cas, self.intended))
        kw.setdefault("timeouts", TIMEOUTS)
        d = self.start_daemon(cas, **kw)
        return cas, d

    def mark(self):
        m = uuid.uuid4().hex
        self.intended.add(m)
        return m

    def assert_clean(self, cas, since=0):
        """Nothing at the CAS (from its since-th request on) that the test
        did not send on purpose."""
        problems = unintended(cas, self.intended, since)
        self.assertEqual(problems, [], "a request reached the CAS that no "
                         "client sent (desync): %s" % problems[:5])

    def exchange(self, d, raw, timeout=8):
        """Sends raw on a new connection; (first response or None, the
        connection, what went wrong)."""
        c = d.connect(timeout=timeout)
        try:
            c.send(raw)
        except OSError as e:
            return None, c, "send failed: %r" % e
        try:
            return c.read_response(timeout=timeout), c, None
        except (ValueError, OSError) as e:
            return None, c, repr(e)

    def control(self, d, cas):
        """A clean request goes through, so a refusal below is due to the
        case's defect alone."""
        mark = self.mark()
        body = b"control body " + smuggled(mark)
        raw = build(mark, [b"Content-Length: %d" % len(body)], body)
        since = len(cas.client_requests())
        r = d.roundtrip(raw)
        self.assertEqual(r.status, 200, "the control request failed")
        rec = self.one_cas_request(cas, mark)
        self.assertEqual(rec.body, body)
        self.assert_clean(cas, since)

    def assert_refused(self, d, cas, raw, mark, reason, close=True,
                       status=400):
        """raw is answered `status` by easfront itself, with Connection:
        close and a closed connection when close, nothing reaches the CAS,
        and the access log gives reason."""
        before_log = len(d.access_log_lines())
        before_cas = len(cas.client_requests())
        try:
            self._refused(d, cas, raw, mark, reason, close, status,
                          before_log, before_cas)
        finally:
            self.assert_clean(cas, before_cas)

    def _refused(self, d, cas, raw, mark, reason, close, status, before_log,
                 before_cas):
        r, c, err = self.exchange(d, raw)
        try:
            self.assertIsNotNone(r, "no answer from easfront (%s)" % err)
            self.assert_own_error(r, (status,))
            if close:
                self.assertIn("close", (r.header("Connection") or "").lower(),
                              "refusal without Connection: close")
                self.assertTrue(c.closed_by_peer(3),
                                "easfront kept the connection open")
        finally:
            c.close()
        time.sleep(SETTLE)
        self.assertEqual(cas.find(mark), [], "the refused request reached "
                         "the CAS")
        self.assertEqual(cas.client_requests()[before_cas:], [],
                         "something reached the CAS")
        entries = log_entries(d, before_log)
        self.assertEqual(len(entries), 1, "expected one access-log line, "
                         "got %r" % entries)
        self.assertEqual(entries[0].get("status"), status, entries[0])
        self.assertEqual(entries[0].get("reason"), reason,
                         "access-log line: %r" % entries[0])


# --------------------------------------------------------------------------
# 1-3: Connection headers easfront must refuse

def cl_body_case(conn_lines, mark):
    """A Content-Length body that is a whole request: a next hop that drops
    the Content-Length reads it as a request of its own (/smuggled), and
    answers it on the pooled connection."""
    body = smuggled(mark)
    return list(conn_lines) + [b"Content-Length: %d" % len(body)], body


def te_body_case(conn_lines, mark):
    """A chunked body whose data is the smuggled request."""
    return (list(conn_lines) + [b"Transfer-Encoding: chunked"],
            chunked(smuggled(mark)))


# (name, Connection lines, body kind, HTTP version)
FRAMING_NAMES = [
    ("Content-Length", [b"Connection: Content-Length"], "cl", b"HTTP/1.1"),
    ("lower case", [b"Connection: content-length"], "cl", b"HTTP/1.1"),
    ("upper case", [b"Connection: CONTENT-LENGTH"], "cl", b"HTTP/1.1"),
    ("no space", [b"Connection:Content-Length"], "cl", b"HTTP/1.1"),
    ("with close", [b"Connection: close, Content-Length"], "cl", b"HTTP/1.1"),
    ("with keep-alive", [b"Connection: Content-Length, keep-alive"], "cl",
     b"HTTP/1.1"),
    ("second Connection header",
     [b"Connection: keep-alive", b"Connection: Content-Length"], "cl",
     b"HTTP/1.1"),
    ("first of two Connection headers",
     [b"Connection: cOnTeNt-LeNgTh", b"Connection: close"], "cl",
     b"HTTP/1.1"),
    ("empty list elements", [b"Connection: ,, Content-Length ,,"], "cl",
     b"HTTP/1.1"),
    ("OWS and tabs", [b"Connection:\t keep-alive ,\tContent-Length\t "],
     "cl", b"HTTP/1.1"),
    ("after an ordinary option",
     [b"Connection: X-Custom, content-length", b"X-Custom: 1"], "cl",
     b"HTTP/1.1"),
    ("HTTP/1.0 keep-alive", [b"Connection: keep-alive, Content-Length"],
     "cl", b"HTTP/1.0"),
    ("Transfer-Encoding", [b"Connection: Transfer-Encoding"], "te",
     b"HTTP/1.1"),
    ("transfer-encoding with keep-alive",
     [b"Connection: keep-alive, transfer-encoding"], "te", b"HTTP/1.1"),
    ("second header names TRANSFER-ENCODING",
     [b"Connection: close", b"Connection: TRANSFER-ENCODING"], "te",
     b"HTTP/1.1"),
    ("Transfer-Encoding, no body framing at all",
     [b"Connection: Transfer-Encoding"], "none", b"HTTP/1.1"),
    ("Host", [b"Connection: Host"], "cl", b"HTTP/1.1"),
    ("host with close", [b"Connection: host, close"], "cl", b"HTTP/1.1"),
    ("second header names HOST",
     [b"Connection: keep-alive", b"Connection: ,HOST"], "cl", b"HTTP/1.1"),
    ("all three", [b"Connection: Content-Length, Transfer-Encoding, Host"],
     "cl", b"HTTP/1.1"),
]

ROUTING_NAMES = [
    ("Authorization", [b"Connection: Authorization"]),
    ("authorization with keep-alive",
     [b"Connection: authorization, keep-alive"]),
    ("MS-ASProtocolVersion in a second header",
     [b"Connection: close", b"Connection: MS-ASProtocolVersion"]),
    ("ms-asprotocolversion", [b"Connection: ms-asprotocolversion"]),
    ("X-MS-PolicyKey", [b"Connection: X-MS-PolicyKey"]),
    ("x-ms-policykey, empty elements", [b"Connection: ,x-ms-policykey,"]),
    ("AUTHORIZATION after an ordinary option",
     [b"Connection: keep-alive", b"Connection: X-Custom,\tAUTHORIZATION",
      b"X-Custom: 1"]),
]

NOT_TOKENS = [
    ("parameter", b"Connection: Content-Length;x"),
    ("two words", b"Connection: close x"),
    ("quoted", b'Connection: "close"'),
    # a CTL is refused in any field value, before Connection is read
    ("vertical tab", b"Connection: content-length\x0b", "bad-request"),
    ("slash", b"Connection: keep-alive, X-Custom/1"),
    ("q-value", b"Connection: close;q=1"),
    ("parentheses", b"Connection: (close)"),
    ("space inside a name", b"Connection: Content Length"),
    ("obs-text", b"Connection: \xffclose"),
    ("equals", b"Connection: keep-alive=1"),
]


class ConnectionNamesFraming(SmugglingCase):

    def test_refused_400_close_nothing_upstream(self):
        cas, d = self.start()
        self.control(d, cas)
        for name, conn, kind, version in FRAMING_NAMES:
            with self.subTest(case=name):
                mark = self.mark()
                if kind == "cl":
                    lines, body = cl_body_case(conn, mark)
                elif kind == "te":
                    lines, body = te_body_case(conn, mark)
                else:
                    lines, body = list(conn), b""
                raw = build(mark, lines, body, version=version)
                self.assert_refused(d, cas, raw, mark,
                                    "connection-lists-framing")
        self.control(d, cas)
        self.assert_clean(cas)


class ConnectionNamesRouting(SmugglingCase):

    def test_refused_400_close_nothing_upstream(self):
        cas, d = self.start()
        self.control(d, cas)
        for name, conn in ROUTING_NAMES:
            with self.subTest(case=name):
                mark = self.mark()
                body = b"routing " + smuggled(mark)
                raw = build(mark, list(conn) + [
                    b"Content-Length: %d" % len(body)], body)
                self.assert_refused(d, cas, raw, mark,
                                    "connection-lists-routing")
        self.control(d, cas)
        self.assert_clean(cas)


class ConnectionNotTokens(SmugglingCase):

    def test_refused_400_nothing_upstream(self):
        cas, d = self.start()
        self.control(d, cas)
        for name, line, *why in NOT_TOKENS:
            with self.subTest(case=name):
                mark = self.mark()
                lines, body = cl_body_case([line], mark)
                raw = build(mark, lines, body)
                self.assert_refused(d, cas, raw, mark,
                                    why[0] if why else
                                    "bad-connection-header", close=False)
        self.control(d, cas)
        self.assert_clean(cas)


# --------------------------------------------------------------------------
# 4: Connection naming an ordinary field: obeyed

# (name, lines without framing, names that must not reach the CAS, body kind)
OTHER_NAMES = [
    ("X-Custom", [b"Connection: X-Custom", b"X-Custom: secret"],
     ["X-Custom"], "cl"),
    ("odd case", [b"Connection: x-CuStOm", b"X-Custom: secret"],
     ["X-Custom"], "cl"),
    ("Cookie, chunked", [b"Connection: Cookie", b"Cookie: a=b"],
     ["Cookie"], "te"),
    ("User-Agent", [b"Connection: User-Agent"], ["User-Agent"], "cl"),
    ("Accept-Language, chunked",
     [b"Connection: Accept-Language", b"Accept-Language: en-us"],
     ["Accept-Language"], "te"),
    ("second Connection header",
     [b"Connection: keep-alive", b"Connection: X-Custom",
      b"X-Custom: secret"], ["X-Custom"], "cl"),
    ("second Connection header, chunked",
     [b"Connection: keep-alive", b"Connection: X-Custom",
      b"X-Custom: secret"], ["X-Custom"], "te"),
    ("with close", [b"Connection: close, X-Custom", b"X-Custom: secret"],
     ["X-Custom"], "cl"),
    ("two names, empty elements, OWS",
     [b"Connection: ,X-Custom,,\t cookie ,", b"X-Custom: secret",
      b"Cookie: a=b"], ["X-Custom", "Cookie"], "cl"),
    ("field repeated", [b"Connection: X-Custom", b"X-Custom: a",
                        b"x-custom: b"], ["X-Custom"], "cl"),
    ("Connection after the field",
     [b"X-Custom: secret", b"Connection: keep-alive, X-CUSTOM"],
     ["X-Custom"], "te"),
    ("names in three headers",
     [b"Connection: close", b"Connection: X-Custom",
      b"Connection: Accept-Language", b"X-Custom: secret",
      b"Accept-Language: en-us"], ["X-Custom", "Accept-Language"], "cl"),
]


class ConnectionNamesOther(SmugglingCase):

    def test_named_field_dropped_one_request_whole_body(self):
        cas, d = self.start()
        self.control(d, cas)
        for name, lines, dropped, kind in OTHER_NAMES:
            with self.subTest(case=name):
                mark = self.mark()
                payload = b"other " + smuggled(mark)
                if kind == "cl":
                    body = payload
                    lines = list(lines) + [b"Content-Length: %d" % len(body)]
                else:
                    body = chunked(payload)
                    lines = list(lines) + [b"Transfer-Encoding: chunked"]
                since = len(cas.client_requests())
                try:
                    self.obeyed(d, cas, build(mark, lines, body), mark,
                                dropped, payload)
                finally:
                    self.assert_clean(cas, since)
        self.control(d, cas)
        self.assert_clean(cas)

    def obeyed(self, d, cas, raw, mark, dropped, payload):
        """raw reaches the CAS once, without the fields in dropped, with one
        framing and payload as its body; the client gets the CAS's answer."""
        r, c, err = self.exchange(d, raw)
        c.close()
        self.assertIsNotNone(r, "no answer (%s)" % err)
        self.assertEqual(r.status, 200, r.status_line)
        rec = self.one_cas_request(cas, mark)
        self.assertTrue(rec.complete)
        assert_passthrough(self, r, rec)
        got = [n.lower() for n, _ in rec.headers]
        for n in dropped:
            self.assertNotIn(n.lower(), got, "%s was named by Connection but "
                             "reached the CAS: %r" % (n, rec.raw_head))
        for v in rec.headers_named("Connection"):
            opts = {t.strip().lower() for t in v.split(",")}
            self.assertLessEqual(opts, {"", "close", "keep-alive"},
                                 "the client's Connection options were "
                                 "forwarded: %r" % v)
        for n in ("Authorization", "MS-ASProtocolVersion", "X-MS-PolicyKey",
                  "Host"):
            self.assertIsNotNone(rec.header(n), "%s lost" % n)
        self.assert_one_framing(rec, payload)

    def assert_one_framing(self, rec, payload):
        framing = [(n, v) for n, v in rec.headers if n.lower() in FRAMING]
        self.assertEqual(len(framing), 1, "not exactly one framing header "
                         "at the CAS: %r" % rec.raw_head)
        n, v = framing[0]
        if n.lower() == "transfer-encoding":
            self.assertEqual(v.lower(), "chunked")
        else:
            self.assertRegex(v, r"^[0-9]+$")
            self.assertEqual(int(v), rec.body_len)
        self.assertEqual(rec.body, payload, "the CAS read another body")
        self.assertEqual(rec.body_len, len(payload))


# --------------------------------------------------------------------------
# 5: mutations

# name, source, first (lines before Host), lines, body, want (the body the
# RFC reading gives if the message is accepted; None: it must be refused),
# statuses allowed for easfront's own refusal, HTTP version.
# In lines, body and want: <S> is the smuggled request, <N> its length in
# hex, and in lines <CL> the length of the body as sent.
Mutation = namedtuple("Mutation", "name src first lines body want statuses "
                      "version")

S = b"<S>"
CLTE_BODY = b"0\r\n\r\n<S>"                # CL reading: all; TE: empty
CHUNKED_S = b"<N>\r\n<S>\r\n0\r\n\r\n"     # TE reading: <S>; CL: short
CL = b"Content-Length: <CL>"
TE = b"Transfer-Encoding: chunked"

SMUGGLER = "defparam/smuggler configs/exhaustive.py"
KETTLE19 = "Kettle 2019, HTTP Desync Attacks"
KETTLE25 = "Kettle 2025, HTTP/1.1 must die"
GARDEN = "narfindustries/http-garden"


def te_gadget(name, src, gadget, reading, first=False, version=b"HTTP/1.1",
              alone=True):
    """A Transfer-Encoding gadget sent smuggler's way, with a Content-Length
    over a CL.TE body; when the gadget is a valid chunked Transfer-Encoding
    ("te" reading), also alone over a chunked body (TE.CL shape).
    reading: "cl" (the gadget is no Transfer-Encoding, Content-Length
    frames), "te" (it is chunked: TE wins over CL, RFC 9112 6.3), None (no
    consistent reading: must be refused)."""
    want = {"cl": CLTE_BODY, "te": b"", None: None}[reading]
    lines = [CL] if first else [gadget, CL]
    out = [Mutation(name + " +CL", src, [gadget] if first else [], lines,
                    CLTE_BODY, want, OWN_4XX_501, version)]
    if reading == "te" and alone:
        out.append(Mutation(name + " alone", src,
                            [gadget] if first else [],
                            [] if first else [gadget], CHUNKED_S, S,
                            OWN_4XX_501, version))
    return out


def cl_case(name, src, lines, body, want, statuses=OWN_4XX):
    return Mutation(name, src, [], lines, body, want, statuses, b"HTTP/1.1")


def chunk_case(name, src, body, want, statuses=OWN_4XX):
    return Mutation(name, src, [], [TE], body, want, statuses, b"HTTP/1.1")


def mutations():
    m = []
    # ---- Transfer-Encoding gadgets
    for args in [
        ("TE plain (CL.TE / TE.CL control)", KETTLE19, TE, "te"),
        ("xchunked", KETTLE19, b"Transfer-Encoding: xchunked", None),
        ("valueprefix1 double space", SMUGGLER,
         b"Transfer-Encoding:  chunked", "te"),
        ("chunked, identity", KETTLE19,
         b"Transfer-Encoding: chunked, identity", None),
        ("identity, chunked", KETTLE19,
         b"Transfer-Encoding: identity, chunked", None),
        ("tabprefix1", SMUGGLER, b"Transfer-Encoding:\tchunked", "te"),
        ("space1 space before colon", SMUGGLER,
         b"Transfer-Encoding : chunked", None),
        ("tabprefix2 tab before colon", SMUGGLER,
         b"Transfer-Encoding\t:\tchunked", None),
        ("obs-fold value", "RFC 9112 5.2",
         b"Transfer-Encoding:\r\n chunked", "te"),
        ("linewrapped1 bare-LF fold", SMUGGLER,
         b"Transfer-Encoding:\n chunked", "te"),
        ("obs-fold before colon (TE.0)", KETTLE25,
         b"Transfer-Encoding\r\n : chunked", None),
        ("spacejoin1", SMUGGLER, b"Transfer Encoding: chunked", None),
        ("underjoin1 Transfer_Encoding", SMUGGLER,
         b"Transfer_Encoding: chunked", "cl"),
        ("smashed", SMUGGLER, b"Transfer Encoding:chunked", None),
        ("vertprefix1", SMUGGLER, b"Transfer-Encoding:\x0bchunked", None),
        ("commaCow", SMUGGLER, b"Transfer-Encoding: chunked, cow", None),
        ("cowComma", SMUGGLER, b"Transfer-Encoding: cow, chunked", None),
        ("contentEnc", SMUGGLER, b"Content-Encoding: chunked", "cl"),
        ("quoted", SMUGGLER, b'Transfer-Encoding: "chunked"', None),
        ("aposed", SMUGGLER, b"Transfer-Encoding: 'chunked'", None),
        ("lazygrep", SMUGGLER, b"Transfer-Encoding: chunk", None),
        ("sarcasm", SMUGGLER, b"TrAnSFer-EnCODinG: cHuNkeD", "te"),
        ("yelling", SMUGGLER, b"TRANSFER-ENCODING: CHUNKED", "te"),
        ("0dsuffix", SMUGGLER, b"Transfer-Encoding: chunked\r", None),
        ("tabsuffix", SMUGGLER, b"Transfer-Encoding: chunked\t", "te"),
        ("revdualchunk", SMUGGLER,
         b"Transfer-Encoding: cow\r\nTransfer-Encoding: chunked", None),
        ("doubled chunked", "defparam/smuggler configs/doubles.py",
         b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", None),
        ("0dspam", SMUGGLER, b"Transfer\r-Encoding: chunked", None),
        ("nested", SMUGGLER, b"Transfer-Encoding: cow chunked bar", None),
        ("spaceFF", SMUGGLER, b"Transfer-Encoding:\xffchunked", None),
        ("accentCH", SMUGGLER, b"Transfer-Encoding: ch\x96nked", None),
        ("accentTE", SMUGGLER, b"Transf\x82r-Encoding: chunked", None),
        ("x-rout bare CR", SMUGGLER, b"X: X\rTransfer-Encoding: chunked",
         None),
        ("x-nout bare LF", SMUGGLER + "; " + KETTLE19,
         b"X: X\nTransfer-Encoding: chunked", "te"),
        ("midspace-0c", SMUGGLER, b"Transfer-Encoding:\x0cchunked", None),
        ("midspace-00", GARDEN, b"Transfer-Encoding:\x00chunked", None),
        ("postspace-0b", SMUGGLER, b"Transfer-Encoding\x0b: chunked", None),
        ("postspace-00 NUL in name", GARDEN,
         b"Transfer-Encoding\x00: chunked", None),
        ("prespace-0c", SMUGGLER, b"\x0cTransfer-Encoding: chunked", None),
        ("endspace-0b", SMUGGLER, b"Transfer-Encoding: chunked\x0b", None),
        ("endspace-00", SMUGGLER, b"Transfer-Encoding: chunked\x00", None),
        ("empty Transfer-Encoding", "RFC 9112 6.1",
         b"Transfer-Encoding:", None),
        ("chunked with a parameter", "RFC 9112 7",
         b"Transfer-Encoding: chunked;q=1", None),
        ("obs-fold continuation of another field", "RFC 9112 5.2",
         b"X-Foo: a\r\n Transfer-Encoding: chunked", "cl"),
    ]:
        m += te_gadget(*args)
    m += te_gadget("nameprefix1 whitespace after the request line",
                   SMUGGLER + "; RFC 9112 2.2",
                   b" Transfer-Encoding: chunked", "cl", first=True)
    m += te_gadget("chunked in HTTP/1.0", "RFC 9112 6.1", TE, None,
                   version=b"HTTP/1.0")
    m.append(Mutation("CL before TE", KETTLE19, [], [CL, TE], CLTE_BODY,
                      b"", OWN_4XX_501, b"HTTP/1.1"))
    # ---- Content-Length
    m += [
        cl_case("CL list of equal values", "RFC 9110 8.6",
                [b"Content-Length: <CL>, <CL>"], S, S),
        cl_case("CL repeated, equal", "RFC 9110 8.6", [CL, CL], S, S),
        cl_case("CL plus sign", KETTLE19, [b"Content-Length: +<CL>"], S,
                None),
        cl_case("CL leading zero", "RFC 9110 8.6 (digits)",
                [b"Content-Length: 0<CL>"], S, S),
        cl_case("CL trailing space", "RFC 9110 5.5 (OWS)",
                [b"Content-Length: <CL> "], S, S),
        cl_case("CL without space", "RFC 9110 5.5", [b"Content-Length:<CL>"],
                S, S),
        cl_case("CL vertical tab", SMUGGLER + " (midspace-0b on CL)",
                [b"Content-Length:\x0b<CL>"], S, None),
        cl_case("CL NUL suffix", GARDEN, [b"Content-Length: <CL>\x00"], S,
                None),
        cl_case("CL tab before colon (0.CL)", KETTLE25,
                [b"Content-Length\t: <CL>"], S, None),
        cl_case("CL folded into two numbers", KETTLE25,
                [b"Content-Length: <CL>\r\n 5"], S, None),
        cl_case("CL differing, short first", KETTLE19,
                [b"Content-Length: 5", CL], b"hello" + S, None),
        cl_case("CL differing, long first", KETTLE19,
                [CL, b"Content-Length: 5"], b"hello" + S, None),
        cl_case("CL list of different values", KETTLE19,
                [b"Content-Length: 5, <CL>"], b"hello" + S, None),
        cl_case("CL decimal point", GARDEN, [b"Content-Length: <CL>.0"], S,
                None),
        cl_case("CL above 2^64", GARDEN,
                [b"Content-Length: 99999999999999999999"], S, None),
        cl_case("CL 2^63 (negative as int64)", GARDEN,
                [b"Content-Length: 9223372036854775808"], S, None),
        cl_case("CL with NUL in the name", GARDEN,
                [b"Content-Length\x00: 5", CL], S, None),
        cl_case("non-token field name", "RFC 9110 5.1",
                [b"[X-Foo]: a", CL], S, None),
        cl_case("DEL in a field name", "RFC 9110 5.1",
                [b"X-Foo\x7f: a", CL], S, None),
        cl_case("form feed in a value", "RFC 9110 5.5",
                [b"X-Foo: a\x0cb", CL], S, None),
        cl_case("Expect with junk (0.CL)", KETTLE25,
                [b"Expect: y 100-continue", CL], S, S),
        cl_case("Expect folded (0.CL)", KETTLE25,
                [b"Expect:\r\n 100-continue", CL], S, S),
        cl_case("Expect 100-continue, body sent at once", KETTLE25,
                [b"Expect: 100-continue", CL], S, S),
    ]
    # ---- chunked bodies
    m += [
        chunk_case("chunk size 16 x f (int64 overflow)", GARDEN,
                   b"ffffffffffffffff\r\n<S>\r\n0\r\n\r\n", None, (400,)),
        chunk_case("chunk size 2^64", GARDEN,
                   b"10000000000000000\r\n<S>\r\n0\r\n\r\n", None),
        chunk_case("chunk size 2^63", GARDEN,
                   b"8000000000000000\r\n<S>\r\n0\r\n\r\n", None),
        chunk_case("chunk size 0x prefix", GARDEN,
                   b"0x<N>\r\n<S>\r\n0\r\n\r\n", None),
        chunk_case("chunk size negative", GARDEN,
                   b"-<N>\r\n<S>\r\n0\r\n\r\n", None),
        chunk_case("chunk size BWS before extension", "RFC 9112 7.1.1",
                   b"<N> ;ext\r\n<S>\r\n0\r\n\r\n", S),
        chunk_case("chunk extension quoted ;", GARDEN,
                   b'<N>;a="b;c"\r\n<S>\r\n0\r\n\r\n', S),
        chunk_case("chunk extension unterminated quote", GARDEN,
                   b'<N>;a="x\r\n<S>\r\n0\r\n\r\n', S),
        chunk_case("chunk extension with bare CR", GARDEN,
                   b"<N>;a=\rb\r\n<S>\r\n0\r\n\r\n", None),
        chunk_case("last chunk with bare LF", GARDEN,
                   b"<N>\r\n<S>\r\n0\n\r\n", None),
        chunk_case("chunk data ended by bare LF", GARDEN,
                   b"<N>\r\n<S>\n0\r\n\r\n", None),
        chunk_case("last chunk without final CRLF, then a request", GARDEN,
                   b"<N>\r\n<S>\r\n0\r\n<S>", None),
        chunk_case("trailer", "RFC 9112 7.1.2",
                   b"<N>\r\n<S>\r\n0\r\nX-Trailer: a\r\n\r\n", S),
        chunk_case("Content-Length in the trailers", "RFC 9112 7.1.2",
                   b"<N>\r\n<S>\r\n0\r\nContent-Length: 9\r\n\r\n", S),
        chunk_case("trailer with a space in its name", GARDEN,
                   b"<N>\r\n<S>\r\n0\r\nX Bad: a\r\n\r\n", None),
        chunk_case("chunk size zero-padded", GARDEN,
                   b"000<N>\r\n<S>\r\n0\r\n\r\n", S),
        chunk_case("chunk size padded with 20 zeros", GARDEN,
                   b"00000000000000000000<N>\r\n<S>\r\n0\r\n\r\n", S),
        chunk_case("chunk size trailing space", GARDEN,
                   b"<N> \r\n<S>\r\n0\r\n\r\n", S),
        chunk_case("chunk size smaller than its data", KETTLE19,
                   b"3\r\n<S>\r\n0\r\n\r\n", None),
        chunk_case("last chunk with an extension", "RFC 9112 7.1.1",
                   b"<N>\r\n<S>\r\n0;ext=1\r\n\r\n", S),
    ]
    return m


def render(m, mark):
    """(raw request, want) of mutation m for mark."""
    s = smuggled(mark)

    def sub(b):
        return b.replace(b"<S>", s).replace(b"<N>", b"%x" % len(s))

    body = sub(m.body)
    lines = [sub(ln).replace(b"<CL>", b"%d" % len(body)) for ln in m.lines]
    first = [sub(ln) for ln in m.first]
    want = None if m.want is None else sub(m.want)
    return build(mark, lines, body, first=first, version=m.version), want


class Mutations(SmugglingCase):

    def test_mutations_refused_or_framed_once(self):
        cases = mutations()
        self.assertGreaterEqual(len(cases), 40)
        cas, d = self.start()
        self.control(d, cas)
        refused = []
        accepted = []
        outcome = {"refused": 0, "accepted": 0}
        t0 = time.monotonic()
        for m in cases:
            with self.subTest(case=m.name, source=m.src):
                mark = self.mark()
                raw, want = render(m, mark)
                since = len(cas.client_requests())
                try:
                    branch = self.one_mutation(d, cas, m, raw, mark, want)
                finally:
                    self.assert_clean(cas, since)
                outcome[branch] += 1
                if branch == "accepted":
                    accepted.append(m.name)
                if branch == "refused":
                    refused.append((m.name, mark))
        # late arrivals: a refused request must still be incomplete now
        time.sleep(0.5)
        for name, mark in refused:
            with self.subTest(case=name, check="late"):
                for rec in cas.find(mark):
                    self.assertFalse(rec.complete, "completed at the CAS "
                                     "after easfront refused it")
                    self.assertIsNone(rec.response_head)
        self.assert_clean(cas)
        self.control(d, cas)
        print("\nmutations: %d cases, %d refused, %d accepted, %.1f s" % (
            len(cases), outcome["refused"], outcome["accepted"],
            time.monotonic() - t0))
        if eftest.VERBOSE:
            print("accepted: %s" % ", ".join(accepted))

    def one_mutation(self, d, cas, m, raw, mark, want):
        r, c, err = self.exchange(d, raw)
        c.close()
        time.sleep(SETTLE)
        recs = cas.find(mark)
        done = [x for x in recs if x.complete or x.response_head]
        if not done:
            # refusal branch: easfront's own 4xx; a head streamed up before
            # a bad chunk was seen never completed, never answered
            self.assertIsNotNone(r, "neither an answer nor a request at "
                                 "the CAS (%s)" % err)
            self.assert_own_error(r, m.statuses)
            for rec in recs:
                self.assertFalse(rec.complete)
                self.assertIsNone(rec.response_head)
            return "refused"
        # acceptance branch
        eftest.wait_until(lambda: [
            x for x in cas.find(mark) if x.response_head], 3)
        recs = cas.find(mark)
        self.assertEqual(len(recs), 1, "%d requests with the mark at the "
                         "CAS: %r" % (len(recs), recs))
        rec = recs[0]
        self.assertIsNotNone(want, "easfront forwarded a message it must "
                             "refuse (no consistent framing); the CAS read "
                             "%d body bytes after %r" % (rec.body_len,
                                                         rec.raw_head))
        self.assertTrue(rec.complete, "incomplete at the CAS (%s): %r" % (
            rec.body_error, rec.raw_head))
        framing = [(n, v) for n, v in rec.headers if n.lower() in FRAMING]
        if want:
            self.assertEqual(len(framing), 1, "framing headers at the CAS:"
                             " %r" % framing)
        else:
            self.assertLessEqual(len(framing), 1, "framing headers at the "
                                 "CAS: %r" % framing)
        for n, v in framing:
            if n.lower() == "transfer-encoding":
                self.assertEqual(v.lower(), "chunked")
            else:
                self.assertRegex(v, r"^[0-9]+$")
                self.assertEqual(int(v), rec.body_len)
        self.assertEqual(rec.body, want, "the CAS read another body than "
                         "the message framed")
        self.assertEqual(rec.body_len, len(want))
        self.assertIsNotNone(r, "the CAS answered but the client got "
                             "nothing (%s)" % err)
        assert_passthrough(self, r, rec)
        return "accepted"


# --------------------------------------------------------------------------
# 6: the response side, with a scripted CAS

class ScriptedRequest:
    def __init__(self, conn_id, seq, raw_head):
        self.conn_id = conn_id
        self.seq = seq
        self.raw_head = raw_head
        lines = raw_head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        self.target = parts[1] if len(parts) > 1 else ""
        self.headers = []
        for ln in lines[1:]:
            name, sep, value = ln.partition(":")
            if sep:
                self.headers.append((name.strip(), value.strip()))
        self.body = b""
        self.answer = None

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    @property
    def is_health(self):
        return self.target.lower().endswith("/healthcheck.htm")

    def __repr__(self):
        return "<ScriptedRequest conn=%d %s>" % (self.conn_id, self.target)


class ScriptedCAS:
    """A raw-socket HTTP/1.1 CAS (plain, 127.0.0.1, port picked at run time,
    one thread per connection) that answers X-Test-Mark m with script[m],
    other requests with a plain 200 naming their mark, and healthcheck.htm
    with 200 "200 OK<br/>cas". It records every request per connection and
    which connections have ended; it never closes a connection itself, so a
    closed one was closed by easfront."""

    def __init__(self):
        self.script = {}
        self.seen = []
        self.closed = set()
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.socks = set()
        self.threads = []
        self.ls = None
        self.port = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", 0))
        ls.listen(64)
        ls.settimeout(0.2)
        self.ls = ls
        self.port = ls.getsockname()[1]
        t = threading.Thread(target=self._accept, daemon=True,
                             name="scripted-cas")
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(3)
        self.ls.close()
        with self.lock:
            for s in self.socks:
                try:
                    s.close()
                except OSError:
                    pass

    def requests(self):
        with self.lock:
            return [r for r in self.seen if not r.is_health]

    def find(self, mark):
        return [r for r in self.requests() if r.header("X-Test-Mark") == mark]

    def by_conn(self):
        out = {}
        for r in self.requests():
            out.setdefault(r.conn_id, []).append(r)
        return out

    def _accept(self):
        cid = 0
        while not self.stop_ev.is_set():
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            cid += 1
            with self.lock:
                self.socks.add(s)
            t = threading.Thread(target=self._serve, args=(s, cid),
                                 daemon=True)
            t.start()
            self.threads.append(t)

    def _fill(self, s, buf):
        """One recv into buf; False at EOF or stop. Bounded by stop_ev."""
        while not self.stop_ev.is_set():
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return False
            if not data:
                return False
            buf.extend(data)
            return True
        return False

    def _line(self, s, buf):
        while b"\r\n" not in buf:
            if not self._fill(s, buf):
                return None
        i = buf.index(b"\r\n") + 2
        line = bytes(buf[:i])
        del buf[:i]
        return line

    def _body(self, s, buf, req):
        cl = req.header("Content-Length")
        te = req.header("Transfer-Encoding")
        if te is not None and te.lower() == "chunked":
            out = bytearray()
            while True:
                line = self._line(s, buf)
                if line is None:
                    return None
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while True:
                        t = self._line(s, buf)
                        if t is None or t == b"\r\n":
                            return bytes(out) if t else None
                while len(buf) < n + 2:
                    if not self._fill(s, buf):
                        return None
                out += buf[:n]
                del buf[:n + 2]
        n = int(cl) if cl and cl.isdigit() else 0
        while len(buf) < n:
            if not self._fill(s, buf):
                return None
        body = bytes(buf[:n])
        del buf[:n]
        return body

    def _serve(self, s, cid):
        s.settimeout(0.2)
        buf = bytearray()
        seq = 0
        try:
            for _ in range(1000):          # bounded: requests per connection
                while b"\r\n\r\n" not in buf:
                    if not self._fill(s, buf):
                        return
                i = buf.index(b"\r\n\r\n") + 4
                seq += 1
                req = ScriptedRequest(cid, seq, bytes(buf[:i]))
                del buf[:i]
                with self.lock:
                    self.seen.append(req)
                body = self._body(s, buf, req)
                if body is None:
                    return
                req.body = body
                req.answer = self._answer(req)
                s.sendall(req.answer)
        except (OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.closed.add(cid)
                self.socks.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def _answer(self, req):
        if req.is_health:
            return (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                    b"Content-Length: 14\r\n\r\n200 OK<br/>cas")
        mark = req.header("X-Test-Mark") or ""
        if mark in self.script:
            return self.script[mark]
        body = b"answer to " + mark.encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"X-Answer-To: " + mark.encode() + b"\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body)


# What a client must never see: a response hidden in a CAS body.
INNER = (b"HTTP/1.1 200 OK\r\nX-Smuggled-Response: yes\r\n"
         b"Content-Length: 0\r\n\r\n")

# (name, Connection lines of the CAS answer, its framing)
BAD_RESPONSES = [
    ("Connection: Content-Length", [b"Connection: Content-Length"], "cl"),
    ("keep-alive, content-length",
     [b"Connection: keep-alive, content-length"], "cl"),
    ("second Connection header",
     [b"Connection: keep-alive", b"Connection: CONTENT-LENGTH"], "cl"),
    ("empty elements", [b"Connection: ,, Content-Length ,"], "cl"),
    ("Connection: Transfer-Encoding", [b"Connection: Transfer-Encoding"],
     "te"),
    ("OWS", [b"Connection:\tTransfer-Encoding ,keep-alive"], "te"),
    ("close + TRANSFER-ENCODING",
     [b"Connection: close", b"Connection: TRANSFER-ENCODING"], "te"),
    ("both names", [b"Connection: Transfer-Encoding, Content-Length"],
     "te"),
]


def scripted_answer(conn_lines, framing):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
    head += b"".join(ln + b"\r\n" for ln in conn_lines)
    if framing == "cl":
        return head + b"Content-Length: %d\r\n\r\n" % len(INNER) + INNER
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(INNER)


class ResponseSide(eftest.EfTestCase):

    def start(self):
        cas = ScriptedCAS().start()
        self.addCleanup(cas.stop)
        d = self.start_daemon([cas.url], timeouts=TIMEOUTS)
        return cas, d

    def request(self, d, cas, mark):
        """One request of a new client; (its response, the CAS record)."""
        body = b"response-side body"
        raw = build(mark, [b"Content-Length: %d" % len(body)], body)
        c = d.connect()
        try:
            c.send(raw)
            r = c.read_response(timeout=8)
        except (OSError, ValueError) as e:
            self.fail("no complete response within 8 s (%r): easfront "
                      "forwarded a body without its framing?" % e)
        finally:
            c.close()
        recs = eftest.wait_until(lambda: cas.find(mark), 3)
        self.assertEqual(len(recs or []), 1, "requests at the CAS for %s: "
                         "%r" % (mark, recs))
        return r, recs[0]

    def follow_up(self, d, cas):
        mark = uuid.uuid4().hex
        r, rec = self.request(d, cas, mark)
        self.assertEqual(r.status, 200, r.status_line)
        self.assertEqual(r.body, b"answer to " + mark.encode(),
                         "a client got an answer that is not its own")
        self.assertEqual(r.header("X-Answer-To"), mark)
        return rec

    def no_smuggled(self, cas):
        for r in cas.requests():
            self.assertNotIn("smuggled", r.target)

    def test_control_hop_field_dropped_connection_reused(self):
        """A CAS answer whose Connection names an ordinary field: forwarded
        without it, and the upstream connection goes back to the pool (so
        the checks below would see a reuse)."""
        cas, d = self.start()
        mark = uuid.uuid4().hex
        body = b"control"
        cas.script[mark] = (b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\n"
                            b"X-Hop: must-not-pass\r\nX-Kept: yes\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body) + body)
        r, rec = self.request(d, cas, mark)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, body)
        self.assertIsNone(r.header("X-Hop"))
        self.assertEqual(r.header("X-Kept"), "yes")
        nxt = self.follow_up(d, cas)
        self.assertEqual(nxt.conn_id, rec.conn_id, "easfront did not reuse "
                         "a healthy pooled connection (workers=1): the "
                         "never-reused checks would prove nothing")
        self.assertNotIn(rec.conn_id, cas.closed)

    def test_connection_names_framing_502_upstream_closed(self):
        cas, d = self.start()
        self.follow_up(d, cas)
        for name, conn_lines, framing in BAD_RESPONSES:
            with self.subTest(case=name):
                mark = uuid.uuid4().hex
                cas.script[mark] = scripted_answer(conn_lines, framing)
                r, rec = self.request(d, cas, mark)
                self.assert_own_error(r, (502,))
                self.assertNotIn(b"X-Smuggled-Response",
                                 r.raw_head + r.body)
                closed = eftest.wait_until(
                    lambda: rec.conn_id in cas.closed, 5)
                self.assertTrue(closed, "easfront kept the upstream "
                                "connection of the bad answer open")
                nxt = self.follow_up(d, cas)
                self.assertNotEqual(nxt.conn_id, rec.conn_id,
                                    "the upstream connection was reused")
                later = [x for x in cas.by_conn().get(rec.conn_id, [])
                         if x.seq > rec.seq]
                self.assertEqual(later, [], "requests of other clients on "
                                 "the bad connection")
                self.no_smuggled(cas)

    def test_bad_answer_on_a_kept_client_connection(self):
        """The client connection that got the 502 carries nothing of the
        CAS body afterwards: a next request on it gets its own answer."""
        cas, d = self.start()
        self.follow_up(d, cas)
        for name, conn_lines, framing in BAD_RESPONSES[:2] + \
                BAD_RESPONSES[4:6]:
            with self.subTest(case=name):
                mark = uuid.uuid4().hex
                cas.script[mark] = scripted_answer(conn_lines, framing)
                body = b"x"
                c = d.connect()
                try:
                    c.send(build(mark, [b"Content-Length: 1"], body))
                    r = c.read_response(timeout=8)
                    self.assert_own_error(r, (502,))
                    mark2 = uuid.uuid4().hex
                    try:
                        c.send(build(mark2, [b"Content-Length: 1"], body))
                        r2 = c.read_response(timeout=8)
                    except (OSError, ValueError):
                        r2 = None       # closed after the 502: fine
                    if r2 is not None:
                        self.assertEqual(r2.body,
                                         b"answer to " + mark2.encode())
                        self.assertNotIn(b"X-Smuggled-Response",
                                         r2.raw_head)
                finally:
                    c.close()
                self.no_smuggled(cas)


# --------------------------------------------------------------------------
# 7: two clients over one pooled upstream connection

def attacks():
    """(name, builder(mark) -> raw) for client A: the Connection cases of
    1-4 and a few framing mutations, some of which easfront accepts."""
    out = []
    for name, conn, kind, version in FRAMING_NAMES:
        if kind == "cl":
            out.append(("framing: " + name, lambda mk, conn=conn, v=version:
                        build(mk, *cl_body_case(conn, mk), version=v)))
        elif kind == "te":
            out.append(("framing: " + name, lambda mk, conn=conn:
                        build(mk, *te_body_case(conn, mk))))
        else:
            out.append(("framing: " + name, lambda mk, conn=conn:
                        build(mk, conn)))
    for name, conn in ROUTING_NAMES:
        out.append(("routing: " + name, lambda mk, conn=conn:
                    build(mk, *cl_body_case(conn, mk))))
    for name, line, *_ in NOT_TOKENS[:4]:
        out.append(("token: " + name, lambda mk, line=line:
                    build(mk, *cl_body_case([line], mk))))
    for name, lines, _, kind in OTHER_NAMES[:6]:
        maker = cl_body_case if kind == "cl" else te_body_case
        out.append(("obeyed: " + name, lambda mk, lines=lines, maker=maker:
                    build(mk, *maker(lines, mk))))
    picked = ("TE plain (CL.TE / TE.CL control) +CL",
              "underjoin1 Transfer_Encoding +CL",
              "space1 space before colon +CL", "x-nout bare LF +CL",
              "CL list of equal values", "CL differing, short first",
              "chunk size 16 x f (int64 overflow)",
              "last chunk without final CRLF, then a request",
              "chunk size smaller than its data", "last chunk with bare LF",
              "chunk extension unterminated quote")
    by_name = {m.name: m for m in mutations()}
    for n in picked:
        out.append(("mutation: " + n, lambda mk, m=by_name[n]:
                    render(m, mk)[0]))
    return out


class PooledInterleaving(SmugglingCase):

    def b_request(self, conn_box, d):
        """One ordinary request of client B on its kept connection;
        (mark, body, response or the error)."""
        mark = self.mark()
        body = b"B body " + mark.encode()
        raw = build(mark, [b"Content-Length: %d" % len(body)], body)
        for attempt in range(2):
            if conn_box[0] is None:
                conn_box[0] = d.connect()
            try:
                conn_box[0].send(raw)
                return mark, body, conn_box[0].read_response(timeout=8)
            except (OSError, ValueError) as e:
                conn_box[0].close()
                conn_box[0] = None
                err = e
        return mark, body, err

    def a_attempt(self, d, builder):
        mark = self.mark()
        raw = builder(mark)
        try:
            c = d.connect()
        except OSError:
            return mark
        try:
            c.send(raw)
            c.read_response(timeout=8)
        except (OSError, ValueError):
            pass
        finally:
            c.close()
        return mark

    def check_b(self, cas, mark, body, r):
        """Problems with B's response r to its request mark (a list)."""
        if not isinstance(r, eftest.Response):
            return ["B's request %s got no response: %r" % (mark, r)]
        recs = eftest.wait_until(lambda: [
            x for x in cas.find(mark) if x.response_head], 3) or []
        if len(recs) != 1:
            return ["B's request %s: %d answered records at the CAS, B got "
                    "%r" % (mark, len(recs), r.status_line)]
        rec = recs[0]
        try:
            assert_passthrough(self, r, rec)
        except AssertionError as e:
            return ["B got an answer that is not the CAS's answer to its "
                    "own request %s: %s" % (mark, str(e)[:300])]
        sha = hashlib.sha256(body).hexdigest()
        if r.header("X-Test-Body-Sha256") != sha or rec.body != body:
            return ["B's request %s: the CAS read another body" % mark]
        return []

    def test_b_gets_its_own_answers(self):
        cas, d = self.start(workers=1)
        self.control(d, cas)
        tries = attacks()
        self.assertGreaterEqual(len(tries), 20)
        problems = []
        b_marks = []
        box = [None]
        deadline = time.monotonic() + 60
        # sequential interleaving: every A try is followed by a B request,
        # which takes the pooled connection A's request may have left behind
        for rnd in range(2):
            for name, builder in tries:
                if time.monotonic() > deadline:
                    break
                self.a_attempt(d, builder)
                mark, body, r = self.b_request(box, d)
                b_marks.append(mark)
                problems += ["after A's %r: %s" % (name, p)
                             for p in self.check_b(cas, mark, body, r)]
        # concurrent: A and B in two threads, bounded in count and time
        stop_at = time.monotonic() + 15
        a_done = threading.Event()

        def run_a():
            try:
                for name, builder in tries:
                    if time.monotonic() > stop_at:
                        break
                    self.a_attempt(d, builder)
            finally:
                a_done.set()

        ta = threading.Thread(target=run_a, daemon=True)
        ta.start()
        box2 = [None]
        for _ in range(200):
            if a_done.is_set() or time.monotonic() > stop_at:
                break
            mark, body, r = self.b_request(box2, d)
            b_marks.append(mark)
            problems += ["concurrent: %s" % p
                         for p in self.check_b(cas, mark, body, r)]
        ta.join(20)
        for c in (box[0], box2[0]):
            if c is not None:
                c.close()
        time.sleep(0.5)
        self.assertEqual(problems, [], "client B got answers that were not "
                         "its own:\n" + "\n".join(problems[:10]))
        self.assert_clean(cas)
        # the test only means something if B's requests shared pooled
        # upstream connections with A's
        b_conns = {r.conn_id for m in b_marks for r in cas.find(m)}
        a_conns = {r.conn_id for r in cas.client_requests()
                   if r.header("X-Test-Mark") not in b_marks}
        self.assertLess(len(b_conns), len(b_marks) // 2,
                        "B's requests were not pooled (%d connections for "
                        "%d requests)" % (len(b_conns), len(b_marks)))
        self.assertTrue(b_conns & a_conns, "A's and B's requests never "
                        "shared an upstream connection")
        print("\npooled: %d B requests over %d upstream connections, "
              "%d A tries" % (len(b_marks), len(b_conns), 2 * len(tries)))


if __name__ == "__main__":
    unittest.main()
