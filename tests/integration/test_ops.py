"""Operations: reloads under load, refused reloads, graceful stop, the access
log, the admin endpoint (/metrics, /status, /reload, /route), systemd
readiness, and the operations features of the issue that are still being
built (hashed identities, the text log format, connection limits, listeners
kept across reloads, the new certificate after a reload).

Every case starts its own daemon and stand-in CAS servers on 127.0.0.1 and
bounds its own waits; helpers that only this module needs live here."""

import base64
import calendar
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import unittest
import urllib.parse
import uuid
from unittest import mock

import eftest
import standin_cas as sc
from eftest import (EAS_SANS, PASSWORD, SNI, basic, eas_request, free_port,
                    http_request, options_request, wait_until)

SITE2_URL = "https://site2-eas.contoso.test/Microsoft-Server-ActiveSync"
REMOTE = "remote@contoso.test"          # the site map puts this one in site2
SYNC_BODY = b"\x03\x01j\x00"


# --------------------------------------------------------------------------
# a daemon with two sites, a site map and the admin endpoint

class OpsDaemon(eftest.Daemon):
    """eftest.Daemon plus: site2 (external_url, its own CAS), a TSV site
    map (list of (kind, key, value)), the admin endpoint, extra log keys,
    limits and further listen ports. Attributes can be changed and the
    config rewritten (write_config) before a reload."""

    def __init__(self, tc, cas_urls, site2_urls=None, sitemap=None,
                 admin=True, log=None, limits=None, **kw):
        super().__init__(tc, cas_urls, **kw)
        self.site2_urls = list(site2_urls) if site2_urls else None
        self.site2_url = SITE2_URL
        self.sitemap_lines = list(sitemap) if sitemap is not None else None
        self.sitemap_path = os.path.join(self.dir, "sitemap.tsv")
        self.admin_host = "127.0.0.1"
        self.admin_port = free_port() if admin else None
        self.log_extra = dict(log or {})
        self.limits = limits
        self.listen_ports = None         # None: just self.port

    def config(self):
        c = super().config()
        if self.listen_ports is not None:
            c["listen"] = [{"address": "127.0.0.1:%d" % p}
                           for p in self.listen_ports]
        if self.site2_urls:
            c["sites"].append({"name": "site2",
                               "external_url": self.site2_url,
                               "cas": self.site2_urls,
                               "health": dict(self.health)})
        if self.sitemap_lines is not None:
            c["sitemap"] = {"file": self.sitemap_path,
                            "default_site": "site1",
                            "netbios": {"CONTOSO": "contoso.test"}}
        if self.admin_port:
            c["admin"] = {"listen": "127.0.0.1:%d" % self.admin_port}
        c["log"].update(self.log_extra)
        if self.limits:
            c["limits"] = dict(self.limits)
        return c

    def write_sitemap(self, text=None):
        if text is None:
            text = "".join("%s\t%s\t%s\n" % ln for ln in self.sitemap_lines)
        with open(self.sitemap_path, "w") as f:
            f.write(text)

    def write_config(self):
        if self.sitemap_lines is not None:
            self.write_sitemap()
        super().write_config()

    # ---- the admin endpoint

    def admin(self, method, path, timeout=10):
        """(status, body text) of one admin request."""
        return eftest.admin_request(self.admin_port, method, path,
                                    host=self.admin_host, timeout=timeout)

    def metrics_text(self):
        status, text = self.admin("GET", "/metrics")
        if status != 200:
            raise AssertionError("GET /metrics: %d %s" % (status, text))
        return text

    def metrics(self):
        return parse_metrics(self.metrics_text())

    def status(self):
        code, text = self.admin("GET", "/status")
        if code != 200:
            raise AssertionError("GET /status: %d %s" % (code, text))
        return json.loads(text)

    def generation(self):
        return self.status()["generation"]

    def wait_generation(self, gen, timeout=10):
        """Waits until /status shows generation gen; fails otherwise."""
        got = wait_until(lambda: self.generation() == gen, timeout, 0.05)
        if not got:
            raise AssertionError("generation %d never came (still %r); "
                                 "stderr:\n%s" % (gen, self.generation(),
                                                  self.stderr_text()[-2000:]))

    def reload(self, how):
        """Reloads by "hup" (SIGHUP), "cmd" (`easfront reload -c`) or
        "post" (POST /reload)."""
        if how == "hup":
            self.proc.send_signal(signal.SIGHUP)
        elif how == "cmd":
            eftest.run([self.bin, "reload", "-c", self.conf_path], timeout=20)
        else:
            code, text = self.admin("POST", "/reload", timeout=30)
            if code != 200:
                raise AssertionError("POST /reload: %d %s" % (code, text))

    def records(self):
        """The access log as JSON objects (a line that is not one fails)."""
        out = []
        for ln in self.access_log_lines():
            if not ln.strip():
                continue
            try:
                rec = json.loads(ln)
            except ValueError:
                raise AssertionError("access-log line is not JSON: %r" % ln)
            if not isinstance(rec, dict):
                raise AssertionError("access-log line is not an object: %r"
                                     % ln)
            out.append(rec)
        return out

    def stopped_by_test(self):
        """The test stops the daemon itself (SIGTERM, its own checks); the
        cleanup still checks the log, and kills a daemon left running."""
        self._stopped = True
        self.tc.addCleanup(self._kill)


