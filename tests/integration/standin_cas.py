"""A stand-in Exchange Client Access Server for easfront's integration tests.

A threaded raw-socket HTTP/1.1 server (plain or TLS) on 127.0.0.1 at a port
picked at run time, run inside the test process. It answers the way Exchange
does (shared/EAS.md sections 2, 3, 5, 6): keep-alive, OPTIONS capabilities,
401 with a Basic realm, 503 + X-MS-ASThrottle, 449, Autodiscover 456/457, held
Pings, chunked and streamed bodies. It records every request it receives so a
test can assert what reached the CAS and what did not.

Behaviour by request (user = local part of the Basic user name):

    GET  /Microsoft-Server-ActiveSync/healthcheck.htm  200 "200 OK<br/>NAME"
    any EAS or Autodiscover request, no Authorization  401 + WWW-Authenticate
    EAS or Autodiscover, `passwords` set, Basic with   401 + WWW-Authenticate:
      a wrong password or a user it does not know        Basic realm="NAME"
    EAS or Autodiscover, `passwords` set, other        401 + WWW-Authenticate:
      credentials (Bearer...; NTLM/Negotiate unless      Bearer ..., Basic
      `ntlm` is on)                                      realm="NAME"
    EAS, user throttled                                503 + X-MS-ASThrottle
    EAS, user provision                                449 Retry after sending
                                                       a PROVISION command
    EAS, user expiring                                 normal answer + expiry
                                                       headers
    OPTIONS /Microsoft-Server-ActiveSync                200 capabilities
    POST Cmd=Ping                                      held for the WBXML
                                                       HeartbeatInterval, then
                                                       200 Ping Status 1
    POST Cmd=FolderSync / Sync / other                 200 small WBXML
    POST Cmd=ItemOperations                            200 chunked (HTTP/1.1
                                                       request) or
                                                       close-delimited (1.0)
    POST Cmd=GetAttachment&AttachmentName=bytes-N      N pattern bytes,
                                                       streamed
    POST Cmd=SendMail / SmartReply / SmartForward      200 + X-Test-Body-Length
                                                       + X-Test-Body-Sha256
    POST /autodiscover/autodiscover.xml (any case)     blocked 456, expired
                                                       457, else 200
                                                       mobilesync XML
    other methods on the EAS path                      501
    other paths                                        404

Passwords (attribute `passwords`, default None: any password is right):
a dict user -> password. A key is a whole Basic user name ("a@contoso.test",
"CONTOSO\\a") or a local part ("a"), matched case-insensitively, the whole
name first; the password is compared exactly. Checked the way IIS does it,
before anything else of an EAS or Autodiscover request (so "throttled" or
"blocked" answer 401 too when their password is wrong); an exchange2010
CAS's 401 carries its three challenges. Every Basic attempt on those paths
is counted, passwords set or not: `auth_attempts` is a list of
AuthAttempt(user, ok) (the Basic user name as sent; `.pw_tag` a short hash
of the password, never the password), `attempts(user, ok, password)`
counts them, and Request.auth_ok is True / False (None: no Basic).

Failure modes (attribute `mode`, switchable at run time; they spare the
health-check path unless `modes_apply_to_health` is set):

    "hang"          read the request head, never answer (keep reading until
                    the peer closes or the server stops)
    "garbage"       answer bytes that are not HTTP, then close
    "close"         close right after reading the head
    "slow_headers"  send the response head in small pieces, `slow_delay`
                    seconds apart
and `refuse()` closes the listening socket (connections are then refused).
`health_status` (default 200) set to another code, e.g. 503, makes
healthcheck.htm answer with that status (an IIS-style error page) while every
other request is served as usual: a CAS failing only its health check.
`health_body` (default None: "200 OK<br/>NAME") is the body of its 200, e.g.
a login page, as a CAS that serves some other page there would send.
`keep_alive` (default True) set to False closes every connection after its
response (with `Connection: close`), so every request needs a new connection.
`nodelay` (default False) set to True turns Nagle's algorithm off on every
connection (TCP_NODELAY): a response written as head then body no longer
waits for the peer's delayed ACK (about 40 ms), for cases sending thousands
of requests. `keep_requests` (default True) set to False records no Request
(requests stays empty; auth_attempts still counts), so that a flood of
requests does not hold the test's memory.

Flavour (attribute `flavour`): "exchange2016" (default) answers as described
above. "exchange2010" is a CAS without healthcheck.htm (it came with Exchange
2013 SP1), the way IIS 7.5 answers: EVERY request without Authorization, on
any path (healthcheck.htm, Autodiscover and 404 paths included), gets `401
Unauthorized` with `WWW-Authenticate: Negotiate`, `WWW-Authenticate: NTLM` and
`WWW-Authenticate: Basic realm="NAME"`, whatever `health_status` says; a
request with Authorization (or on an NTLM-authenticated connection) is served
as in exchange2016, except healthcheck.htm, which is then 404.

NTLM (attribute `ntlm`, off by default): connection-bound authentication the
way IIS does it. `Authorization: NTLM <type 1>` (or Negotiate with a raw
NTLM token) gets 401 with `WWW-Authenticate: NTLM <type 2>` (same scheme; a
fresh server challenge for this connection); a type 3 on the SAME connection
whose NtChallengeResponse is ntlm_proof(that challenge, user) authenticates
the connection (ntlm_conns),
and later requests on it need no Authorization at all. A type 3 on another
connection, or with a wrong proof, gets 401. A request without credentials on
an unauthenticated connection gets 401 `WWW-Authenticate: Negotiate` and
`WWW-Authenticate: NTLM`. `closed`
holds the ids of connections that have ended; Request.user is the user the
CAS served the request as.

Run alone for manual poking: python3 standin_cas.py [--port N]
[--tls CERT KEY].
"""

import base64
import hashlib
import os
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from collections import namedtuple
from email.utils import formatdate
from http import HTTPStatus

