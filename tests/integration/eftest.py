"""easfront integration-test library (standard library only).

- free ports picked at run time (bind 127.0.0.1:0);
- a test CA and leaf certificates made at test time with the openssl CLI;
- Daemon: writes a YAML config (DESIGN.md "Configuration"), runs
  `$EASFRONT_BIN run -c FILE`, waits for its TLS port, exposes pid, RSS, VmHWM
  and open fds, stops it with SIGTERM and fails the test on a sanitizer report,
  a fatal log line, an unclean exit or a daemon that died on its own;
- raw TLS connections: send exact bytes, read raw responses, parse heads;
- http.client over TLS with a given SNI and the test CA;
- the byte-exact pass-through comparison used by the proxy tests;
- SitesWorld: sites with a stand-in CAS each, a site map and a daemon, the
  set-up of the routing, Autodiscover and directory suites.

Environment: EASFRONT_BIN (required by every daemon test), EFTEST_KEEP=1
keeps temporary directories, EFTEST_VERBOSE=1 prints every daemon's stderr.
"""

import atexit
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import standin_cas  # noqa: E402

SNI = "eas.contoso.test"
PASSWORD = "Passw0rd!EfTest"
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:",
                     "LeakSanitizer", "WARNING: ThreadSanitizer")
# core/log.c writes "TIME LEVEL message"; level "error" is only used by
# fatal()/fatalx().
FATAL_LINE = re.compile(r"^\S+ error ", re.M)
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te",
              "transfer-encoding", "upgrade", "proxy-authenticate",
              "proxy-authorization", "trailer"}
INTERNAL_HEADERS = ("X-CommonAccessToken", "X-IsFromCafe",
                    "X-SourceCafeServer", "msExchProxyUri",
                    "X-MSExchangeActivityCtx")
KEEP = bool(os.environ.get("EFTEST_KEEP"))
VERBOSE = bool(os.environ.get("EFTEST_VERBOSE"))


# --------------------------------------------------------------------------
# small helpers

def admin_request(port, method, path, host="127.0.0.1", timeout=10):
    """(status, body text) of one request to an admin endpoint."""
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


closed_port = free_port      # nothing listens there: connections are refused