def parse_metrics(text):
    """{(name, ((label, value), ...)): float} of Prometheus text."""
    out = {}
    sample = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)"
                        r"(?:\s+-?\d+)?$")
    label = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for ln in text.splitlines():
        if not ln.strip() or ln.startswith("#"):
            continue
        m = sample.match(ln)
        if not m:
            raise AssertionError("not a Prometheus sample line: %r" % ln)
        labels = tuple(sorted(label.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def mval(m, name, **labels):
    """A sample's value; 0 when it is absent (counters that are still 0 may
    be left out)."""
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def mhas(m, name):
    return any(k[0] == name for k in m)


# --------------------------------------------------------------------------
# certificates, connections, requests

_CERTS = {}
_CERTS_LOCK = threading.Lock()


def ops_cert(name):
    """An extra ECDSA leaf for the EAS names (own serial), made once."""
    with _CERTS_LOCK:
        if name not in _CERTS:
            _CERTS[name] = eftest.standard_pki().leaf("ops-" + name,
                                                      EAS_SANS, "ec")
        return _CERTS[name]


def der_serial(der):
    """The serial number of a DER certificate."""
    def tlv(i):
        tag, n = der[i], der[i + 1]
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(der[i:i + k], "big")
            i += k
        return tag, i, n
    _, i, _ = tlv(0)                   # Certificate
    _, i, _ = tlv(i)                   # tbsCertificate
    tag, j, n = tlv(i)
    if tag == 0xA0:                    # [0] version
        tag, j, n = tlv(j + n)
    if tag != 0x02:
        raise ValueError("no serial INTEGER in the certificate")
    return int.from_bytes(der[j:j + n], "big")


def file_serial(cert_path):
    return der_serial(eftest.cert_der(cert_path))


def conn_serial(conn):
    return der_serial(conn.sock.getpeercert(binary_form=True))


def handshake_serial(port, sni=SNI):
    """Serial of the certificate a new handshake gets (sni None: no SNI,
    the certificate still verified against the test CA)."""
    ctx = eftest.client_context()
    if sni is None:
        ctx.check_hostname = False
    c = eftest.tls_connect(port, sni=sni, ctx=ctx, timeout=10)
    try:
        return conn_serial(c)
    finally:
        c.close()


def wait_serial(port, want, timeout=2.0, sni=SNI):
    """The serial new handshakes get, once it is want (workers take a new
    generation a moment after it is published) or when timeout passes;
    then five more handshakes must agree (no flapping back)."""
    got = wait_until(lambda: handshake_serial(port, sni) == want, timeout,
                     0.05)
    if not got:
        return handshake_serial(port, sni)
    seen = {handshake_serial(port, sni) for _ in range(5)}
    return seen.pop() if len(seen) == 1 else seen


def tls_connect_from(port, src, sni=SNI, timeout=10):
    """A RawConn over TLS to 127.0.0.1:port from source address src (any
    127/8 address is loopback on Linux: a second "client")."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(src, 0))
    try:
        t = eftest.client_context().wrap_socket(s, server_hostname=sni)
    except BaseException:
        s.close()
        raise
    return eftest.RawConn(t)


def listen_inodes(port):
    """Inodes of the LISTEN sockets on 127.0.0.1:port (/proc/net/tcp)."""
    want = "0100007F:%04X" % port
    out = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for ln in f:
            p = ln.split()
            if p[1] == want and p[3] == "0A":
                out.add(p[9])
    return out


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def bearer_token(upn):
    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(
            b"=").decode()
    sig = base64.urlsafe_b64encode(os.urandom(64)).rstrip(b"=").decode()
    return "%s.%s.%s" % (b64({"alg": "RS256", "typ": "JWT"}),
                         b64({"aud": "https://outlook.office365.com/",
                              "upn": upn, "unique_name": upn}), sig)


def dev():
    """A unique device id: it finds a request's access-log line."""
    return "OPS" + uuid.uuid4().hex[:13].upper()


def ping(heartbeat, **kw):
    return eas_request("Ping", body=sc.ping_request(heartbeat), **kw)


class Held(threading.Thread):
    """One request on its own connection in a thread: .resp, .error, .took."""

    def __init__(self, d, req, timeout, pieces=None, gap=0.0):
        super().__init__(daemon=True)
        self.d = d
        self.req = req
        self.timeout = timeout
        self.pieces = pieces            # send the body in this many pieces
        self.gap = gap
        self.resp = None
        self.error = None
        self.took = None
        self.start()

    def run(self):
        t0 = time.monotonic()
        try:
            c = self.d.connect(timeout=self.timeout)
            try:
                if self.pieces:
                    head, body = self.req.head, self.req.body
                    c.send(head)
                    step = -(-len(body) // self.pieces)
                    for i in range(0, len(body), step):
                        time.sleep(self.gap)
                        c.send(body[i:i + step])
                else:
                    c.send(self.req.raw)
                self.resp = c.read_response(timeout=self.timeout)
            finally:
                c.close()
        except Exception as e:          # reported by the test
            self.error = e
        self.took = time.monotonic() - t0


def limited_answer(conn, req, wait=1.0):
    """What a connection beyond a limit gets: a response easfront may send
    right after the handshake, or else its answer to req."""
    try:
        conn._fill(wait)
    except (socket.timeout, TimeoutError):
        pass
    if not conn.buf and not conn.eof:
        conn.send(req.raw)
    return conn.read_response(timeout=10)


# --------------------------------------------------------------------------

class OpsCase(eftest.EfTestCase):

    def two_sites(self, sitemap=(), **kw):
        """Site1's and site2's stand-in CAS and a started OpsDaemon whose
        site map holds REMOTE -> site2 plus sitemap."""
        cas1 = self.start_cas()
        cas2 = self.start_cas()
        cas2.name = "cas1.site2.test"
        lines = [("user", REMOTE, "site2")] + list(sitemap)
        d = OpsDaemon(self, [cas1.url], site2_urls=[cas2.url],
                      sitemap=lines, **kw)
        d.start()
        return cas1, cas2, d

    def assert_ok(self, d, n=1, user="alice@contoso.test"):
        for _ in range(n):
            r = d.roundtrip(eas_request("FolderSync", user=user).raw)
            self.assertEqual(r.status, 200, r.status_line)


# --------------------------------------------------------------------------
# 1. reloads under load

class ReloadUnderLoad(OpsCase):

    PINGS = 200
    HEARTBEAT = 30
    RELOADS = 10

    def test_ten_reloads_under_load(self):
        cert_a, cert_b = ops_cert("a"), ops_cert("b")
        serial = {cert_a: file_serial(cert_a[0]),
                  cert_b: file_serial(cert_b[0])}
        self.assertNotEqual(serial[cert_a], serial[cert_b])
        cas1, cas2, d = self.two_sites(workers=2, certs=[cert_a], timeouts={
            "long_poll": self.HEARTBEAT + 60, "idle": 30})
        self.assertEqual(handshake_serial(d.port), serial[cert_a])

        # the held Pings
        pings = [Held(d, ping(self.HEARTBEAT), self.HEARTBEAT + 40)
                 for _ in range(self.PINGS)]
        marks = {p.req.mark for p in pings}
        got = cas1.wait_for(lambda rs: len([
            r for r in rs if r.header("X-Test-Mark") in marks
            and r.complete]) >= self.PINGS, 25)
        self.assertTrue(got, "only %d of %d Pings reached the CAS" % (len([
            r for r in cas1.requests if r.header("X-Test-Mark") in marks]),
            self.PINGS))
        t_held = time.monotonic()

        # the ordinary load: bounded in count and time
        stop = threading.Event()
        lock = threading.Lock()
        stats = {"ok": 0, "failures": [], "serials": set()}

        def load():
            deadline = time.monotonic() + 120
            n = 0
            while not stop.is_set() and n < 3000 and \
                    time.monotonic() < deadline:
                try:
                    c = d.connect(timeout=10)
                    try:
                        s = conn_serial(c)
                        for req in (eas_request("FolderSync"),
                                    eas_request("Sync", body=SYNC_BODY),
                                    options_request()):
                            c.send(req.raw)
                            r = c.read_response(timeout=10)
                            n += 1
                            with lock:
                                if r.status == 200:
                                    stats["ok"] += 1
                                else:
                                    stats["failures"].append(r.status_line)
                    finally:
                        c.close()
                    with lock:
                        stats["serials"].add(s)
                except Exception as e:
                    with lock:
                        stats["failures"].append(repr(e))
                    n += 1

        loaders = [threading.Thread(target=load, daemon=True)
                   for _ in range(4)]
        for t in loaders:
            t.start()
        self.addCleanup(stop.set)

        # ten reloads of config, site map and certificate
        ways = ("hup", "cmd", "post")
        for i in range(1, self.RELOADS + 1):
            time.sleep(0.5)
            cert = cert_b if i % 2 else cert_a
            user = "reload%d@contoso.test" % i
            d.certs = [cert]
            d.sitemap_lines.append(("user", user, "site2"))
            d.site2_url = ("https://site2-eas-%d.contoso.test/"
                           "Microsoft-Server-ActiveSync" % i)
            d.timeouts["idle"] = 30 + i % 2
            d.write_config()
            d.reload(ways[i % 3])
            d.wait_generation(1 + i)
            with self.subTest(reload=i, how=ways[i % 3]):
                self.assertEqual(wait_serial(d.port, serial[cert]),
                                 serial[cert],
                                 "a new handshake after reload %d did not "
                                 "get the new certificate" % i)
                st = d.status()
                self.assertEqual(st["sites"][1]["external_url"], d.site2_url)
                code, text = d.admin("GET", "/route?user=%s&version=14.1"
                                     % urllib.parse.quote(user))
                self.assertEqual(code, 200)
                self.assertIn("REDIRECT 451", text,
                              "the new site map is not serving")
        reload_time = time.monotonic() - t_held

        for p in pings:
            p.join(max(1.0, t_held + self.HEARTBEAT + 40 - time.monotonic()))
        stop.set()
        for t in loaders:
            t.join(20)
        m = d.metrics()
        print("\n%d reloads in %.1f s while %d Pings were held; %d ordinary "
              "requests, %d failures; serials seen %s" % (
                  self.RELOADS, reload_time, self.PINGS, stats["ok"],
                  len(stats["failures"]), sorted(stats["serials"])))
        self.assertLess(reload_time, self.HEARTBEAT - 5,
                        "the reloads did not all happen while the Pings "
                        "were held")
        self.assertEqual(stats["failures"], [],
                         "ordinary requests failed during the reloads")
        self.assertGreaterEqual(stats["ok"], 100, "too little load to tell")
        self.assertEqual(stats["serials"], {serial[cert_a], serial[cert_b]})
        bad = [(p.error, p.resp) for p in pings
               if p.error is not None or p.resp is None
               or p.resp.status != 200 or p.resp.body != sc.ping_response(1)]
        self.assertEqual(bad, [], "%d of %d held Pings did not complete "
                         "with 200" % (len(bad), self.PINGS))
        self.assertGreaterEqual(min(p.took for p in pings),
                                self.HEARTBEAT - 2)
        self.assertEqual(mval(m, "easfront_reloads_total", result="ok"),
                         self.RELOADS)
        self.assertEqual(mval(m, "easfront_reloads_total", result="failed"),
                         0)
        self.assertEqual(mval(m, "easfront_config_generation"),
                         1 + self.RELOADS)
        d.assert_alive()


    def test_handshakes_straddling_reloads(self):
        """Connections accepted before two reloads whose ClientHello comes
        after them: the generation they were accepted under is gone by
        then; the handshakes must still complete and be served."""
        cas = self.start_cas()
        d = OpsDaemon(self, [cas.url], workers=2).start()
        socks = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            self.addCleanup(s.close)
            socks.append(s)
        time.sleep(0.3)                 # accepted, waiting for ClientHello
        for gen in (2, 3):
            d.reload("post")
            self.assertEqual(d.generation(), gen)
            time.sleep(0.3)             # every worker took the new one
        statuses = []
        for s in socks:
            try:
                t = eftest.client_context().wrap_socket(
                    s, server_hostname=SNI)
                c = eftest.RawConn(t)
                c.send(options_request().raw)
                statuses.append(c.read_response().status)
                c.close()
            except (OSError, ValueError) as e:
                statuses.append(repr(e))
        self.assertEqual(statuses, [200] * len(socks),
                         "handshakes begun before a reload failed after it")
        self.assert_ok(d)
        d.assert_alive()


# --------------------------------------------------------------------------
# 2. refused reloads

class RefusedReload(OpsCase):

    def failed(self, d):
        return mval(d.metrics(), "easfront_reloads_total", result="failed")

    def wait_failed(self, d, n):
        self.assertTrue(wait_until(lambda: self.failed(d) >= n, 10),
                        "easfront_reloads_total{result=\"failed\"} did not "
                        "reach %d" % n)

    def assert_old_serving(self, d, gen, url, cert):
        self.assertEqual(d.generation(), gen, "a refused reload changed "
                         "the generation")
        self.assertEqual(d.status()["sites"][1]["external_url"], url)
        self.assert_ok(d, 3)
        r = d.roundtrip(eas_request("Sync", user=REMOTE).raw)
        self.assertEqual(r.status, 451)
        self.assertEqual(r.header("X-MS-Location"), url)
        code, text = d.admin("GET", "/route?user=new%40contoso.test"
                                    "&version=14.1")
        self.assertIn("PROXY", text, "the refused site map is serving")
        self.assertEqual(handshake_serial(d.port), file_serial(cert[0]))

    def test_bad_config_site_map_and_certificate_refused(self):
        cert_a, cert_b = ops_cert("a"), ops_cert("b")
        cas1, cas2, d = self.two_sites(certs=[cert_a])
        gen = d.generation()
        failed = self.failed(d)
        good_url = d.site2_url

        # config: an unknown key, then a fallback naming no site; each bad
        # file also changes site2's URL, which must not take effect
        d.site2_url = "https://changed.contoso.test/Microsoft-Server-" \
                      "ActiveSync"
        base = eftest.yaml_dump(d.config()).splitlines(True)
        fb = [i for i, ln in enumerate(base) if ln.strip().startswith(
            "- name: \"site2\"")][0]
        bad_configs = [
            (base[:1] + ["bogus_key: 1\n"] + base[1:], 2, "bogus_key"),
            (base[:fb + 1] + ["    fallback: \"nosuch\"\n"] + base[fb + 1:],
             fb + 2, "nosuch"),
        ]
        for text, line, word in bad_configs:
            with self.subTest(config_error=word):
                with open(d.conf_path, "w") as f:
                    f.write("".join(text))
                mark = len(d.stderr_text())
                d.reload("hup")
                failed += 1
                self.wait_failed(d, failed)
                log = d.stderr_text()[mark:]
                where = re.escape(d.conf_path) + r":%d: " % line
                self.assertRegex(log, where + r".*" + word,
                                 "the log does not name %s:%d" % (
                                     d.conf_path, line))
                self.assert_old_serving(d, gen, good_url, cert_a)

        # site map: line 3 names an unknown database; line 2 would send a
        # new user to site2
        d.site2_url = good_url
        d.write_config()
        d.write_sitemap("user\t%s\tsite2\nuser\tnew@contoso.test\tsite2\n"
                        "user\tb@contoso.test\tDB99\n" % REMOTE)
        mark = len(d.stderr_text())
        d.reload("cmd")
        failed += 1
        self.wait_failed(d, failed)
        self.assertRegex(d.stderr_text()[mark:],
                         re.escape(d.sitemap_path) + r":3: .*DB99")
        self.assert_old_serving(d, gen, good_url, cert_a)
        code, text = d.admin("POST", "/reload")
        failed += 1
        self.assertEqual(code, 422, "POST /reload of a bad site map: %d %s"
                         % (code, text))
        self.assertIn(d.sitemap_path + ":3: ", text)
        self.assertEqual(self.failed(d), failed)
        self.assert_old_serving(d, gen, good_url, cert_a)

        # certificate: B's certificate with A's key
        d.write_sitemap()
        d.certs = [(cert_b[0], cert_a[1])]
        d.write_config()
        mark = len(d.stderr_text())
        d.reload("hup")
        failed += 1
        self.wait_failed(d, failed)
        self.assertIn(cert_b[0], d.stderr_text()[mark:],
                      "the log does not name the certificate")
        self.assert_old_serving(d, gen, good_url, cert_a)

        # and a good one is taken again
        d.certs = [cert_b]
        d.write_config()
        d.reload("post")
        self.assertEqual(d.generation(), gen + 1)
        self.assertEqual(wait_serial(d.port, file_serial(cert_b[0])),
                         file_serial(cert_b[0]))
        self.assertEqual(mval(d.metrics(), "easfront_reloads_total",
                              result="ok"), 1)


# --------------------------------------------------------------------------
# 3. graceful stop

class GracefulStop(OpsCase):

    def test_sigterm_lets_requests_in_flight_finish(self):
        cas = self.start_cas()
        d = OpsDaemon(self, [cas.url], workers=2, admin=False,
                      timeouts={"drain": 20}).start()
        idle = d.connect()
        self.addCleanup(idle.close)
        idle.send(eas_request("FolderSync").raw)
        self.assertEqual(idle.read_response().status, 200)

        held = Held(d, ping(6), 30)
        size = 64 * 1024
        upload = Held(d, eas_request("SendMail", body=os.urandom(size)), 30,
                      pieces=16, gap=0.3)
        self.assertTrue(cas.wait_for(lambda rs: [
            r for r in rs if r.header("X-Test-Mark") == held.req.mark
            and r.complete], 5), "the Ping never reached the CAS")
        self.assertTrue(cas.wait_for(lambda rs: [
            r for r in rs if r.header("X-Test-Mark") == upload.req.mark
            and 0 < r.body_len < size], 5),
            "the upload was not under way at the CAS")

        d.stopped_by_test()
        t_term = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        self.assertTrue(wait_until(lambda: refused(d.port), 3, 0.02),
                        "new connections are still accepted after SIGTERM")
        self.assertTrue(idle.closed_by_peer(3), "an idle keep-alive "
                        "connection was not closed at SIGTERM")
        self.assertTrue(held.is_alive(), "the Ping ended before its time")
        self.assertTrue(refused(d.port), "the listener came back")
        try:
            rc = d.proc.wait(25)
        except subprocess.TimeoutExpired:
            self.fail("easfront did not exit within 25 s of SIGTERM")
        t_exit = time.monotonic()
        held.join(5)
        upload.join(5)
        self.assertEqual(rc, 0, "exit code after SIGTERM")
        self.assertIsNone(held.error, "the held Ping failed: %r"
                          % held.error)
        self.assertEqual(held.resp.status, 200)
        self.assertEqual(held.resp.body, sc.ping_response(1))
        self.assertIsNone(upload.error, "the upload failed: %r"
                          % upload.error)
        self.assertEqual(upload.resp.status, 200)
        self.assertEqual(upload.resp.header("X-Test-Body-Length"), str(size))
        self.assertEqual(upload.resp.header("X-Test-Body-Sha256"),
                         hashlib.sha256(upload.req.body).hexdigest())
        print("\nSIGTERM -> exit 0 after %.1f s (drain 20 s); the Ping took "
              "%.1f s, the upload %.1f s" % (t_exit - t_term, held.took,
                                             upload.took))
        self.assertLess(t_exit - t_term, 12, "easfront waited for the "
                        "whole drain with nothing in flight")

    def test_drain_is_bounded(self):
        cas = self.start_cas()
        d = OpsDaemon(self, [cas.url], admin=False,
                      timeouts={"drain": 2}).start()
        held = Held(d, ping(40), 45)
        self.assertTrue(cas.wait_for(lambda rs: [
            r for r in rs if r.header("X-Test-Mark") == held.req.mark
            and r.complete], 5))
        d.stopped_by_test()
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("easfront ignored timeouts.drain (2 s)")
        took = time.monotonic() - t0
        self.assertEqual(rc, 0)
        self.assertGreaterEqual(took, 1.5, "the drain did not wait")
        self.assertLess(took, 8)
        held.join(5)
        self.assertFalse(held.is_alive())


# --------------------------------------------------------------------------
# 4. the access log

FIELDS = ("time", "client", "sni", "method", "cmd", "version", "user",
          "device", "device_type", "decision", "reason", "site", "upstream",
          "status", "bytes_in", "bytes_out", "ms_head", "ms_connect",
          "ms_first_byte", "ms_total", "term")


def version_is(rec, v):
    return str(rec["version"]) in (v, v.replace(".", ""))


class AccessLog(OpsCase):

    def by_device(self, d, device):
        got = wait_until(lambda: [r for r in d.records()
                                  if r.get("device") == device], 5)
        self.assertEqual(len(got or []), 1, "expected one access-log line "
                         "for device %s: %r" % (device, d.records()[-5:]))
        return got[0]

    def check_common(self, rec, method, status):
        for f in FIELDS:
            self.assertIn(f, rec, "field %s missing: %r" % (f, rec))
        self.assertRegex(rec["time"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        t = calendar.timegm(time.strptime(rec["time"][:19],
                                          "%Y-%m-%dT%H:%M:%S"))
        self.assertLess(abs(t - time.time()), 60, "time is not now (UTC)")
        self.assertEqual(rec["client"], "127.0.0.1")
        self.assertEqual(rec["sni"], SNI)
        self.assertEqual(rec["method"], method)
        self.assertEqual(rec["status"], status)
        for f in ("bytes_in", "bytes_out", "ms_head", "ms_connect",
                  "ms_first_byte", "ms_total"):
            self.assertIsInstance(rec[f], int, f)
        self.assertGreaterEqual(rec["ms_head"], 0)
        self.assertGreaterEqual(rec["ms_total"], rec["ms_head"])
        self.assertGreaterEqual(rec["ms_total"], rec["ms_first_byte"])
        self.assertLess(rec["ms_total"], 10000)
        self.assertGreater(rec["bytes_out"], 0)
        self.assertIsInstance(rec["term"], str)
        self.assertTrue(rec["term"])

    def check_proxied(self, rec, cas, resp, body_len):
        self.assertEqual(rec["decision"], "proxy")
        self.assertEqual(rec["site"], "site1")
        self.assertIn(str(cas.port), rec["upstream"])
        self.assertGreaterEqual(rec["bytes_in"], body_len)
        self.assertGreaterEqual(rec["bytes_out"], len(resp.body))
        self.assertGreaterEqual(rec["ms_first_byte"], 0)
        self.assertEqual(rec["term"], "--")
        self.assertTrue(rec["reason"] and rec["reason"] != "-")

    def test_fields_and_no_credentials_and_reopen(self):
        cas1, cas2, d = self.two_sites()
        auths = []

        # proxied
        dv = dev()
        body = os.urandom(300)
        req = eas_request("FolderSync", body=body, device_id=dv)
        auths.append(basic("alice@contoso.test"))
        resp = d.roundtrip(req.raw)
        self.assertEqual(resp.status, 200)
        rec = self.by_device(d, dv)
        with self.subTest(line="proxied"):
            self.check_common(rec, "POST", 200)
            self.check_proxied(rec, cas1, resp, len(body))
            self.assertEqual(rec["cmd"], "FolderSync")
            self.assertTrue(version_is(rec, "14.1"), rec["version"])
            self.assertEqual(rec["user"], "alice@contoso.test")
            self.assertEqual(rec["device_type"], "iPhone")

        # throttled by the CAS
        dv = dev()
        req = eas_request("Sync", user="throttled@contoso.test",
                          body=SYNC_BODY, device_id=dv)
        auths.append(basic("throttled@contoso.test"))
        resp = d.roundtrip(req.raw)
        self.assertEqual(resp.status, 503)
        rec = self.by_device(d, dv)
        with self.subTest(line="throttled"):
            self.check_common(rec, "POST", 503)
            self.check_proxied(rec, cas1, resp, len(SYNC_BODY))
            self.assertEqual(rec["cmd"], "Sync")
            self.assertEqual(rec["user"], "throttled@contoso.test")

        # redirected: REMOTE's mailbox is in site2, EAS 14.1
        dv = dev()
        req = eas_request("Sync", user=REMOTE, body=SYNC_BODY, device_id=dv)
        auths.append(basic(REMOTE))
        resp = d.roundtrip(req.raw)
        self.assertEqual(resp.status, 451)
        self.assertEqual(resp.header("X-MS-Location"), SITE2_URL)
        rec = self.by_device(d, dv)
        with self.subTest(line="redirect"):
            self.check_common(rec, "POST", 451)
            self.assertEqual(rec["decision"], "redirect")
            self.assertEqual(rec["site"], "site2")
            self.assertEqual(rec["upstream"], "-")
            self.assertEqual(rec["user"], REMOTE)
            self.assertEqual(rec["cmd"], "Sync")
            self.assertTrue(version_is(rec, "14.1"), rec["version"])
            self.assertEqual(rec["term"], "--")

        # a Bearer token: the user comes from its upn claim
        dv = dev()
        token = bearer_token("bearer@contoso.test")
        req = http_request("POST", eftest.eas_target(
            "FolderSync", user="bearer@contoso.test", device_id=dv),
            [("Authorization", "Bearer " + token),
             ("MS-ASProtocolVersion", "16.1")], SYNC_BODY)
        resp = d.roundtrip(req.raw)
        self.assertEqual(resp.status, 200)
        rec = self.by_device(d, dv)
        with self.subTest(line="bearer"):
            self.check_common(rec, "POST", 200)
            self.assertEqual(rec["user"], "bearer@contoso.test")
            self.assertTrue(version_is(rec, "16.1"), rec["version"])

        # rejected by easfront: a smuggling attempt (CL + TE), and /owa
        n = len(d.records())
        target = eftest.eas_target("SendMail", device_id=dev()).encode()
        smuggle = (b"POST " + target + b" HTTP/1.1\r\nHost: " + SNI.encode()
                   + b"\r\nAuthorization: " + basic("alice@contoso.test")
                   .encode() + b"\r\nContent-Length: 5\r\nTransfer-Encoding:"
                   b" chunked\r\n\r\n0\r\n\r\nGET /owa HTTP/1.1\r\nHost: x"
                   b"\r\n\r\n")
        resp = d.roundtrip(smuggle)
        self.assertEqual(resp.status, 400)
        owa = http_request("GET", "/owa/auth/logon.aspx", [
            ("Authorization", basic("owa@contoso.test"))])
        auths.append(basic("owa@contoso.test"))
        resp = d.roundtrip(owa.raw)
        self.assertEqual(resp.status, 404)
        got = wait_until(lambda: len(d.records()) >= n + 2, 5)
        self.assertTrue(got, "no access-log lines for the rejected requests")
        recs = d.records()[n:]
        self.assertEqual([r.get("status") for r in recs], [400, 404],
                         "one line each for the 400 and the 404: %r" % recs)
        for rec, method in zip(recs, ("POST", "GET")):
            with self.subTest(line=rec["status"]):
                self.check_common(rec, method, rec["status"])
                self.assertEqual(rec["decision"], "reject")
                self.assertEqual(rec["upstream"], "-")
                self.assertEqual(rec["site"], "-")
                self.assertNotIn(rec["reason"], ("", "-"), "a refusal "
                                 "without a reason")
                self.assertNotEqual(rec["term"], "--",
                                    "a request easfront refused ended "
                                    "normally")
        time.sleep(0.3)
        self.assertEqual([r for r in cas1.client_requests()
                          if r.path and r.path.lower().startswith("/owa")],
                         [])

        # no credentials anywhere: access log and daemon log
        with open(d.access_path, "rb") as f:
            whole = f.read().decode("utf-8", "replace")
        for where, text in (("access log", whole),
                            ("daemon log", d.stderr_text())):
            self.assertNotIn(PASSWORD, text, "password in the %s" % where)
            for a in auths:
                self.assertNotIn(a.split(" ", 1)[1], text,
                                 "Authorization value in the %s" % where)
            for part in token.split("."):
                self.assertNotIn(part, text, "Bearer token in the %s" % where)

        # SIGUSR1 after logrotate's rename: new lines go to a new file
        rotated = d.access_path + ".1"
        os.rename(d.access_path, rotated)
        d.proc.send_signal(signal.SIGUSR1)
        self.assertTrue(wait_until(lambda: os.path.exists(d.access_path), 5),
                        "SIGUSR1 did not reopen the access log")
        with open(rotated) as f:
            old = len(f.read().splitlines())
        dv = dev()
        self.assertEqual(d.roundtrip(eas_request(
            "FolderSync", device_id=dv).raw).status, 200)
        self.by_device(d, dv)
        with open(rotated) as f:
            self.assertEqual(len(f.read().splitlines()), old,
                             "a line went to the renamed file after SIGUSR1")
        d.assert_alive()


# --------------------------------------------------------------------------
# 5. the admin endpoint

class Admin(OpsCase):

    def test_metrics_pass_promtool(self):
        promtool = eftest.ensure_tool("promtool", "prometheus")
        cas1, cas2, d = self.two_sites()
        self.assert_ok(d, 2)
        d.roundtrip(eas_request("Sync", user=REMOTE).raw)
        text = d.metrics_text()
        p = subprocess.run([promtool, "check", "metrics"], input=text,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""),
                         "promtool check metrics:\n" + text[:3000])
        m = parse_metrics(text)
        for name in ("easfront_requests_total",
                     "easfront_requests_by_version_total",
                     "easfront_requests_by_decision_total",
                     "easfront_requests_by_site_total",
                     "easfront_responses_total",
                     "easfront_upstream_first_byte_seconds_bucket",
                     "easfront_upstream_first_byte_seconds_count",
                     "easfront_client_connections",
                     "easfront_upstream_connections",
                     "easfront_held_requests",
                     "easfront_tls_handshakes_total",
                     "easfront_tls_resumed_total",
                     "easfront_reloads_total",
                     "easfront_config_generation"):
            self.assertTrue(mhas(m, name), "%s missing" % name)

    def test_counters_and_gauges_move(self):
        cas1, cas2, d = self.two_sites()
        self.assertTrue(wait_until(lambda: mval(
            d.metrics(), "easfront_client_connections") == 0, 5))
        m0 = d.metrics()
        n = 5
        c = d.connect()
        for _ in range(n):
            c.send(eas_request("Sync", body=SYNC_BODY).raw)
            self.assertEqual(c.read_response().status, 200)
        c.close()
        for _ in range(2):      # Sync may be held: these time first bytes
            r = d.roundtrip(eas_request("FolderSync").raw)
            self.assertEqual(r.status, 200)
        r = d.roundtrip(eas_request("FolderSync", user=REMOTE).raw)
        self.assertEqual(r.status, 451)
        r = d.roundtrip(http_request("GET", "/owa").raw)
        self.assertEqual(r.status, 404)
        r = d.roundtrip(eas_request("Sync", user="throttled@contoso.test",
                                    body=SYNC_BODY).raw)
        self.assertEqual(r.status, 503)
        m1 = d.metrics()

        def delta(name, **labels):
            return mval(m1, name, **labels) - mval(m0, name, **labels)

        expect = [
            (("easfront_requests_total",), {"cmd": "Sync"}, n + 1),
            (("easfront_requests_total",), {"cmd": "FolderSync"}, 3),
            (("easfront_requests_by_version_total",), {"version": "14.1"},
             n + 4),
            (("easfront_requests_by_decision_total",),
             {"decision": "proxy"}, n + 3),
            (("easfront_requests_by_decision_total",),
             {"decision": "redirect"}, 1),
            (("easfront_requests_by_decision_total",),
             {"decision": "reject"}, 1),
            (("easfront_requests_by_site_total",), {"site": "site1"}, n + 3),
            (("easfront_requests_by_site_total",), {"site": "site2"}, 1),
            (("easfront_responses_total",), {"status": "200"}, n + 2),
            (("easfront_responses_total",), {"status": "451"}, 1),
            (("easfront_responses_total",), {"status": "404"}, 1),
            (("easfront_responses_total",), {"status": "503"}, 1),
            (("easfront_upstream_first_byte_seconds_count",), {}, 2),
            (("easfront_tls_handshakes_total",), {}, 6),
        ]
        for (name,), labels, want in expect:
            with self.subTest(metric=name, **labels):
                self.assertEqual(delta(name, **labels), want)

        # gauges: three open connections, one held Ping
        conns = [d.connect() for _ in range(3)]
        for c in conns:
            self.addCleanup(c.close)
            c.send(options_request().raw)
            self.assertEqual(c.read_response().status, 200)
        self.assertTrue(wait_until(lambda: mval(
            d.metrics(), "easfront_client_connections") == 3, 5),
            "easfront_client_connections is not 3: %r" % mval(
                d.metrics(), "easfront_client_connections"))
        held = Held(d, ping(3), 20)
        self.assertTrue(wait_until(lambda: mval(
            d.metrics(), "easfront_held_requests") == 1, 3),
            "a held Ping is not in easfront_held_requests")
        self.assertGreaterEqual(mval(d.metrics(),
                                     "easfront_upstream_connections"), 1)
        held.join(10)
        self.assertEqual(held.resp.status, 200)
        self.assertTrue(wait_until(lambda: mval(
            d.metrics(), "easfront_held_requests") == 0, 3))
        for c in conns:
            c.close()
        self.assertTrue(wait_until(lambda: mval(
            d.metrics(), "easfront_client_connections") == 0, 5))

    def test_status_reload_and_route(self):
        cas1, cas2, d = self.two_sites(
            sitemap=[("user", "CONTOSO\\carol", "site2")])
        st = d.status()
        self.assertEqual(st["generation"], 1)
        self.assertEqual(st["site"], "site1")
        self.assertEqual([s["name"] for s in st["sites"]], ["site1", "site2"])
        self.assertEqual(mval(d.metrics(), "easfront_config_generation"), 1)

        d.reload("hup")
        d.wait_generation(2)
        code, text = d.admin("POST", "/reload")
        self.assertEqual((code, text.strip()), (200, "reloaded"))
        self.assertEqual(d.generation(), 3, "POST /reload returned before "
                         "the new generation served")
        code, _ = d.admin("GET", "/reload")
        self.assertEqual(code, 405)
        self.assertEqual(d.generation(), 3, "GET /reload reloaded")
        m = d.metrics()
        self.assertEqual(mval(m, "easfront_config_generation"), 3)
        self.assertEqual(mval(m, "easfront_reloads_total", result="ok"), 2)
        self.assertGreaterEqual(d.status()["uptime_seconds"], 0)

        for user, version in ((REMOTE, "14.1"), (REMOTE, "12.1"),
                              ("alice@contoso.test", None),
                              ("CONTOSO\\carol", "16.1"),
                              ("nobody@fabrikam.test", "14.0")):
            with self.subTest(user=user, version=version):
                q = "user=" + urllib.parse.quote(user)
                cmd = [d.bin, "route", "-c", d.conf_path, user]
                if version:
                    q += "&version=" + version
                    cmd += ["--version", version]
                code, text = d.admin("GET", "/route?" + q)
                self.assertEqual(code, 200)
                cli = eftest.run(cmd).stdout
                self.assertEqual(text.strip(), cli.strip())
                self.assertIn("decision:", text)
        code, _ = d.admin("GET", "/route")
        self.assertEqual(code, 400)


# --------------------------------------------------------------------------
# 6. systemd readiness

class SystemdNotify(OpsCase):

    def test_ready_reloading_stopping(self):
        cas = self.start_cas()
        d = OpsDaemon(self, [cas.url])
        path = os.path.join(d.dir, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(path)
        sock.settimeout(0.2)
        got = []                # (message fields, connect() worked then)
        done = threading.Event()
        self.addCleanup(done.set)

        def listen():
            while not done.is_set():
                try:
                    data = sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                fields = data.decode("utf-8", "replace").split("\n")
                ok = None
                if "READY=1" in fields and not got:
                    try:
                        socket.create_connection(("127.0.0.1", d.port),
                                                 timeout=2).close()
                        ok = True
                    except OSError:
                        ok = False
                got.append((fields, ok))

        t = threading.Thread(target=listen, daemon=True)
        t.start()

        def states():
            return [f for fields, _ in got for f in fields
                    if f in ("READY=1", "RELOADING=1", "STOPPING=1")]

        with mock.patch.dict(os.environ, {"NOTIFY_SOCKET": path}):
            d.start()
        self.assertTrue(wait_until(lambda: states(), 5),
                        "no READY=1 on NOTIFY_SOCKET")
        self.assertEqual(states(), ["READY=1"])
        self.assertTrue(got[0][1], "READY=1 came before the listener "
                        "accepted connections")

        d.reload("hup")
        d.wait_generation(2)
        self.assertTrue(wait_until(lambda: len(states()) >= 3, 5))
        self.assertEqual(states(), ["READY=1", "RELOADING=1", "READY=1"])

        # a refused reload also ends in READY=1 (the old one serves)
        with open(d.conf_path, "a") as f:
            f.write("bogus_key: 1\n")
        d.reload("hup")
        self.assertTrue(wait_until(lambda: len(states()) >= 5, 5))
        self.assertEqual(states()[3:], ["RELOADING=1", "READY=1"])

        d.stopped_by_test()
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(15)
        self.assertEqual(rc, 0)
        self.assertTrue(wait_until(lambda: len(states()) >= 6, 2))
        self.assertEqual(states(), ["READY=1", "RELOADING=1", "READY=1",
                                    "RELOADING=1", "READY=1", "STOPPING=1"])
        done.set()
        t.join(2)


# --------------------------------------------------------------------------
# 7. the features still being built

class HashedIdentities(OpsCase):

    def test_hash_identities(self):
        cas = self.start_cas()
        d = OpsDaemon(self, [cas.url],
                      log={"hash_identities": True}).start()
        users = ["opshashann@contoso.test", "opshashann@contoso.test",
                 "opshashbob@contoso.test"]
        devices = ["OPSHASHDEVAAAA1", "OPSHASHDEVAAAA1", "OPSHASHDEVBBBB2"]
        for u, dv in zip(users, devices):
            r = d.roundtrip(eas_request("FolderSync", user=u,
                                        device_id=dv).raw)
            self.assertEqual(r.status, 200)
        self.assertTrue(wait_until(lambda: len(d.records()) >= 3, 5))
        recs = d.records()[-3:]
        with open(d.access_path) as f:
            whole = f.read()
        for plain in ("opshashann", "opshashbob", "OPSHASHDEV"):
            self.assertFalse(plain.lower() in whole.lower(),
                             "%s is in the access log in clear: %s" % (
                                 plain, recs[-1]))
        hu = [r["user"] for r in recs]
        hd = [r["device"] for r in recs]
        for v in hu + hd:
            self.assertRegex(v, r"^[0-9A-Za-z+/=_-]{8,}$",
                             "not a hash: %r" % v)
        self.assertEqual(hu[0], hu[1], "one user, two hashes")
        self.assertNotEqual(hu[0], hu[2], "two users, one hash")
        self.assertEqual(hd[0], hd[1], "one device, two hashes")
        self.assertNotEqual(hd[0], hd[2], "two devices, one hash")
        self.assertNotEqual(hu[0], hd[0])
        for plain, h in ((users[0], hu[0]), (devices[0], hd[0])):
            for variant in {plain, plain.lower()}:
                for alg in ("md5", "sha1", "sha256", "sha512"):
                    digest = hashlib.new(alg, variant.encode()).hexdigest()
                    self.assertFalse(
                        digest.startswith(h.lower()) or h.lower() in digest,
                        "%r is an unkeyed %s of %r" % (h, alg, variant))
        for r in recs:
            self.assertEqual(r["device_type"], "iPhone",
                             "device_type is not an identity")
            self.assertEqual(r["cmd"], "FolderSync")
        # a reload keeps the key: one device can be followed across it
        d.reload("post")
        self.assertEqual(d.roundtrip(eas_request(
            "FolderSync", user=users[0], device_id=devices[0]).raw).status,
            200)
        self.assertTrue(wait_until(lambda: len(d.records()) >= 5, 5))
        last = d.records()[-1]
        self.assertEqual((last["user"], last["device"]), (hu[0], hd[0]),
                         "the hashes changed with a reload")


class TextFormat(OpsCase):

    def test_text_format(self):
        cas = self.start_cas()
        d = OpsDaemon(self, [cas.url], admin=False,
                      log={"format": "text"}).start()
        def lines():
            # The harness's readiness probe of healthcheck.htm logs a line
            # too, whenever it lands: leave it out by what it is.
            return [ln for ln in d.access_log_lines()
                    if ln.strip() and "healthcheck" not in ln]
        before = len(lines())
        dv = dev()
        r = d.roundtrip(eas_request("FolderSync", device_id=dv).raw)
        self.assertEqual(r.status, 200)
        r = d.roundtrip(http_request("GET", "/owa", [
            ("Authorization", basic("owa@contoso.test"))]).raw)
        self.assertEqual(r.status, 404)
        self.assertTrue(wait_until(lambda: len(lines()) >= before + 2, 5),
                        "no access-log lines: %r" % lines())
        lines = lines()[before:]
        self.assertEqual(len(lines), 2, lines)
        for ln in lines:
            try:
                v = json.loads(ln)
            except ValueError:
                v = None
            self.assertNotIsInstance(v, dict, "log.format text wrote JSON: "
                                     "%r" % ln)
            self.assertIn("127.0.0.1", ln)
            self.assertNotIn(PASSWORD, ln)
            self.assertNotIn(basic("alice@contoso.test").split()[1], ln)
        first, second = lines
        for word in ("POST", "FolderSync", "alice@contoso.test", dv,
                     "iPhone", "site1", " 200 ", "proxy"):
            self.assertIn(word, " %s " % first, "%r not in %r" % (word,
                                                                   first))
        for word in ("GET", " 404 ", "reject"):
            self.assertIn(word, " %s " % second, "%r not in %r" % (word,
                                                                    second))


class ConnectionLimits(OpsCase):

    def held_conns(self, d, sources):
        out = []
        for src in sources:
            c = tls_connect_from(d.port, src)
            self.addCleanup(c.close)
            c.send(options_request().raw)
            r = c.read_response()
            self.assertEqual(r.status, 200, "a connection within the limits"
                             " from %s got %s" % (src, r.status_line))
            out.append(c)
        return out

    def assert_limited(self, d, cas, src):
        try:
            c = tls_connect_from(d.port, src)
        except (ConnectionResetError, ssl.SSLError) as e:
            self.fail("a connection beyond the limit failed in the TLS "
                      "handshake (%r): it must get a 503" % e)
        self.addCleanup(c.close)
        req = eas_request("FolderSync")
        try:
            r = limited_answer(c, req)
        except ConnectionResetError:
            self.fail("a connection beyond the limit was reset")
        self.assert_own_error(r, (503,))
        self.assertIsNotNone(r.header("Retry-After"),
                             "503 without Retry-After")
        self.assertTrue(c.closed_by_peer(3), "the limited connection "
                        "stayed open")
        time.sleep(0.2)
        self.assertEqual(cas.find(req.mark), [], "a limited connection's "
                         "request reached the CAS")

    def settle(self, d):
        self.assertTrue(wait_until(lambda: mval(
            d.metrics(), "easfront_client_connections") == 0, 5))

    def test_global_limit(self):
        cas = self.start_cas()
        d = OpsDaemon(self, [cas.url], limits={
            "connections": 4, "connections_per_client": 4}).start()
        self.settle(d)
        held = self.held_conns(d, ["127.0.0.2", "127.0.0.2", "127.0.0.3",
                                   "127.0.0.3"])
        self.assert_limited(d, cas, "127.0.0.4")
        self.assert_limited(d, cas, "127.0.0.2")
        for c in held:
            c.send(options_request().raw)
            self.assertEqual(c.read_response().status, 200,
                             "a held connection suffered from the limit")
        held[0].close()

        def admitted():
            c = tls_connect_from(d.port, "127.0.0.4")
            try:
                c.send(options_request().raw)
                return c.read_response().status == 200
            except (OSError, ValueError):
                return False
            finally:
                c.close()
        self.assertTrue(wait_until(admitted, 5, 0.2),
                        "no connection admitted after one closed")

    def test_per_client_limit(self):
        cas = self.start_cas()
        d = OpsDaemon(self, [cas.url], limits={
            "connections": 100, "connections_per_client": 3}).start()
        self.settle(d)
        held = self.held_conns(d, ["127.0.0.2"] * 3)
        self.assert_limited(d, cas, "127.0.0.2")
        self.held_conns(d, ["127.0.0.3"] * 3)       # another client is fine
        held[0].close()

        def admitted():
            c = tls_connect_from(d.port, "127.0.0.2")
            try:
                c.send(options_request().raw)
                return c.read_response().status == 200
            except (OSError, ValueError):
                return False
            finally:
                c.close()
        self.assertTrue(wait_until(admitted, 5, 0.2),
                        "no connection admitted after one closed")


class ListenersAcrossReload(OpsCase):

    def test_unchanged_listener_kept(self):
        cas = self.start_cas()
        d = OpsDaemon(self, [cas.url], workers=2).start()
        inodes = listen_inodes(d.port)
        self.assertTrue(inodes, "no LISTEN socket found for the port")
        stop = threading.Event()
        self.addCleanup(stop.set)
        res = {"connects": 0, "failures": [], "requests": 0}

        def hammer():
            deadline = time.monotonic() + 60
            while not stop.is_set() and res["connects"] < 20000 and \
                    time.monotonic() < deadline:
                try:
                    if res["connects"] % 20 == 0:
                        r = d.roundtrip(options_request().raw)
                        if r.status != 200:
                            res["failures"].append(r.status_line)
                        res["requests"] += 1
                    else:
                        socket.create_connection(("127.0.0.1", d.port),
                                                 timeout=2).close()
                except Exception as e:
                    res["failures"].append(repr(e))
                res["connects"] += 1

        t = threading.Thread(target=hammer, daemon=True)
        t.start()
        for i in range(1, 21):
            d.reload("post" if i % 2 else "hup")
            d.wait_generation(1 + i)
            time.sleep(0.05)
        stop.set()
        t.join(10)
        print("\n20 reloads: %d connects, %d requests, %d failures" % (
            res["connects"], res["requests"], len(res["failures"])))
        self.assertEqual(res["failures"], [], "connect() or a request "
                         "failed during reloads that changed nothing")
        self.assertGreaterEqual(res["connects"], 100)
        self.assertEqual(listen_inodes(d.port), inodes,
                         "the listening sockets were replaced by reloads "
                         "that did not change their address")

    def test_changed_listen_keeps_unchanged_listener(self):
        """A reload that adds a listen address keeps the unchanged listener
        (same socket, serving throughout) and either opens the new address
        or says in the log that the change needs a restart."""
        cas = self.start_cas()
        d = OpsDaemon(self, [cas.url]).start()
        p1, p2 = d.port, free_port()
        inodes = listen_inodes(p1)
        d.listen_ports = [p1, p2]
        d.write_config()
        mark = len(d.stderr_text())
        d.reload("post")
        self.assertEqual(d.generation(), 2)
        self.assertEqual(listen_inodes(p1), inodes,
                         "the unchanged listener was replaced")
        self.assert_ok(d)
        serves_p2 = not refused(p2)
        if serves_p2:
            c = eftest.tls_connect(p2)
            try:
                c.send(options_request().raw)
                self.assertEqual(c.read_response().status, 200)
            finally:
                c.close()
        else:
            self.assertRegex(d.stderr_text()[mark:],
                             re.escape(d.conf_path) + r".*listen.*restart",
                             "a listen change that was not applied was not "
                             "reported in the log")


def free_port6():
    """A TCP port on [::1] that was free a moment ago."""
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class V6Daemon(OpsDaemon):
    """An OpsDaemon that also listens on [::1]:port6 and has its admin
    endpoint on [::1]:admin_port (127.0.0.1:port stays, for the
    harness)."""

    def __init__(self, tc, cas_urls, **kw):
        super().__init__(tc, cas_urls, **kw)
        self.port6 = free_port6()
        self.admin_host = "::1"
        self.admin_port = free_port6()

    def config(self):
        c = super().config()
        c["listen"].append({"address": "[::1]:%d" % self.port6})
        c["admin"] = {"listen": "[::1]:%d" % self.admin_port}
        return c


class Ipv6Loopback(OpsCase):

    def test_ipv6_listener_and_admin(self):
        """listen and admin.listen as [::1]:PORT (parsed by conf/ into an
        IPv6 socket address): both serve on ::1, and only there."""
        cas = self.start_cas()
        d = V6Daemon(self, [cas.url]).start()
        s = socket.create_connection(("::1", d.port6), timeout=10)
        c = eftest.RawConn(eftest.client_context().wrap_socket(
            s, server_hostname=SNI))
        try:
            for user in ("alice@contoso.test", "bob@contoso.test"):
                c.send(eas_request("FolderSync", user=user).raw)
                r = c.read_response()
                self.assertEqual(r.status, 200, r.status_line)
                self.assertEqual(r.body, sc.FOLDERSYNC_BODY)
        finally:
            c.close()
        self.assertEqual(d.status()["generation"], 1)
        code, text = d.admin("POST", "/reload")
        self.assertEqual((code, text.strip()), (200, "reloaded"))
        self.assertEqual(d.generation(), 2)
        self.assertIn("easfront_config_generation 2", d.metrics_text())
        # still served after the reload (an unchanged admin.listen)
        code, text = d.admin("GET", "/route?user=alice%40contoso.test")
        self.assertEqual(code, 200)
        self.assertIn("decision:", text)
        # bound to ::1, not to the IPv4 loopback or the wildcard
        self.assertTrue(refused(d.port6), "[::1] listener on 127.0.0.1")
        self.assertTrue(refused(d.admin_port), "[::1] admin on 127.0.0.1")
        self.assertNotIn("cannot listen", d.stderr_text())


class CertificateReload(OpsCase):

    def test_new_certificate_after_reload(self):
        cert_a, cert_c = ops_cert("a"), ops_cert("c")
        cas = self.start_cas()
        # a copy of A at a fixed path, to be renewed in place later
        path_cert = os.path.join(eftest.mktemp_dir("eftest-ops-"), "eas.pem")
        path_key = path_cert[:-4] + ".key"
        for src, dst in ((cert_a[0], path_cert), (cert_a[1], path_key)):
            with open(src, "rb") as f, open(dst, "wb") as g:
                g.write(f.read())
        d = OpsDaemon(self, [cas.url], certs=[(path_cert, path_key)]).start()
        before = d.connect()
        self.addCleanup(before.close)
        self.assertEqual(conn_serial(before), file_serial(cert_a[0]))
        before.send(options_request().raw)
        self.assertEqual(before.read_response().status, 200)

        # renewed in place: same paths, same config, new file contents
        for src, dst in ((cert_c[0], path_cert), (cert_c[1], path_key)):
            with open(src, "rb") as f, open(dst + ".new", "wb") as g:
                g.write(f.read())
            os.rename(dst + ".new", dst)
        d.reload("hup")
        d.wait_generation(2)
        self.assertEqual(wait_serial(d.port, file_serial(cert_c[0])),
                         file_serial(cert_c[0]),
                         "new handshakes still get the old certificate")
        # the connection made before the reload goes on
        before.send(eas_request("FolderSync").raw)
        self.assertEqual(before.read_response().status, 200)
        # and a client without SNI gets it too (the default certificate)
        self.assertEqual(wait_serial(d.port, file_serial(cert_c[0]),
                                     sni=None), file_serial(cert_c[0]))


if __name__ == "__main__":
    unittest.main()