EAS_VERSIONS = "2.5,12.0,12.1,14.0,14.1,16.0,16.1"
EAS_COMMANDS = ("Sync,SendMail,SmartForward,SmartReply,GetAttachment,"
                "GetHierarchy,CreateCollection,DeleteCollection,"
                "MoveCollection,FolderSync,FolderCreate,FolderDelete,"
                "FolderUpdate,MoveItems,GetItemEstimate,MeetingResponse,"
                "Search,Settings,Ping,ItemOperations,Provision,"
                "ResolveRecipients,ValidateCert,Find")
HEALTH_PATH = "/microsoft-server-activesync/healthcheck.htm"
FLAVOURS = ("exchange2016", "exchange2010")
IIS_401_BODY = (b"<html><head><title>401 - Unauthorized</title></head><body>"
                b"401 - Unauthorized: Access is denied due to invalid "
                b"credentials.</body></html>")
EAS_PATH = "/microsoft-server-activesync"
AUTODISCOVER_PATH = "/autodiscover/autodiscover.xml"
WBXML_CT = "application/vnd.ms-sync.wbxml"
CREDENTIAL_URL = "https://portal.contoso.test/ChangePassword.aspx"
# What Exchange with Hybrid Modern Auth offers beside Basic (EAS.md 10).
BEARER_CHALLENGE = (
    'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
    'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
    'token_types="app_asserted_user_v1 service_asserted_app_v1", '
    'authorization_uri="https://login.windows.net/common/oauth2/authorize", '
    'error="invalid_token"')
MAX_HEAD = 1 << 20          # lenient: the stand-in must see smuggled heads
SMALL_BODY = 1 << 16        # bodies up to this size are kept in the record
HOLD_BODY = 1 << 20         # response bodies up to this size are kept too
B64_QUERY = re.compile(r"(?:[A-Za-z0-9+/]{4})*"
                       r"(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")

# Base64 command codes (EAS.md 1.4).
COMMAND_CODES = {
    0: "Sync", 1: "SendMail", 2: "SmartForward", 3: "SmartReply",
    4: "GetAttachment", 9: "FolderSync", 10: "FolderCreate",
    11: "FolderDelete", 12: "FolderUpdate", 13: "MoveItems",
    14: "GetItemEstimate", 15: "MeetingResponse", 16: "Search",
    17: "Settings", 18: "Ping", 19: "ItemOperations", 20: "Provision",
    21: "ResolveRecipients", 22: "ValidateCert", 23: "Find",
}

# --------------------------------------------------------------------------
# WBXML: just enough for Ping, FolderSync and Sync bodies.
# An element is (page, tag, content): tag without the 0x40/0x80 flags;
# content is None (empty element), a str (inline string), bytes (opaque) or a
# list of elements and strings.

PAGE_AIRSYNC = 0
PAGE_FOLDERHIERARCHY = 7
PAGE_PING = 13
PING_PING, PING_STATUS, PING_HEARTBEAT = 0x05, 0x07, 0x08


class WbxmlError(ValueError):
    pass


def _mb_u_int32(value):
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def wbxml_encode(root):
    """Encodes one element tree as WBXML 1.3, UTF-8, no string table."""
    out = bytearray(b"\x03\x01\x6a\x00")
    page = [0]

    def emit(el):
        pg, tag, content = el
        if pg != page[0]:
            out.extend((0x00, pg))
            page[0] = pg
        if content is None or content == []:
            out.append(tag)
            return
        out.append(tag | 0x40)
        items = content if isinstance(content, list) else [content]
        for item in items:
            if isinstance(item, str):
                out.append(0x03)
                out.extend(item.encode("utf-8") + b"\x00")
            elif isinstance(item, bytes):
                out.append(0xC3)
                out.extend(_mb_u_int32(len(item)) + item)
            else:
                emit(item)
        out.append(0x01)

    emit(root)
    return bytes(out)


def wbxml_decode(data):
    """Decodes WBXML into (page, tag, [children]); raises WbxmlError."""
    pos = [0]

    def byte():
        if pos[0] >= len(data):
            raise WbxmlError("truncated")
        b = data[pos[0]]
        pos[0] += 1
        return b

    def mb():
        value = 0
        for _ in range(5):
            b = byte()
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                return value
        raise WbxmlError("mb_u_int32 too long")

    byte()                      # version
    if mb() == 0:               # publicid 0: string-table index follows
        mb()
    mb()                        # charset
    strtbl_len = mb()
    strtbl = data[pos[0]:pos[0] + strtbl_len]
    pos[0] += strtbl_len
    page = 0
    stack = []
    root = None
    while pos[0] < len(data):
        tok = byte()
        if tok == 0x00:
            page = byte()
        elif tok == 0x01:
            if not stack:
                raise WbxmlError("END outside an element")
            el = stack.pop()
            if not stack:
                root = el
                break
        elif tok == 0x03:
            end = data.find(b"\x00", pos[0])
            if end < 0 or not stack:
                raise WbxmlError("bad inline string")
            stack[-1][2].append(data[pos[0]:end].decode("utf-8"))
            pos[0] = end + 1
        elif tok == 0x83:
            off = mb()
            end = strtbl.find(b"\x00", off)
            if not stack or end < 0:
                raise WbxmlError("bad string-table reference")
            stack[-1][2].append(strtbl[off:end].decode("utf-8"))
        elif tok == 0xC3:
            n = mb()
            if not stack or pos[0] + n > len(data):
                raise WbxmlError("bad opaque")
            stack[-1][2].append(data[pos[0]:pos[0] + n])
            pos[0] += n
        elif tok in (0x02, 0x04, 0x40, 0x41, 0x42, 0x43, 0x44, 0x80, 0x81,
                     0x82, 0xC0, 0xC1, 0xC2):
            raise WbxmlError("unsupported token 0x%02x" % tok)
        else:
            if tok & 0x80:
                raise WbxmlError("attributes are not supported")
            el = (page, tok & 0x3F, [])
            if stack:
                stack[-1][2].append(el)
            if tok & 0x40:
                stack.append(el)
            elif not stack:
                root = el
                break
    if root is None:
        raise WbxmlError("no complete root element")
    return root


def wbxml_find_text(el, page, tag):
    """Text of the first element (page, tag) under el (depth first) or None."""
    pg, tg, content = el
    if pg == page and tg == tag:
        return "".join(c for c in content if isinstance(c, str))
    for child in content:
        if isinstance(child, tuple):
            found = wbxml_find_text(child, page, tag)
            if found is not None:
                return found
    return None