def wait_until(pred, timeout, interval=0.05):
    """Polls pred() until it is truthy or timeout passes; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def mktemp_dir(prefix):
    d = tempfile.mkdtemp(prefix=prefix)
    if not KEEP:
        atexit.register(shutil.rmtree, d, True)
    return d


def ensure_tool(name, package=None):
    """Path of tool name; installs its Debian package with apt-get when it is
    missing. Raises AssertionError (a test must never skip) if that fails."""
    path = shutil.which(name)
    if path:
        return path
    pkg = package or name
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=300"]  # other tests may install too
    for cmd in (["apt-get", "install", "-y", "-q"] + lock + [pkg],
                ["apt-get", "update", "-q"] + lock,
                ["apt-get", "install", "-y", "-q"] + lock + [pkg]):
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=300, check=False)
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("%s is missing and apt-get install %s failed"
                         % (name, pkg))


def run(cmd, timeout=60, input=None, check=True):
    """Runs cmd; returns CompletedProcess with text stdout/stderr."""
    p = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout,
                       text=isinstance(input, str) or input is None)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d: %s %s" % (
            " ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def easfront_bin():
    """$EASFRONT_BIN, or a clear test failure."""
    b = os.environ.get("EASFRONT_BIN")
    if not b:
        raise AssertionError(
            "EASFRONT_BIN is not set: run through ctest, or "
            "EASFRONT_BIN=/path/to/build/src/easfront /usr/bin/python3 -m "
            "unittest -v MODULE")
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        raise AssertionError("EASFRONT_BIN=%s is not an executable file" % b)
    return b


# --------------------------------------------------------------------------
# certificates

def openssl(*args, cwd=None):
    p = subprocess.run(["openssl"] + list(args), capture_output=True,
                       cwd=cwd, timeout=60)
    if p.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (
            " ".join(args), p.stderr.decode(errors="replace")))
    return p.stdout


class Pki:
    """A test CA (ECDSA P-256) in its own directory, and leaves signed by
    it."""

    def __init__(self, directory=None):
        self.dir = directory or mktemp_dir("eftest-pki-")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.ca_cert = os.path.join(self.dir, "ca.pem")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-out", self.ca_key)
        openssl("req", "-x509", "-new", "-key", self.ca_key, "-sha256",
                "-subj", "/O=easfront tests/CN=easfront test CA", "-days", "3",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-out", self.ca_cert)

    def leaf(self, name, sans, kind="ec", days=2):
        """Makes NAME.pem/NAME.key: a server certificate for sans ("DNS:x",
        "IP:127.0.0.1"), kind "ec" (P-256) or "rsa" (2048), valid for days
        (negative: already expired). Returns (cert_path, key_path)."""
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        cert = os.path.join(self.dir, name + ".pem")
        ext = os.path.join(self.dir, name + ".ext")
        if kind == "ec":
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", key)
            usage = "digitalSignature"
        else:
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", key)
            usage = "digitalSignature,keyEncipherment"
        cn = sans[0].split(":", 1)[1]
        openssl("req", "-new", "-key", key, "-subj", "/CN=" + cn,
                "-out", csr)
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,%s\nextendedKeyUsage=serverAuth\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid\n" % (",".join(sans), usage))
        openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey",
                self.ca_key, "-set_serial", "0x" + uuid.uuid4().hex[:16],
                "-days", str(days), "-sha256", "-extfile", ext, "-out", cert)
        return cert, key

    def server_context(self, cert, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return ctx


EAS_SANS = ["DNS:eas.contoso.test", "DNS:site1-eas.contoso.test",
            "DNS:autodiscover.contoso.test"]
_STD = None
_STD_LOCK = threading.Lock()


def standard_pki():
    """The per-process PKI: .ca_cert, .eas_ec, .eas_rsa (same names),
    .fabrikam (*.fabrikam.test) and .cas (cas1.site1.test + IP:127.0.0.1),
    each a (cert, key) pair."""
    global _STD
    with _STD_LOCK:
        if _STD is None:
            p = Pki()
            p.eas_ec = p.leaf("eas-ecdsa", EAS_SANS, "ec")
            p.eas_rsa = p.leaf("eas-rsa", EAS_SANS, "rsa")
            p.fabrikam = p.leaf("fabrikam", ["DNS:*.fabrikam.test"], "ec")
            p.cas = p.leaf("cas1", ["DNS:cas1.site1.test", "IP:127.0.0.1"],
                           "ec")
            _STD = p
        return _STD


def cert_der(path):
    """DER of the first certificate in a PEM file."""
    with open(path) as f:
        pem = f.read()
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----",
                  pem, re.S)
    return ssl.PEM_cert_to_DER_cert(m.group(0))


# --------------------------------------------------------------------------
# YAML (the config is small: dicts, lists, strings, ints, bools)

def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


def yaml_dump(obj, indent=0):
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:\n%s" % (pad, k, yaml_dump(v, indent + 2)))
            elif isinstance(v, (dict, list)):
                out.append("%s%s: %s\n" % (pad, k, "{}" if isinstance(
                    v, dict) else "[]"))
            else:
                out.append("%s%s: %s\n" % (pad, k, _yaml_scalar(v)))
    else:
        for v in obj:
            if isinstance(v, dict):
                inner = yaml_dump(v, indent + 2)
                out.append(pad + "- " + inner[indent + 2:])
            else:
                out.append("%s- %s\n" % (pad, _yaml_scalar(v)))
    return "".join(out)


# --------------------------------------------------------------------------
# the daemon

DEFAULT_TIMEOUTS = {"handshake": 5, "client_header": 5, "client_body": 10,
                    "idle": 30, "upstream_connect": 2,
                    "upstream_response": 10, "long_poll": 120, "drain": 3}
DEFAULT_HEALTH = {"path": "/Microsoft-Server-ActiveSync/healthcheck.htm",
                  "interval": 2, "timeout": 1, "rise": 1, "fall": 3}


class Daemon:
    """One easfront process with its own config and temporary directory.

    tc: the TestCase (cleanup is registered on it); cas_urls: site1's CAS
    URLs; certs: [(cert, key)] (default: ECDSA, RSA twin, *.fabrikam.test);
    timeouts/health: merged over the defaults above; extra: top-level keys
    added to the config; site_extra: keys added to site1."""

    def __init__(self, tc, cas_urls, workers=1, timeouts=None, health=None,
                 certs=None, log_level="info", extra=None, site_extra=None):
        self.tc = tc
        self.bin = easfront_bin()
        self.pki = standard_pki()
        self.dir = mktemp_dir("eftest-d-")
        self.conf_path = os.path.join(self.dir, "easfront.yaml")
        self.pid_path = os.path.join(self.dir, "easfront.pid")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        self.access_path = os.path.join(self.dir, "access.log")
        self.host = "127.0.0.1"   # where it listens (127.0.0.2 for a twin)
        self.port = free_port()
        self.cas_urls = list(cas_urls)
        self.workers = workers
        self.timeouts = dict(DEFAULT_TIMEOUTS, **(timeouts or {}))
        self.health = dict(DEFAULT_HEALTH, **(health or {}))
        self.certs = certs or [self.pki.eas_ec, self.pki.eas_rsa,
                               self.pki.fabrikam]
        self.log_level = log_level
        self.extra = extra or {}
        self.site_extra = site_extra or {}
        self.proc = None
        self.died_early = None
        self.problems = []
        self._cleaned = False
        self._stopped = False
        tc.addCleanup(self._cleanup)

    # ---- config

    def config(self):
        site = {"name": "site1", "cas": self.cas_urls, "health": self.health}
        site.update(self.site_extra)
        c = {
            "site": "site1",
            "pid_file": self.pid_path,
            "workers": self.workers,
            "listen": [{"address": "%s:%d" % (self.host, self.port)}],
            "tls": {"certificates": [{"cert": c, "key": k}
                                     for c, k in self.certs]},
            "sites": [site],
            "upstream": {"ca_file": self.pki.ca_cert},
            "timeouts": self.timeouts,
            "log": {"access": self.access_path, "format": "json",
                    "level": self.log_level},
        }
        c.update(self.extra)
        return c

    def write_config(self):
        with open(self.conf_path, "w") as f:
            f.write(yaml_dump(self.config()))

    # ---- life cycle

    def start(self, wait_healthy=True):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:"
                       "quarantine_size_mb=16:malloc_context_size=20")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        for attempt in range(3):
            self.write_config()
            with open(self.stderr_path, "ab") as err, \
                    open(self.stdout_path, "ab") as out:
                self.proc = subprocess.Popen(
                    [self.bin, "run", "-c", self.conf_path],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    env=env, cwd=self.dir)
            if self._wait_port(10):
                break
            rc = self.proc.poll()
            text = self.stderr_text()
            if rc is not None and attempt < 2 and re.search(
                    r"in use|EADDRINUSE", text, re.I):
                self.port = free_port()
                continue
            if rc is None:
                self._kill()
                self.tc.fail("easfront did not accept on 127.0.0.1:%d within"
                             " 10 s; stderr:\n%s" % (self.port, text[-4000:]))
            self.died_early = rc
            self.tc.fail("easfront exited %s at start-up; config:\n%s\n"
                         "stderr:\n%s" % (rc, self.config_text(),
                                          text[-4000:]))
        if wait_healthy:
            self.wait_healthy()
        return self

    def config_text(self):
        with open(self.conf_path) as f:
            return f.read()

    def _wait_port(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection((self.host, self.port),
                                         timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def wait_healthy(self, timeout=10):
        """Waits until easfront's own healthcheck.htm answers 200 (it does
        while it can reach a CAS of its site)."""
        last = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                c = tls_connect(self.port, timeout=3, host=self.host)
                c.send(b"GET /Microsoft-Server-ActiveSync/healthcheck.htm "
                       b"HTTP/1.1\r\nHost: eas.contoso.test\r\n"
                       b"Connection: close\r\n\r\n")
                r = c.read_response(timeout=3)
                c.close()
                last = r.status_line
                if r.status == 200:
                    return
            except (OSError, ValueError, AssertionError) as e:
                last = repr(e)
            time.sleep(0.2)
        self.tc.fail("easfront never reported healthy within %d s (last: %s)"
                     "; stderr:\n%s" % (timeout, last,
                                        self.stderr_text()[-3000:]))

    def assert_alive(self):
        rc = self.proc.poll() if self.proc else None
        if rc is not None:
            self.died_early = rc
            raise AssertionError("easfront exited with %s; stderr:\n%s" % (
                rc, self.stderr_text()[-4000:]))

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        """SIGTERM, bounded wait, SIGKILL; records problems for the check."""
        if self.proc is None or self._stopped:
            return
        self._stopped = True
        rc = self.proc.poll()
        if rc is not None:
            if self.died_early is None:
                self.died_early = rc
            return
        bound = self.timeouts["drain"] + 10
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(bound)
            if rc != 0:
                self.problems.append("easfront exited %d after SIGTERM" % rc)
        except subprocess.TimeoutExpired:
            self._kill()
            self.problems.append("easfront did not exit within %d s of "
                                 "SIGTERM (killed)" % bound)

    def check_logs(self):
        text = self.stderr_text()
        for m in SANITIZER_MARKERS:
            i = text.find(m)
            if i >= 0:
                self.problems.append("sanitizer report in stderr:\n" +
                                     text[max(0, i - 200):i + 3000])
                break
        fatal = FATAL_LINE.findall(text)
        if fatal:
            lines = [ln for ln in text.splitlines() if FATAL_LINE.match(ln)]
            self.problems.append("fatal line(s) in stderr: %s" % lines[:5])

    def _cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        try:
            self.stop()
        finally:
            self.check_logs()
            if self.died_early is not None:
                self.problems.append("easfront exited on its own (rc %s)"
                                     % self.died_early)
            text = self.stderr_text()
            if VERBOSE or self.problems:
                sys.stderr.write("\n---- easfront stderr (%s) ----\n%s\n"
                                 % (self.dir, text[-6000:]))
        if self.problems:
            raise AssertionError("; ".join(self.problems))

    # ---- observation

    @property
    def pid(self):
        return self.proc.pid

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def access_log_lines(self):
        try:
            with open(self.access_path, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []

    def _status(self, key):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise AssertionError("no %s in /proc/%d/status" % (key, self.pid))

    def rss_kib(self):
        return self._status("VmRSS")

    def hwm_kib(self):
        return self._status("VmHWM")

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    # ---- convenience

    def connect(self, sni=SNI, ctx=None, timeout=10):
        return tls_connect(self.port, sni=sni, ctx=ctx, timeout=timeout,
                           host=self.host)

    def roundtrip(self, raw, sni=None, timeout=10, method=None):
        """New TLS connection, send raw, read one response, close. The SNI
        is the request's Host (without port) unless given."""
        if sni is None:
            m = re.search(rb"\r\nHost: *([A-Za-z0-9.-]+)", raw[:8192], re.I)
            sni = m.group(1).decode() if m and not re.fullmatch(
                rb"[0-9.]+", m.group(1)) else SNI
        c = self.connect(sni=sni, timeout=timeout)
        try:
            c.send(raw)
            return c.read_response(method=method, timeout=timeout)
        finally:
            c.close()