def ping_request(heartbeat):
    """The WBXML of <Ping><HeartbeatInterval>N</HeartbeatInterval></Ping>."""
    return wbxml_encode((PAGE_PING, PING_PING,
                         [(PAGE_PING, PING_HEARTBEAT, str(heartbeat))]))


def ping_response(status=1):
    """The WBXML of <Ping><Status>N</Status></Ping>."""
    return wbxml_encode((PAGE_PING, PING_PING,
                         [(PAGE_PING, PING_STATUS, str(status))]))


FOLDERSYNC_BODY = wbxml_encode(
    (PAGE_FOLDERHIERARCHY, 0x16, [                   # FolderSync
        (PAGE_FOLDERHIERARCHY, 0x0C, "1"),           # Status
        (PAGE_FOLDERHIERARCHY, 0x12, "1"),           # SyncKey
        (PAGE_FOLDERHIERARCHY, 0x0E, [               # Changes
            (PAGE_FOLDERHIERARCHY, 0x17, "0")]),     # Count
    ]))
SYNC_BODY = wbxml_encode(
    (PAGE_AIRSYNC, 0x05, [                           # Sync
        (PAGE_AIRSYNC, 0x1C, [                       # Collections
            (PAGE_AIRSYNC, 0x0F, [                   # Collection
                (PAGE_AIRSYNC, 0x0B, "2"),           # SyncKey
                (PAGE_AIRSYNC, 0x12, "1"),           # CollectionId
                (PAGE_AIRSYNC, 0x0E, "1"),           # Status
            ])])]))
SMALL_WBXML = wbxml_encode((PAGE_AIRSYNC, 0x05, [(PAGE_AIRSYNC, 0x0E, "1")]))

# --------------------------------------------------------------------------
# The deterministic byte pattern of GetAttachment bytes-N: 64 KiB blocks, each
# starting with its big-endian block number so no two blocks are alike.

BLOCK = 65536
_BASE_BLOCK = bytes((i * 131 + (i >> 9)) & 0xFF for i in range(BLOCK))


def pattern_chunks(n, block=BLOCK):
    """Yields the first n bytes of the pattern in pieces of block bytes (the
    bytes do not depend on block)."""
    i = 0
    left = n
    pending = bytearray()
    while left > 0:
        while len(pending) < min(block, left):
            pending += struct.pack(">Q", i) + _BASE_BLOCK[8:]
            i += 1
        take = min(block, left)
        piece = bytes(pending[:take])
        del pending[:take]
        left -= take
        yield piece


_SHA_CACHE = {}


def pattern_sha256(n):
    """sha256 hex digest of the first n pattern bytes (cached)."""
    if n not in _SHA_CACHE:
        h = hashlib.sha256()
        for c in pattern_chunks(n):
            h.update(c)
        _SHA_CACHE[n] = h.hexdigest()
    return _SHA_CACHE[n]


# --------------------------------------------------------------------------
# NTLM messages (MS-NLMP 2.2.1), only as far as the stand-in needs them. The
# "proof" stands in for the NTLMv2 response: it depends on the connection's
# server challenge, so a type 3 only passes on the connection that got the
# matching type 2.

NTLM_SIGNATURE = b"NTLMSSP\x00"
NTLM_FLAGS = 0x00000001 | 0x00000004 | 0x00000200 | 0x00008000 | 0x00010000


def ntlm_proof(challenge, user):
    """The 24-byte NtChallengeResponse the stand-in accepts for user."""
    return hashlib.sha256(b"eftest-ntlm\x00" + challenge +
                          user.encode("utf-16-le")).digest()[:24]


def ntlm_challenge_message(challenge, target):
    """A type 2 (CHALLENGE) message with target name target."""
    name = target.encode("utf-16-le")
    head = (NTLM_SIGNATURE + struct.pack("<I", 2)
            + struct.pack("<HHI", len(name), len(name), 48)
            + struct.pack("<I", NTLM_FLAGS) + challenge + b"\x00" * 8
            + struct.pack("<HHI", 0, 0, 48 + len(name)))
    head += b"\x00" * (48 - len(head))
    return head + name