# --------------------------------------------------------------------------
# raw TLS

def client_context(ca=None, verify=True, min_version=None, max_version=None,
                   ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(ca or standard_pki().ca_cert)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def tls_connect(port, sni=SNI, ctx=None, timeout=10, session=None,
                host="127.0.0.1"):
    """A RawConn over TLS to host:port, SNI sni (None: no SNI)."""
    ctx = ctx or client_context()
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        t = ctx.wrap_socket(s, server_hostname=sni, session=session)
    except BaseException:
        s.close()
        raise
    return RawConn(t)


class Response:
    """A parsed response as the client received it."""

    def __init__(self, raw_head):
        self.raw_head = raw_head
        lines = raw_head[:-4].split(b"\r\n")
        self.status_line_bytes = lines[0]
        self.status_line = lines[0].decode("latin-1")
        parts = self.status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") \
                or not parts[1].isdigit():
            raise ValueError("bad status line %r" % self.status_line)
        self.version = parts[0]
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.header_lines = lines[1:]
        self.headers = []
        for ln in self.header_lines:
            name, sep, value = ln.decode("latin-1").partition(":")
            if not sep:
                raise ValueError("bad header line %r" % ln)
            self.headers.append((name, value.strip(" \t")))
        self.body = b""
        self.wire_body = b""
        self.chunked = False
        self.interim = []

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def headers_named(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def has(self, name):
        return self.header(name) is not None

    def __repr__(self):
        return "<Response %r %d body bytes>" % (self.status_line,
                                                len(self.body))


class RawConn:
    """Exact bytes over one (TLS) socket, with a read buffer so that
    pipelined responses can be read one after another."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close with a TCP reset (SO_LINGER 0), no TLS close_notify."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
            socket.socket.close(self.sock)
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout):
        if self.eof:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(262144)
        except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf.extend(data)
        return True

    def _deadline_fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("read timed out")
        return self._fill(left)

    def read_head(self, timeout=10):
        """The next response head (without body); ValueError on EOF."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                raw = bytes(self.buf[:i + 4])
                del self.buf[:i + 4]
                return Response(raw)
            if not self._deadline_fill(deadline):
                raise ValueError("connection closed before a response head "
                                 "(got %r)" % bytes(self.buf[:200]))

    def _readline(self, deadline):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i + 2])
                del self.buf[:i + 2]
                return line
            if not self._deadline_fill(deadline):
                raise ValueError("EOF inside a chunked body")

    def read_body(self, resp, method=None, timeout=10, sink=None):
        """Reads resp's body. Without sink it is kept in resp.body (and the
        framed bytes in resp.wire_body); with sink every decoded piece is
        passed to sink(bytes) and nothing is kept."""
        deadline = time.monotonic() + timeout
        body = bytearray()
        wire = bytearray()

        def out(data):
            if sink:
                sink(data)
            else:
                body.extend(data)
                wire.extend(data)

        def framing(data):
            if not sink:
                wire.extend(data)

        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if method == "HEAD" or resp.status < 200 or resp.status in (204,
                                                                     304):
            pass
        elif te is not None:
            if te.strip().lower() != "chunked":
                raise ValueError("unexpected Transfer-Encoding %r" % te)
            resp.chunked = True
            while True:
                line = self._readline(deadline)
                framing(line)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        t = self._readline(deadline)
                        framing(t)
                        if t == b"\r\n":
                            break
                    break
                left = size
                while left > 0:
                    if not self.buf and not self._deadline_fill(deadline):
                        raise ValueError("EOF inside a chunk")
                    take = bytes(self.buf[:left])
                    del self.buf[:len(take)]
                    left -= len(take)
                    out(take)
                crlf = self._readline(deadline)
                if crlf != b"\r\n":
                    raise ValueError("chunk data not followed by CRLF")
                framing(crlf)
        elif cl is not None:
            left = int(cl)
            while left > 0:
                if not self.buf and not self._deadline_fill(deadline):
                    raise ValueError("EOF with %d body bytes missing" % left)
                take = bytes(self.buf[:left])
                del self.buf[:len(take)]
                left -= len(take)
                out(take)
        else:
            while True:
                if self.buf:
                    out(bytes(self.buf))
                    del self.buf[:]
                if not self._deadline_fill(deadline):
                    break
        resp.body = bytes(body)
        resp.wire_body = bytes(wire)
        return resp

    def read_response(self, method=None, timeout=10, skip_1xx=True):
        """The next complete response; interim 1xx responses are collected
        in .interim unless skip_1xx is False."""
        interim = []
        while True:
            resp = self.read_head(timeout)
            if 100 <= resp.status < 200 and skip_1xx:
                interim.append(resp)
                continue
            break
        resp.interim = interim
        return self.read_body(resp, method=method, timeout=timeout)

    def read_until_close(self, timeout=5):
        """Everything until the peer closes; socket.timeout if it doesn't."""
        deadline = time.monotonic() + timeout
        while self._deadline_fill(deadline):
            pass
        data = bytes(self.buf)
        del self.buf[:]
        return data

    def closed_by_peer(self, timeout=5):
        """True if the peer closes within timeout without sending more."""
        try:
            rest = self.read_until_close(timeout)
        except (socket.timeout, TimeoutError):
            return False
        return rest == b""