def ntlm_parse_authenticate(msg):
    """(domain, user, nt_response) of a type 3 message, None if malformed."""
    try:
        if msg[:8] != NTLM_SIGNATURE or struct.unpack_from(
                "<I", msg, 8)[0] != 3:
            return None
        flags = struct.unpack_from("<I", msg, 60)[0]

        def field(off):
            n, _, at = struct.unpack_from("<HHI", msg, off)
            if at + n > len(msg):
                raise ValueError("security buffer out of the message")
            return msg[at:at + n]

        enc = "utf-16-le" if flags & 1 else "latin-1"
        return (field(28).decode(enc), field(36).decode(enc), field(20))
    except (struct.error, ValueError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------

def password_tag(password):
    """A short hash standing for a password in the records (never the
    password itself)."""
    return hashlib.sha256(b"eftest-pw\x00" + password.encode(
        "utf-8", "surrogateescape")).hexdigest()[:12]


class AuthAttempt(namedtuple("AuthAttempt", "user ok")):
    """One Basic attempt the CAS saw: (user as sent, password right);
    .pw_tag is password_tag() of the password, .conn_id its connection."""

    def __new__(cls, user, ok, pw_tag="", conn_id=None):
        self = super().__new__(cls, user, ok)
        self.pw_tag = pw_tag
        self.conn_id = conn_id
        return self


# --------------------------------------------------------------------------

class Request:
    """One request as the CAS received it. Strings are latin-1 decoded."""

    def __init__(self, conn_id, seq, raw_head):
        self.conn_id = conn_id
        self.seq = seq
        self.raw_head = raw_head          # bytes up to the blank line incl.
        self.t_head = time.monotonic()
        self.t_done = None
        self.method = None
        self.target = None
        self.path = None
        self.query = ""
        self.version = None               # "HTTP/1.1" as received
        self.headers = []                 # [(name, value)] in order
        self.parse_error = None
        self.chunked = False
        self.body_len = 0
        self.body_sha256 = hashlib.sha256(b"").hexdigest()
        self.body = b""                   # kept while small
        self.complete = False             # head and whole body received
        self.body_error = None
        self.response_head = None         # bytes sent, incl. blank line
        self.response_body = None         # decoded body when small
        self.response_wire = None         # body as framed on the wire, small
        self.response_status = None
        self.user = None                  # who the CAS served it as
        self.auth_ok = None               # Basic password right (None: no
                                          # Basic credentials)

    def header(self, name):
        """First value of header name (case-insensitive) or None."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def headers_named(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def __repr__(self):
        return "<Request conn=%s %s %s complete=%s>" % (
            self.conn_id, self.method, self.target, self.complete)


class _Reader:
    """Buffered reads on a (TLS) socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf.extend(data)
        return True

    def read_head(self, limit=MAX_HEAD):
        """Bytes up to the blank line (CRLF CRLF, or a bare LF LF so that a
        smuggled bare-LF head is still recorded); None on a clean EOF."""
        while True:
            end = -1
            for sep in (b"\r\n\r\n", b"\n\n"):
                i = self.buf.find(sep)
                if i >= 0 and (end < 0 or i + len(sep) < end):
                    end = i + len(sep)
            if end >= 0:
                head = bytes(self.buf[:end])
                del self.buf[:end]
                return head
            if len(self.buf) > limit:
                raise ValueError("head too large")
            if not self.fill():
                if self.buf.strip():
                    raise ValueError("EOF inside a head")
                return None

    def readline(self, limit=65536):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if not self.fill():
                raise ValueError("EOF inside a line")

    def read_upto(self, n):
        """Up to n buffered-or-received bytes; b'' at EOF."""
        if not self.buf and not self.fill():
            return b""
        take = bytes(self.buf[:n])
        del self.buf[:n]
        return take


class _Response:
    def __init__(self, status, reason, headers, body=b"", chunks=None,
                 stream=None, stream_len=None, close=False, hold=0.0):
        self.status = status
        self.reason = reason
        self.headers = headers            # [(name, value)] without framing
        self.body = body
        self.chunks = chunks              # list of bytes: chunked body
        self.stream = stream              # iterator of bytes: streamed body
        self.stream_len = stream_len
        self.close = close
        self.hold = hold                  # seconds to wait before answering


class StandinCAS:
    """See the module comment. Start with start(), stop with stop()."""

    def __init__(self, name="cas1.site1.test", tls_context=None,
                 host="127.0.0.1", port=0):
        self.name = name
        self.fe = name.split(".")[0].upper()
        self.tls_context = tls_context
        self.host = host
        self.port = port
        self.mode = None
        self.modes_apply_to_health = False
        self.health_status = 200          # what healthcheck.htm answers
        self.health_body = None           # healthcheck.htm's 200 body
        self.flavour = "exchange2016"     # or "exchange2010", see above
        self.keep_alive = True            # False: close after each response
        self.nodelay = False              # True: TCP_NODELAY on connections
        self.keep_requests = True         # False: no Request kept
        self.slow_delay = 0.1
        self.slow_pieces = 20
        self.read_pause = 0.0             # pause after the first MiB of a body
        self.hop_headers = False          # add hop-by-hop headers to answers
        self.ping_default_heartbeat = 60
        self.ping_max_hold = None
        self.chunk_delay = 0.02
        self.accepted = 0
        self.tls_failures = 0
        self.ntlm = False                 # NTLM handshakes, see above
        self.passwords = None             # user -> password, see above
        self.auth_attempts = []           # [AuthAttempt], under _lock
        # conn_id -> {"state", "challenge", "user"} of that connection
        self.ntlm_conns = {}
        self.closed = set()               # ids of connections that ended
        self._lock = threading.Lock()
        self._requests = []
        self._stop = threading.Event()
        self._socks = set()
        self._threads = []
        self._listener = None
        self._seq = 0

    # ---- life cycle

    @property
    def scheme(self):
        return "https" if self.tls_context else "http"

    @property
    def url(self):
        return "%s://%s:%d" % (self.scheme, self.host, self.port)

    def start(self):
        if self.flavour not in FLAVOURS:
            raise ValueError("unknown flavour %r" % (self.flavour,))
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, self.port))
        ls.listen(128)
        self.port = ls.getsockname()[1]
        self._listener = ls
        t = threading.Thread(target=self._accept_loop, args=(ls,),
                             name="cas-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def refuse(self):
        """Close the listener: new connections are refused from now on."""
        ls, self._listener = self._listener, None
        if ls is not None:
            try:
                ls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            ls.close()

    def stop(self, timeout=5.0):
        self._stop.set()
        self.refuse()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                socket.socket.shutdown(s, socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- what was seen

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    @staticmethod
    def is_health_probe(req):
        return ((req.path or "").lower() == HEALTH_PATH
                and req.header("X-Test-Mark") is None)

    def client_requests(self):
        """Every recorded request except easfront's own health probes (a
        health-check request without an X-Test-Mark header)."""
        return [r for r in self.requests if not self.is_health_probe(r)]

    def find(self, mark):
        """Requests carrying X-Test-Mark: mark."""
        return [r for r in self.requests if r.header("X-Test-Mark") == mark]

    def attempts(self, user=None, ok=None, password=None):
        """How many Basic attempts the CAS saw of user (None: anyone; a
        name with "@" or "\\" is compared whole, else with the local part,
        case-insensitively), with a right (ok True) or wrong (False)
        password (None: either), with that password (None: any)."""
        tag = password_tag(password) if password is not None else None
        with self._lock:
            seen = list(self.auth_attempts)
        n = 0
        for a in seen:
            if user is not None:
                if "@" in user or "\\" in user:
                    if a.user.lower() != user.lower():
                        continue
                elif self._local(a.user) != user.lower():
                    continue
            if ok is not None and a.ok != ok:
                continue
            if tag is not None and a.pw_tag != tag:
                continue
            n += 1
        return n

    def wait_for(self, pred, timeout=5.0):
        """Waits until pred(requests) is true; returns the last value."""
        deadline = time.monotonic() + timeout
        while True:
            v = pred(self.requests)
            if v or time.monotonic() > deadline:
                return v
            time.sleep(0.02)

    # ---- connections

    def _accept_loop(self, ls):
        conn_id = 0
        while not self._stop.is_set():
            try:
                sock, _ = ls.accept()
            except OSError:
                return
            conn_id += 1
            if self.nodelay:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY,
                                    1)
                except OSError:
                    pass
            with self._lock:
                self.accepted += 1
                self._socks.add(sock)
            t = threading.Thread(target=self._serve, args=(sock, conn_id),
                                 name="cas-conn-%d" % conn_id, daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)

    def _serve(self, sock, conn_id):
        try:
            if self.tls_context is not None:
                sock.settimeout(10)
                try:
                    tls = self.tls_context.wrap_socket(sock, server_side=True)
                except (OSError, ssl.SSLError):
                    with self._lock:
                        self.tls_failures += 1
                    return
                tls.settimeout(None)
                with self._lock:
                    self._socks.discard(sock)
                    self._socks.add(tls)
                sock = tls
            if self._stop.is_set():
                return
            reader = _Reader(sock)
            while not self._stop.is_set():
                if not self._one_request(sock, reader, conn_id):
                    break
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            with self._lock:
                self._socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass
            with self._lock:
                self.closed.add(conn_id)

    def _one_request(self, sock, reader, conn_id):
        """Serves one request; returns False when the connection must end."""
        raw = reader.read_head()
        if raw is None:
            return False
        with self._lock:
            self._seq += 1
            req = Request(conn_id, self._seq, raw)
            if self.keep_requests:
                self._requests.append(req)
        self._parse_head(req)
        mode = self.mode
        if self.is_health_probe(req) and not self.modes_apply_to_health:
            mode = None
        if mode == "hang":
            while not self._stop.is_set() and reader.fill():
                del reader.buf[:]
            return False
        if mode == "close":
            return False
        if mode == "garbage":
            sock.sendall(b"\x16\x03\x01\x00garbage\x00\xff not http at all"
                         b"\r\n\r\n")
            return False
        if req.parse_error:
            self._send(sock, req, self._plain(400, "Bad Request", close=True),
                       mode)
            return False
        framing = self._framing(req)
        if framing is None:
            self._send(sock, req, self._plain(400, "Bad Request", close=True),
                       mode)
            return False
        expect = (req.header("Expect") or "").lower() == "100-continue"
        if expect and req.version == "HTTP/1.1" and framing != 0:
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not self._read_body(reader, req, framing):
            return False
        req.complete = True
        req.t_done = time.monotonic()
        resp = self._dispatch(req)
        if resp.hold and not self._hold(sock, resp.hold):
            return False
        self._send(sock, req, resp, mode)
        return not resp.close

    def _hold(self, sock, seconds):
        """Waits seconds (a held long-poll); False when the stand-in stops
        or the peer closed the connection meanwhile, which IIS notices (a
        TLS connection is only waited on)."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if isinstance(sock, ssl.SSLSocket):
                self._stop.wait(min(left, 0.1))
                continue
            readable, _, _ = select.select([sock], [], [], min(left, 0.1))
            if not readable:
                continue
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return False
            except OSError:
                return False
            # a pipelined request waits its turn
            self._stop.wait(min(left, 0.1))
        return False

    # ---- parsing (lenient: the stand-in must record whatever arrives)

    @staticmethod
    def _parse_head(req):
        text = req.raw_head.decode("latin-1")
        lines = text.split("\n")
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
        while lines and lines[-1] == "":
            lines.pop()
        if not lines:
            req.parse_error = "empty head"
            return
        parts = lines[0].split(" ")
        if len(parts) != 3:
            req.parse_error = "bad request line"
            return
        req.method, req.target, req.version = parts
        path, _, query = req.target.partition("?")
        req.path, req.query = path, query
        for ln in lines[1:]:
            if ln[:1] in (" ", "\t") and req.headers:
                n, v = req.headers[-1]
                req.headers[-1] = (n, v + " " + ln.strip())
                req.parse_error = "obs-fold"
                continue
            name, sep, value = ln.partition(":")
            if not sep:
                req.parse_error = "header without colon"
                continue
            if name != name.strip():
                req.parse_error = "whitespace around a field name"
            req.headers.append((name, value.strip(" \t")))

    @staticmethod
    def _framing(req):
        """-1 chunked, N >= 0 Content-Length, None: unusable framing."""
        te = req.headers_named("Transfer-Encoding")
        if te:
            codings = [c.strip().lower() for c in ",".join(te).split(",")]
            if codings[-1] != "chunked":
                return None
            req.chunked = True
            return -1
        cls = req.headers_named("Content-Length")
        if not cls:
            return 0
        values = {v.strip() for v in ",".join(cls).split(",")}
        if len(values) != 1:
            return None
        v = values.pop()
        if not v.isdigit():
            return None
        return int(v)

    def _read_body(self, reader, req, framing):
        h = hashlib.sha256()
        kept = bytearray()
        total = 0
        paused = False

        def take(data):
            nonlocal total, paused
            h.update(data)
            total += len(data)
            req.body_len = total     # visible while the body still streams
            if len(kept) < SMALL_BODY:
                kept.extend(data[:SMALL_BODY - len(kept)])
            if self.read_pause and not paused and total >= (1 << 20):
                paused = True
                self._stop.wait(self.read_pause)

        try:
            if framing >= 0:
                left = framing
                while left > 0:
                    data = reader.read_upto(min(left, 65536))
                    if not data:
                        req.body_error = "EOF after %d of %d bytes" % (
                            framing - left, framing)
                        return False
                    take(data)
                    left -= len(data)
            else:
                while True:
                    line = reader.readline()
                    size_txt = line.split(b";")[0].strip()
                    if not line.endswith(b"\r\n") or not re.fullmatch(
                            rb"[0-9A-Fa-f]{1,15}", size_txt):
                        req.body_error = "bad chunk size line %r" % line[:40]
                        return False
                    size = int(size_txt, 16)
                    if size == 0:
                        while reader.readline() not in (b"\r\n",):
                            pass
                        break
                    left = size
                    while left > 0:
                        data = reader.read_upto(min(left, 65536))
                        if not data:
                            req.body_error = "EOF inside a chunk"
                            return False
                        take(data)
                        left -= len(data)
                    if reader.readline() != b"\r\n":
                        req.body_error = "chunk not followed by CRLF"
                        return False
        except ValueError as e:
            req.body_error = str(e)
            return False
        finally:
            req.body_len = total
            req.body_sha256 = h.hexdigest()
            req.body = bytes(kept)
        return True

    # ---- answers

    def _std_headers(self, ctype=None):
        """Headers in the order Exchange 2016 behind IIS sends them."""
        h = [("Cache-Control", "private")]
        if ctype:
            h.append(("Content-Type", ctype))
        h += [
            ("Server", "Microsoft-IIS/10.0"),
            ("request-id", str(uuid.uuid4())),
            ("X-CalculatedBETarget", "mbx1.site1.test"),
            ("X-DiagInfo", self.fe),
            ("X-BEServer", "MBX1"),
            ("X-AspNet-Version", "4.0.30319"),
            ("Set-Cookie", "X-BackEndCookie=S-1-5-21-1=u56Lnp2ejJqBz8vJzc;"
                           " expires=Thu, 31-Dec-2037 23:59:59 GMT;"
                           " path=/Microsoft-Server-ActiveSync; secure;"
                           " HttpOnly"),
            ("Set-Cookie", "ClientId=EFTEST; path=/; secure; HttpOnly"),
            ("X-Powered-By", "ASP.NET"),
            ("X-FEServer", self.fe),
            ("Date", formatdate(usegmt=True)),
        ]
        return h

    def _plain(self, status, reason, close=False):
        body = ("<html><head><title>%d %s</title></head><body>%d %s</body>"
                "</html>" % (status, reason, status, reason)).encode()
        return _Response(status, reason, self._std_headers("text/html"),
                         body, close=close)

    def _dispatch(self, req):
        lpath = req.path.lower()
        if self.flavour == "exchange2010":
            if req.header("Authorization") is None and \
                    not self._ntlm_authenticated(req):
                return self._iis75_401()
            if lpath == HEALTH_PATH:
                return self._plain(404, "Not Found")
        if lpath == HEALTH_PATH and req.method in ("GET", "HEAD"):
            if self.health_status != 200:
                return self._plain(self.health_status,
                                   HTTPStatus(self.health_status).phrase)
            return _Response(200, "OK", [
                ("Content-Type", "text/html"),
                ("Server", "Microsoft-IIS/10.0"),
                ("X-FEServer", self.fe),
                ("Date", formatdate(usegmt=True))],
                self.health_body if self.health_body is not None
                else ("200 OK<br/>" + self.name).encode())
        is_eas = lpath == EAS_PATH or lpath.startswith(EAS_PATH + "/")
        if self.ntlm and (is_eas or lpath == AUTODISCOVER_PATH):
            resp = self._ntlm(req)
            if resp is not None:
                return resp
        if is_eas or lpath == AUTODISCOVER_PATH:
            resp = self._check_password(req)
            if resp is not None:
                return resp
        if lpath == AUTODISCOVER_PATH:
            return self._autodiscover(req)
        if is_eas:
            return self._eas(req)
        return self._plain(404, "Not Found")

    def _iis75_401(self):
        """Exchange 2010's answer to a request without credentials: IIS 7.5
        offering Negotiate, NTLM and Basic, in that order."""
        h = [("Content-Type", "text/html"),
             ("Server", "Microsoft-IIS/7.5"),
             ("WWW-Authenticate", "Negotiate"),
             ("WWW-Authenticate", "NTLM"),
             ("WWW-Authenticate", 'Basic realm="%s"' % self.name),
             ("X-Powered-By", "ASP.NET"),
             ("Date", formatdate(usegmt=True))]
        return _Response(401, "Unauthorized", h, IIS_401_BODY)

    # ---- NTLM (connection-bound, see the module comment)

    def _ntlm_authenticated(self, req):
        """True when NTLM is on and req's connection has authenticated."""
        if not self.ntlm:
            return False
        with self._lock:
            st = self.ntlm_conns.get(req.conn_id)
        return st is not None and st["state"] == "authenticated"

    def _ntlm_401(self, token=None, scheme="NTLM"):
        h = self._std_headers("text/html")
        if token:
            h.insert(3, ("WWW-Authenticate", scheme + " " + token))
        else:
            h[3:3] = [("WWW-Authenticate", "Negotiate"),
                      ("WWW-Authenticate", "NTLM")]
        return _Response(401, "Unauthorized", h, IIS_401_BODY)

    def _ntlm(self, req):
        """A 401 answer of the NTLM handshake, or None to serve req (as the
        connection's NTLM user, if any)."""
        with self._lock:
            st = self.ntlm_conns.get(req.conn_id)
        auth = req.header("Authorization")
        if auth is None:
            if st is not None and st["state"] == "authenticated":
                return None
            return self._ntlm_401()
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() not in ("ntlm", "negotiate"):
            return None
        try:
            msg = base64.b64decode(cred.strip(), validate=True)
            mtype = struct.unpack_from("<I", msg, 8)[0]
        except (ValueError, struct.error):
            return self._ntlm_401()
        if msg[:8] != NTLM_SIGNATURE:
            return self._ntlm_401()
        if mtype == 1:
            challenge = os.urandom(8)
            with self._lock:
                self.ntlm_conns[req.conn_id] = {
                    "state": "challenged", "challenge": challenge,
                    "user": None}
            return self._ntlm_401(base64.b64encode(
                ntlm_challenge_message(challenge, self.fe)).decode(), scheme)
        parsed = ntlm_parse_authenticate(msg) if mtype == 3 else None
        ok = (parsed is not None and st is not None
              and st["state"] == "challenged"
              and parsed[2] == ntlm_proof(st["challenge"], parsed[1]))
        with self._lock:
            if ok:
                self.ntlm_conns[req.conn_id] = {
                    "state": "authenticated", "challenge": st["challenge"],
                    "user": "%s\\%s" % (parsed[0], parsed[1])}
            else:
                self.ntlm_conns[req.conn_id] = {
                    "state": "failed", "challenge": None, "user": None}
        return None if ok else self._ntlm_401()

    # ---- passwords (see the module comment)

    def _password_right(self, user, password):
        """Whether passwords (or their absence) accept user:password."""
        table = self.passwords
        if table is None:
            return True
        low = {k.lower(): v for k, v in table.items()}
        want = low.get(user.lower())
        if want is None:
            want = low.get(self._local(user))
        return want is not None and want == password

    def _password_401(self, bearer=False):
        """Exchange's answer to credentials it refuses."""
        if self.flavour == "exchange2010":
            return self._iis75_401()
        resp = self._unauthorized()
        if bearer:
            resp.headers.insert(3, ("WWW-Authenticate", BEARER_CHALLENGE))
        return resp

    def _check_password(self, req):
        """A 401 for credentials the CAS refuses, or None to go on. Records
        every Basic attempt."""
        auth = req.header("Authorization")
        if auth is None:
            return None
        scheme, _, cred = auth.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                text = base64.b64decode(cred.strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                text = None
            if text is None or ":" not in text:
                # served as today when no passwords are set
                user, password = (text or ""), ""
                ok = self.passwords is None
            else:
                user, _, password = text.partition(":")
                ok = self._password_right(user, password)
            req.auth_ok = ok
            with self._lock:
                self.auth_attempts.append(AuthAttempt(
                    user, ok, password_tag(password), req.conn_id))
            return None if ok else self._password_401()
        if scheme in ("ntlm", "negotiate") and self.ntlm:
            return None                 # the handshake has answered it
        if self.passwords is None:
            return None
        return self._password_401(bearer=scheme == "bearer")

    def request_user(self, req):
        """The user req is served as: its Basic user, else (NTLM mode) the
        user its connection authenticated as; "" for other credentials,
        None without any."""
        user = self.basic_user(req)
        if self.ntlm and not user:
            with self._lock:
                st = self.ntlm_conns.get(req.conn_id)
            if st is not None and st["state"] == "authenticated":
                user = st["user"]
        req.user = user
        return user

    @staticmethod
    def basic_user(req):
        """The Basic user name, "" for other credentials, None without."""
        auth = req.header("Authorization")
        if auth is None:
            return None
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() != "basic":
            return ""
        try:
            user = base64.b64decode(cred.strip()).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return ""
        return user.partition(":")[0]

    @staticmethod
    def _local(user):
        user = user.rpartition("\\")[2]
        return user.partition("@")[0].lower()

    def _unauthorized(self):
        h = self._std_headers("text/html")
        h.insert(3, ("WWW-Authenticate", 'Basic realm="%s"' % self.name))
        return _Response(401, "Unauthorized", h, IIS_401_BODY)

    def _autodiscover(self, req):
        user = self.request_user(req)
        if user is None:
            return self._unauthorized()
        if req.method != "POST":
            return self._plain(405, "Method Not Allowed")
        local = self._local(user)
        if local == "blocked":
            return _Response(456, "Account Blocked", self._std_headers())
        if local == "expired":
            h = self._std_headers()
            h.insert(1, ("X-MS-Credential-Service-Url", CREDENTIAL_URL))
            return _Response(457, "Password Expired", h)
        m = re.search(rb"<EMailAddress>([^<]*)</EMailAddress>", req.body)
        email = m.group(1).decode("utf-8", "replace") if m else user
        body = (
            '<?xml version="1.0" encoding="utf-8"?>\r\n'
            '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
            'autodiscover/responseschema/2006">\r\n'
            '  <Response xmlns="http://schemas.microsoft.com/exchange/'
            'autodiscover/mobilesync/responseschema/2006">\r\n'
            '    <Culture>en:us</Culture>\r\n'
            '    <User>\r\n'
            '      <DisplayName>%s</DisplayName>\r\n'
            '      <EMailAddress>%s</EMailAddress>\r\n'
            '    </User>\r\n'
            '    <Action>\r\n'
            '      <Settings>\r\n'
            '        <Server>\r\n'
            '          <Type>MobileSync</Type>\r\n'
            '          <Url>https://site1-eas.contoso.test/'
            'Microsoft-Server-ActiveSync</Url>\r\n'
            '          <Name>https://site1-eas.contoso.test/'
            'Microsoft-Server-ActiveSync</Name>\r\n'
            '        </Server>\r\n'
            '      </Settings>\r\n'
            '    </Action>\r\n'
            '  </Response>\r\n'
            '</Autodiscover>\r\n' % (email.split("@")[0], email)
        ).encode("utf-8")
        return _Response(200, "OK",
                         self._std_headers("text/xml; charset=utf-8"), body)

    @staticmethod
    def eas_params(req):
        """(command, {param: value}) from a plain or base64 query."""
        q = req.query
        # EAS.md 1.6: base64 iff strict base64 (padding '=' included);
        # plain queries always hold '&' or a '=' inside.
        if not q or not B64_QUERY.fullmatch(urllib.parse.unquote(q)):
            params = dict(urllib.parse.parse_qsl(q, keep_blank_values=True))
            return params.get("Cmd"), params
        try:
            raw = base64.b64decode(urllib.parse.unquote(q), validate=True)
            cmd = COMMAND_CODES.get(raw[1])
            pos = 4
            pos += 1 + raw[pos]                       # device id
            pos += 1 + raw[pos]                       # policy key
            pos += 1 + raw[pos]                       # device type
            params = {}
            while pos + 2 <= len(raw):
                tag, n = raw[pos], raw[pos + 1]
                value = raw[pos + 2:pos + 2 + n]
                pos += 2 + n
                if tag == 0:
                    params["AttachmentName"] = value.decode("latin-1")
                elif tag == 8:
                    params["User"] = value.decode("latin-1")
            return cmd, params
        except (ValueError, IndexError):
            return None, {}

    def _eas(self, req):
        user = self.request_user(req)
        if user is None:
            return self._unauthorized()
        local = self._local(user)
        if req.method not in ("OPTIONS", "POST"):
            return self._plain(501, "Not Implemented")
        if local == "throttled":
            h = self._std_headers()
            h.insert(1, ("Retry-After", "30"))
            h.insert(4, ("X-MS-ASThrottle", "CommandFrequency"))
            return _Response(503, "Service Unavailable", h)
        if local == "provision":
            return _Response(449, "Retry after sending a PROVISION command",
                             self._std_headers())
        if req.method == "OPTIONS":
            h = self._std_headers()
            h[1:1] = [("Allow", "OPTIONS,POST"),
                      ("MS-Server-ActiveSync", "15.1"),
                      ("MS-ASProtocolVersions", EAS_VERSIONS),
                      ("MS-ASProtocolCommands", EAS_COMMANDS),
                      ("Public", "OPTIONS,POST")]
            resp = _Response(200, "OK", h)
        else:
            resp = self._command(req)
        if local == "expiring" and resp.status == 200:
            resp.headers[1:1] = [("X-MS-Credentials-Expire", "3"),
                                 ("X-MS-Credential-Service-Url",
                                  CREDENTIAL_URL)]
        return resp

    def _command(self, req):
        cmd, params = self.eas_params(req)
        if cmd == "Ping":
            hb = self.ping_default_heartbeat
            try:
                txt = wbxml_find_text(wbxml_decode(req.body), PAGE_PING,
                                      PING_HEARTBEAT)
                if txt:
                    hb = int(txt)
            except (WbxmlError, ValueError):
                pass
            if self.ping_max_hold is not None:
                hb = min(hb, self.ping_max_hold)
            return _Response(200, "OK", self._std_headers(WBXML_CT),
                             ping_response(1), hold=hb)
        if cmd == "FolderSync":
            return _Response(200, "OK", self._std_headers(WBXML_CT),
                             FOLDERSYNC_BODY)
        if cmd == "Sync":
            return _Response(200, "OK", self._std_headers(WBXML_CT),
                             SYNC_BODY)
        if cmd == "ItemOperations":
            chunks = [SMALL_WBXML, b"A" * 1000, b"chunk three\r\n",
                      bytes(range(256)) * 40, b"end"]
            return _Response(200, "OK", self._std_headers(WBXML_CT),
                             chunks=chunks)
        if cmd == "GetAttachment":
            m = re.fullmatch(r"bytes-(\d+)", params.get("AttachmentName", ""))
            if not m:
                return self._plain(400, "Bad Request")
            n = int(m.group(1))
            return _Response(200, "OK",
                             self._std_headers("application/octet-stream"),
                             stream=pattern_chunks(n), stream_len=n)
        if cmd in ("SendMail", "SmartReply", "SmartForward"):
            h = self._std_headers()
            h[1:1] = [("X-Test-Body-Length", str(req.body_len)),
                      ("X-Test-Body-Sha256", req.body_sha256)]
            return _Response(200, "OK", h)
        if cmd in COMMAND_CODES.values():
            return _Response(200, "OK", self._std_headers(WBXML_CT),
                             SMALL_WBXML)
        return self._plain(400, "Bad Request")

    # ---- sending

    def _send(self, sock, req, resp, mode):
        v10 = req.version == "HTTP/1.0"
        conn_hdr = [v.lower() for v in req.headers_named("Connection")]
        if any("close" in v for v in conn_hdr) or not self.keep_alive:
            resp.close = True
        if v10 and not any("keep-alive" in v for v in conn_hdr):
            resp.close = True
        headers = list(resp.headers)
        no_body = req.method == "HEAD" or resp.status in (204, 304)
        chunked = False
        if resp.chunks is not None:
            if v10:
                resp.close = True           # close-delimited for HTTP/1.0
            else:
                chunked = True
                headers.append(("Transfer-Encoding", "chunked"))
        elif resp.stream is not None:
            headers.append(("Content-Length", str(resp.stream_len)))
        else:
            headers.append(("Content-Length", str(len(resp.body))))
        if self.hop_headers:
            headers[1:1] = [("Connection", "%s, X-Hop-Test" % (
                                "close" if resp.close else "keep-alive")),
                            ("Keep-Alive", "timeout=120, max=100"),
                            ("X-Hop-Test", "must-not-reach-the-client"),
                            ("Upgrade", "h2c")]
        if resp.close and not self.hop_headers:
            headers.append(("Connection", "close"))
        head = ("HTTP/1.1 %d %s\r\n" % (resp.status, resp.reason)
                + "".join("%s: %s\r\n" % hv for hv in headers)
                + "\r\n").encode("latin-1")
        # Record before sending: a test may look as soon as it has read.
        if no_body:
            req.response_body = req.response_wire = b""
        elif chunked:
            req.response_body = b"".join(resp.chunks)
            req.response_wire = b"".join(
                b"%x\r\n" % len(c) + c + b"\r\n" for c in resp.chunks) + \
                b"0\r\n\r\n"
        elif resp.chunks is not None:
            req.response_body = req.response_wire = b"".join(resp.chunks)
        elif resp.stream is None:
            req.response_body = req.response_wire = resp.body
        req.response_status = resp.status
        req.response_head = head
        if mode == "slow_headers":
            step = max(1, len(head) // self.slow_pieces)
            for i in range(0, len(head), step):
                sock.sendall(head[i:i + step])
                if self._stop.wait(self.slow_delay):
                    return
        else:
            sock.sendall(head)
        if no_body:
            return
        if chunked:
            for c in resp.chunks:
                sock.sendall(b"%x\r\n" % len(c) + c + b"\r\n")
                if self._stop.wait(self.chunk_delay):
                    return
            sock.sendall(b"0\r\n\r\n")
        elif resp.chunks is not None:
            sock.sendall(req.response_body)
        elif resp.stream is not None:
            for piece in resp.stream:
                if self._stop.is_set():
                    return
                sock.sendall(piece)
        else:
            sock.sendall(resp.body)


def main(argv):
    ctx = None
    port = 0
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--port":
            port = int(args.pop(0))
        elif a == "--tls":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.pop(0), args.pop(0))
        else:
            print(__doc__)
            return 2
    cas = StandinCAS(tls_context=ctx, port=port).start()
    print("stand-in CAS at", cas.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        cas.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