# --------------------------------------------------------------------------
# requests

def basic(user, password=PASSWORD):
    return "Basic " + base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode()


def eas_target(cmd, user="alice@contoso.test", device_id="EFTEST0001",
               device_type="iPhone", path="/Microsoft-Server-ActiveSync",
               **params):
    q = "Cmd=%s&User=%s&DeviceId=%s&DeviceType=%s" % (
        cmd, user.replace("@", "%40").replace("\\", "%5C"), device_id,
        device_type)
    for k, v in params.items():
        q += "&%s=%s" % (k, v)
    return path + "?" + q


class Req:
    """A request as exact bytes (.raw) with its X-Test-Mark (.mark)."""

    def __init__(self, raw, mark, head_len):
        self.raw = raw
        self.mark = mark
        self.head = raw[:head_len]
        self.body = raw[head_len:]

    @property
    def request_line(self):
        return self.head.split(b"\r\n", 1)[0]


def http_request(method, target, headers=(), body=b"", host=SNI,
                 version="HTTP/1.1", mark=True, content_length=None):
    """Builds exact request bytes: request line, Host, headers (a list of
    (name, value) or raw b"Name: value" lines, sent as given), X-Test-Mark,
    Content-Length (when body or content_length) and body."""
    m = uuid.uuid4().hex if mark else None
    lines = [("%s %s %s" % (method, target, version)).encode("latin-1")]
    if host is not None:
        lines.append(b"Host: " + host.encode())
    for h in headers:
        lines.append(h if isinstance(h, bytes) else
                     ("%s: %s" % h).encode("latin-1"))
    if m:
        lines.append(b"X-Test-Mark: " + m.encode())
    if content_length is None and body:
        content_length = len(body)
    if content_length is not None:
        lines.append(b"Content-Length: %d" % content_length)
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    return Req(head + body, m, len(head))


def eas_headers(user="alice@contoso.test", auth=True, version="14.1",
                ctype=True):
    h = []
    if auth:
        h.append(("Authorization", basic(user)))
    if version:
        h.append(("MS-ASProtocolVersion", version))
    h.append(("User-Agent", "Apple-iPhone9C1/1602.92"))
    h.append(("X-MS-PolicyKey", "1307199584"))
    if ctype:
        h.append(("Content-Type", "application/vnd.ms-sync.wbxml"))
    h.append(("Accept", "*/*"))
    h.append(("Accept-Language", "en-us"))
    return h


def eas_request(cmd, user="alice@contoso.test", body=b"", auth=True,
                extra=(), method="POST", version="HTTP/1.1", target=None,
                content_length=None, **params):
    """An EAS command request (plain query) as exact bytes."""
    t = target or eas_target(cmd, user=user, **params)
    return http_request(method, t, eas_headers(user, auth) + list(extra),
                        body, version=version, content_length=content_length)


def options_request(user="alice@contoso.test", auth=True):
    h = []
    if auth:
        h.append(("Authorization", basic(user)))
    h.append(("User-Agent", "Apple-iPhone9C1/1602.92"))
    return http_request("OPTIONS", "/Microsoft-Server-ActiveSync", h)


def autodiscover_request(user, path="/autodiscover/autodiscover.xml",
                         auth=True):
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\r\n<Autodiscover xmlns="'
        'http://schemas.microsoft.com/exchange/autodiscover/mobilesync/'
        'requestschema/2006"><Request><EMailAddress>%s</EMailAddress>'
        '<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/'
        'autodiscover/mobilesync/responseschema/2006'
        '</AcceptableResponseSchema></Request></Autodiscover>' % user
    ).encode()
    h = []
    if auth:
        h.append(("Authorization", basic(user)))
    h += [("Content-Type", "text/xml"),
          ("User-Agent", "Apple-iPhone9C1/1602.92")]
    return http_request("POST", path, h, body,
                        host="autodiscover.contoso.test")


# --------------------------------------------------------------------------
# byte-exact comparison

def split_head(raw):
    """(start line, [header lines]) of a raw head, as bytes."""
    lines = raw.split(b"\r\n")
    while lines and lines[-1] == b"":
        lines.pop()
    return lines[0], lines[1:]


def end_to_end_lines(raw_head):
    """(start line, header lines) without hop-by-hop headers and without the
    headers a Connection header names."""
    start, lines = split_head(raw_head)
    listed = set()
    for ln in lines:
        name, _, value = ln.partition(b":")
        if name.strip().lower() == b"connection":
            listed |= {t.strip().lower().decode("latin-1")
                       for t in value.split(b",") if t.strip()}
    keep = []
    for ln in lines:
        name = ln.partition(b":")[0].strip().lower().decode("latin-1")
        if name in HOP_BY_HOP or name in listed:
            continue
        keep.append(ln)
    return start, keep


def assert_passthrough(tc, resp, cas_req):
    """Asserts that the client got exactly what the CAS sent, minus
    hop-by-hop headers: status line, every end-to-end header line (order,
    spelling, bytes) and the body (decoded, when the CAS sent it chunked)."""
    tc.assertIsNotNone(cas_req.response_head, "the CAS did not answer")
    cas_start, cas_lines = end_to_end_lines(cas_req.response_head)
    cl_start, cl_lines = end_to_end_lines(resp.raw_head)
    tc.assertEqual(cl_start, cas_start, "status line changed")
    tc.assertEqual(cl_lines, cas_lines,
                   "end-to-end response headers changed (order, spelling, "
                   "bytes or added/removed)")
    tc.assertEqual(resp.body, cas_req.response_body, "response body changed")


# --------------------------------------------------------------------------
# http.client over TLS with a chosen SNI

class SNIHTTPSConnection(http.client.HTTPSConnection):
    """http.client to 127.0.0.1:port with SNI and host-name check on sni."""

    def __init__(self, port, sni=SNI, context=None, timeout=10):
        super().__init__("127.0.0.1", port, timeout=timeout,
                         context=context or client_context())
        self.sni = sni

    def connect(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.sni)


# --------------------------------------------------------------------------
# test case base

class EfTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.pki = standard_pki()

    def start_cas(self, tls=False, **attrs):
        """A started stand-in CAS (stopped at cleanup); attrs are set on it."""
        ctx = self.pki.server_context(*self.pki.cas) if tls else None
        cas = standin_cas.StandinCAS(tls_context=ctx)
        for k, v in attrs.items():
            setattr(cas, k, v)
        cas.start()
        self.addCleanup(cas.stop)
        return cas

    def start_daemon(self, cas_urls, wait_healthy=True, **kw):
        if isinstance(cas_urls, standin_cas.StandinCAS):
            cas_urls = [cas_urls.url]
        return Daemon(self, cas_urls, **kw).start(wait_healthy=wait_healthy)

    def one_cas_request(self, cas, mark, timeout=5):
        """The single request the CAS got with X-Test-Mark mark."""
        got = cas.wait_for(lambda rs: [r for r in rs
                                       if r.header("X-Test-Mark") == mark
                                       and r.response_head], timeout)
        self.assertEqual(len(got), 1, "expected exactly one request with mark"
                         " %s at the CAS, got %r" % (mark, got))
        return got[0]

    def assert_own_error(self, resp, statuses):
        """An answer easfront made itself: one of statuses, never 500, a
        Content-Length, no X-MS-ASThrottle."""
        self.assertIn(resp.status, statuses, resp.status_line)
        self.assertNotEqual(resp.status, 500)
        self.assertIsNotNone(resp.header("Content-Length"),
                             "easfront's own answer without Content-Length")
        self.assertIsNone(resp.header("X-MS-ASThrottle"),
                          "easfront must not add X-MS-ASThrottle")
        self.assert_own_headers(resp)

    def assert_own_headers(self, resp, cache_control="private, no-store"):
        """Headers on every answer easfront makes itself: never cached on
        the way, never content-sniffed."""
        self.assertEqual(resp.headers_named("Cache-Control"), [cache_control],
                         resp.status_line)
        self.assertEqual(resp.headers_named("X-Content-Type-Options"),
                         ["nosniff"], resp.status_line)


# --------------------------------------------------------------------------
# a world of sites (the routing, Autodiscover and directory suites)

FAST_HEALTH = {"path": "/Microsoft-Server-ActiveSync/healthcheck.htm",
               "interval": 1, "timeout": 1, "rise": 1, "fall": 2}
SITES_SANS = ["DNS:eas.contoso.test", "DNS:site1-eas.contoso.test",
              "DNS:site2-eas.contoso.test", "DNS:site3-eas.contoso.test",
              "DNS:autodiscover.contoso.test"]
_SITES_CERTS = {}
_SITES_CERTS_LOCK = threading.Lock()


def sites_certs():
    """The per-process certificates of SitesWorld: (the front end's, for
    every name of SITES_SANS; {site: its stand-in CAS's} for site1
    (standard_pki().cas) and site2 (cas1.site2.test + IP:127.0.0.1)), each
    a (cert, key) pair."""
    with _SITES_CERTS_LOCK:
        if not _SITES_CERTS:
            pki = standard_pki()
            _SITES_CERTS["fe"] = pki.leaf("sites-eas", SITES_SANS)
            _SITES_CERTS["cas"] = {"site1": pki.cas, "site2": pki.leaf(
                "sites-cas-site2", ["DNS:cas1.site2.test", "IP:127.0.0.1"])}
        return _SITES_CERTS["fe"], _SITES_CERTS["cas"]


class SitesWorld:
    """Sites around one daemon, for one case: site1 is this front end's
    own site. Each site of sites gets a stand-in CAS of its own (named
    cas1.SITE.test; over TLS with its sites_certs() certificate when the
    site is in tls, plain HTTP otherwise), its external URL from
    external_urls (none where that says nothing), health (DEFAULT_HEALTH
    unless given) and site_opts[site] added last. The site map `lines` is
    a TSV file in the daemon's directory (sitemap.file, netbios CONTOSO ->
    contoso.test, default_site when given, then the keys of sitemap);
    autodiscover, when not None, is the `autodiscover:` mode; extra: more
    top-level keys. The daemon (one front-end certificate for every name,
    workers, timeouts) is started unless start is False: then only its
    config is written."""

    def __init__(self, tc, lines, sites=("site1", "site2"), tls=("site2",),
                 external_urls=None, default_site=None, site_opts=None,
                 health=None, autodiscover=None, sitemap=None, extra=None,
                 timeouts=None, workers=1, start=True):
        self.tc = tc
        fe_cert, self.cas_certs = sites_certs()
        self.tls = set(tls)
        self.cas = {}
        for site in sites:
            self.cas[site] = self.start_cas(site)
        external_urls = external_urls or {}
        site_opts = site_opts or {}
        conf_sites = []
        for site in sites:
            s = {"name": site}
            if external_urls.get(site):
                s["external_url"] = external_urls[site]
            s["cas"] = [self.cas[site].url]
            s["health"] = dict(health or DEFAULT_HEALTH)
            s.update(site_opts.get(site, {}))
            conf_sites.append(s)
        self.d = Daemon(tc, [self.cas["site1"].url], workers=workers,
                        timeouts=timeouts, certs=[fe_cert])
        self.map_path = os.path.join(self.d.dir, "sitemap.tsv")
        self.lines = list(lines)
        self.write_map(self.lines)
        conf_map = {"file": self.map_path,
                    "netbios": {"CONTOSO": "contoso.test"}}
        if default_site:
            conf_map["default_site"] = default_site
        conf_map.update(sitemap or {})
        self.d.extra = {"sites": conf_sites, "sitemap": conf_map}
        if autodiscover is not None:
            self.d.extra["autodiscover"] = autodiscover
        self.d.extra.update(extra or {})
        if start:
            self.d.start()
        else:
            self.d.write_config()

    def start_cas(self, site, port=0):
        """A started stand-in CAS for site (stopped at cleanup), on port
        when given (a CAS that comes back)."""
        ctx = None
        if site in self.tls:
            pki = standard_pki()
            ctx = pki.server_context(*self.cas_certs[site])
        cas = standin_cas.StandinCAS(name="cas1.%s.test" % site,
                                     tls_context=ctx, port=port).start()
        self.tc.addCleanup(cas.stop)
        return cas

    def write_map(self, lines):
        """Replaces the site map file (written aside, then renamed)."""
        text = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
        tmp = self.map_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.map_path)

    # ---- talking to the daemon

    def send(self, req, sni=None, timeout=10):
        raw = req.raw if hasattr(req, "raw") else req
        return self.d.roundtrip(raw, sni=sni, timeout=timeout)

    def where(self, mark):
        """Names of the sites whose CAS received a request with mark."""
        return sorted(s for s, c in self.cas.items() if c.find(mark))

    def cas_saw_path(self, path):
        """Names of the sites whose CAS received a request for path."""
        return sorted(s for s, c in self.cas.items()
                      if any((r.path or "") == path for r in c.requests))

    # ---- reload

    def reloads(self, word):
        return self.d.stderr_text().count(word)

    def sighup(self, expect="reloaded", timeout=10):
        """SIGHUP; waits until the daemon logs one more line containing
        expect ("reloaded" or "reload refused"); returns the log text."""
        before = self.reloads(expect)
        os.kill(self.d.pid, signal.SIGHUP)
        ok = wait_until(lambda: self.reloads(expect) > before, timeout)
        text = self.d.stderr_text()
        if not ok:
            raise AssertionError("no %r in the daemon log within %d s of "
                                 "SIGHUP:\n%s" % (expect, timeout,
                                                  text[-3000:]))
        return text

    # ---- access log

    def log_lines(self):
        """The access log's records so far (lines that are not JSON
        left out)."""
        out = []
        for ln in self.d.access_log_lines():
            try:
                out.append(json.loads(ln))
            except ValueError:
                pass
        return out

    def log_entry(self, device, timeout=5):
        """The access-log record of the request from device."""
        def find():
            for rec in self.log_lines():
                if rec.get("device") == device:
                    return rec
            return None
        rec = wait_until(find, timeout)
        if rec is None:
            raise AssertionError("no access-log line for device %s" % device)
        return rec
