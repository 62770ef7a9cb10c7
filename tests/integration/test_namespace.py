"""The namespace (issue 5): CAS names that follow DNS, CAS health, failover
between sites, and `easfront preflight`.

Each case builds its own world: stand-in CAS servers on loopback addresses
127.0.0.11, 127.0.0.12, ... (all of 127.0.0.0/8 is local on Linux, so two
stand-ins can share a port and a DNS answer decides which one gets traffic),
where a case needs names a Knot DNS server on 127.0.0.1 at a port picked at
run time serving the zone site1.test (the approach of dns/run.sh), a config
and a daemon of its own. Every process is stopped at the end, knot included,
whatever happens.

Users: alice@contoso.test is in site1 (the default site), bob@contoso.test
in site2 (the site map says so).
"""

import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest
import uuid

import eftest
import standin_cas as sc
from eftest import assert_passthrough, eas_headers, eas_target, http_request

ALICE = "alice@contoso.test"       # site1 (default_site)
BOB = "bob@contoso.test"           # site2 (site map)
EXT2 = "https://site2-eas.contoso.test/Microsoft-Server-ActiveSync"
HEALTH_PATH = "/Microsoft-Server-ActiveSync/healthcheck.htm"
# interval 1, rise 2, fall 2: a member flips after two results in a row.
FAST_HEALTH = {"path": HEALTH_PATH, "interval": 1, "timeout": 1, "rise": 2,
               "fall": 2}
MARGIN = 2.5                       # seconds on top of what a spec allows


# --------------------------------------------------------------------------
# Knot DNS on 127.0.0.1 serving site1.test

def _die_with_parent():
    """In the child before exec: SIGTERM when the test process dies, so a
    test runner that kills us (a CTest timeout) leaves no knotd behind."""
    try:
        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Knot:
    """A knotd serving site1.test on 127.0.0.1 at a port picked at run time,
    with its own directory; stopped at the test's cleanup. records: the zone
    lines after SOA and NS, with $ORIGIN site1.test. and $TTL 60."""

    ZONE = "site1.test"

    def __init__(self, tc, records):
        self.tc = tc
        self.knotd = eftest.ensure_tool("knotd", "knot")
        self.knotc = eftest.ensure_tool("knotc", "knot")
        self.dir = eftest.mktemp_dir("eftest-knot-")
        self.conf = os.path.join(self.dir, "knot.conf")
        self.zone_path = os.path.join(self.dir, "site1.test.zone")
        self.log_path = os.path.join(self.dir, "knotd.log")
        self.serial = 0
        self.proc = None
        self.port = None
        os.makedirs(os.path.join(self.dir, "db"))
        tc.addCleanup(self.stop)
        self.write_zone(records)
        self.start()

    @property
    def server(self):
        """The dns.servers entry for easfront's config."""
        return "127.0.0.1:%d" % self.port

    def write_zone(self, records):
        self.serial += 1
        text = ("$ORIGIN site1.test.\n$TTL 60\n"
                "@ SOA ns hostmaster %d 3600 600 86400 5\n"
                "@ NS ns\nns A 127.0.0.1\n%s\n" % (self.serial, records))
        tmp = self.zone_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.zone_path)      # never half a file

    @staticmethod
    def _free_port():
        """A port free for both UDP and TCP on 127.0.0.1 a moment ago."""
        for _ in range(50):
            t = socket.socket()
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
            finally:
                u.close()
                t.close()
        raise AssertionError("no port free for UDP and TCP")

    def _write_conf(self):
        with open(self.conf, "w") as f:
            f.write("""server:
    rundir: "{d}"
    listen: 127.0.0.1@{port}
    pidfile: "{d}/knot.pid"
    background-workers: 1
    udp-workers: 1
    tcp-workers: 1
control:
    listen: "{d}/knot.sock"
database:
    storage: "{d}/db"
log:
  - target: stderr
    any: info
template:
  - id: default
    storage: "{d}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: site1.test
    file: "{z}"
""".format(d=self.dir, port=self.port, z=self.zone_path))

    def _knotc(self, *args):
        return subprocess.run([self.knotc, "-c", self.conf, "-t", "5"]
                              + list(args), capture_output=True, text=True,
                              timeout=15)

    def serial_loaded(self, serial):
        p = self._knotc("zone-status", self.ZONE)
        return p.returncode == 0 and re.search(
            r"serial: %d\b" % serial, p.stdout) is not None

    def start(self):
        for _ in range(5):
            self.port = self._free_port()
            self._write_conf()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [self.knotd, "-c", self.conf], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, preexec_fn=_die_with_parent)
            ok = eftest.wait_until(
                lambda: self.proc.poll() is not None or
                self.serial_loaded(self.serial), 10, 0.05)
            if ok and self.proc.poll() is None:
                return
            self.stop()          # lost the port race, or failed: try again
        raise AssertionError("knotd did not start; log:\n" + self.log_text())

    def set_records(self, records):
        """Rewrites the zone with a new serial, reloads it and waits until
        knot serves it."""
        self.write_zone(records)
        p = self._knotc("zone-reload", self.ZONE)
        if p.returncode != 0:
            raise AssertionError("knotc zone-reload: %s %s" % (p.stdout,
                                                               p.stderr))
        if not eftest.wait_until(lambda: self.serial_loaded(self.serial),
                                 10, 0.05):
            raise AssertionError("knot did not load serial %d" % self.serial)

    def stop(self):
        """Stops knotd (SIGTERM, bounded wait, SIGKILL). Idempotent."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""


# --------------------------------------------------------------------------
# helpers

def brief(seen, head=4, tail=8):
    """A long list of observations shortened for a failure message."""
    if len(seen) <= head + tail:
        return repr(seen)
    return "%r ... (%d more) ... %r" % (seen[:head],
                                        len(seen) - head - tail,
                                        seen[-tail:])


def device_id():
    return "NS" + uuid.uuid4().hex[:14].upper()


class Sent:
    """A request sent through easfront and what came of it."""

    def __init__(self, req, resp, device, t_sent, err=None):
        self.req = req
        self.mark = req.mark
        self.resp = resp
        self.device = device
        self.t_sent = t_sent
        self.err = err

    @property
    def status(self):
        return self.resp.status if self.resp is not None else None

    def __repr__(self):
        return "<Sent %s %s>" % (self.status, self.err or "")


class NsCase(eftest.EfTestCase):

    # ---- worlds

    def start_cas_at(self, host, port=0, name=None, **attrs):
        """A plain-HTTP stand-in CAS on host:port (port 0: any)."""
        cas = sc.StandinCAS(name=name or "cas.%s" % host, host=host,
                            port=port)
        for k, v in attrs.items():
            setattr(cas, k, v)
        cas.start()
        self.addCleanup(cas.stop)
        return cas

    def cas_pair(self, hosts, names=None):
        """Stand-ins on each of hosts, all on one port; returns the list."""
        for _ in range(20):
            first = self.start_cas_at(hosts[0], 0,
                                      names[0] if names else None)
            out = [first]
            try:
                for i, h in enumerate(hosts[1:], 1):
                    out.append(self.start_cas_at(
                        h, first.port, names[i] if names else None))
                return out
            except OSError:
                for c in out:
                    c.stop()
        self.fail("no port free on all of %s" % hosts)

    def restart_cas(self, old):
        """A fresh stand-in on the address and port of a stopped one."""
        deadline = time.monotonic() + 10
        while True:
            try:
                return self.start_cas_at(old.host, old.port, old.name)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def start_ns_daemon(self, sites, knot=None, map_lines=(),
                        wait_healthy=True, timeouts=None, log_level="info"):
        """A daemon whose own site is site1 with the given sites (dicts as
        in the config), resolver knot, and a site map of map_lines."""
        extra = {"sites": sites}
        if knot is not None:
            extra["dns"] = {"servers": [knot.server]}
        if map_lines:
            path = os.path.join(eftest.mktemp_dir("eftest-map-"),
                                "sitemap.tsv")
            with open(path, "w") as f:
                f.write("".join("\t".join(ln) + "\n" for ln in map_lines))
            extra["sitemap"] = {"file": path, "default_site": "site1"}
        d = eftest.Daemon(self, sites[0]["cas"], timeouts=timeouts,
                          extra=extra, log_level=log_level)
        return d.start(wait_healthy=wait_healthy)

    # ---- requests

    def send(self, d, user=ALICE, version="14.1", cmd="FolderSync",
             timeout=10, body=b""):
        """One EAS request as a new client; never raises for a failed
        exchange (Sent.err says what happened)."""
        dev = device_id()
        req = http_request("POST", eas_target(cmd, user=user, device_id=dev),
                           eas_headers(user, version=version), body)
        t = time.monotonic()
        try:
            return Sent(req, d.roundtrip(req.raw, timeout=timeout), dev, t)
        except (OSError, ValueError) as e:
            return Sent(req, None, dev, t, repr(e))

    @staticmethod
    def reached(mark, cases):
        """Names (keys of cases) of the stand-ins that got mark."""
        return [n for n, c in cases.items() if c is not None and c.find(mark)]

    def healthcheck(self, d):
        return d.roundtrip(http_request("GET", HEALTH_PATH).raw)

    def log_entry(self, d, device, timeout=3):
        """The access-log entry (JSON) of the request from device."""
        def find():
            for ln in d.access_log_lines():
                try:
                    e = json.loads(ln)
                except ValueError:
                    continue
                if e.get("device") == device:
                    return e
            return None
        e = eftest.wait_until(find, timeout)
        self.assertIsNotNone(e, "no access-log line for device %s" % device)
        return e

    @staticmethod
    def cas_log_lines(d):
        """easfront's log lines about CAS membership and health."""
        return "\n".join(ln for ln in d.stderr_text().splitlines()
                         if re.search(r" CAS .*(resolves|is up|is down)", ln))

    def wait_for_log(self, d, pattern, timeout):
        return eftest.wait_until(
            lambda: re.search(pattern, d.stderr_text()), timeout, 0.1)


# --------------------------------------------------------------------------

class DnsFollowsNamespace(NsCase):
    """site1's CAS URL names cas1.site1.test, a CNAME (TTL 2) to cas1-a
    (127.0.0.11) that the test re-points to cas1-b (127.0.0.12)."""

    ZONE_A = ("cas1 2 CNAME cas1-a\ncas1-a A 127.0.0.11\n"
              "cas1-b A 127.0.0.12\n")
    ZONE_B = ZONE_A.replace("CNAME cas1-a", "CNAME cas1-b")

    def world(self, keep_alive):
        knot = Knot(self, self.ZONE_A)
        a, b = self.cas_pair(["127.0.0.11", "127.0.0.12"],
                             ["cas1-a.site1.test", "cas1-b.site1.test"])
        a.keep_alive = b.keep_alive = keep_alive
        url = "http://cas1.site1.test:%d" % a.port
        d = self.start_ns_daemon([{"name": "site1", "cas": [url],
                                   "health": FAST_HEALTH}], knot=knot)
        cases = {"a": a, "b": b}
        for _ in range(4):
            s = self.send(d)
            self.assertEqual(s.status, 200, s)
            self.assertEqual(self.reached(s.mark, cases), ["a"],
                             "cas1 -> cas1-a: the request must reach "
                             "127.0.0.11")
        return knot, d, a, b, cases

    def repoint(self, knot, d, a, b, cases):
        """Re-points the CNAME; asserts new requests reach cas1-b within
        TTL + margin and only cas1-b after that."""
        pid = d.pid
        knot.set_records(self.ZONE_B)
        t0 = time.monotonic()
        bound = 2 + 1 + MARGIN          # TTL + re-resolution + margin
        seen = []

        def moved():
            s = self.send(d)
            seen.append((round(time.monotonic() - t0, 2), s.status,
                         self.reached(s.mark, cases)))
            return s.status == 200 and self.reached(s.mark, cases) == ["b"]
        ok = eftest.wait_until(moved, bound, 0.2)
        self.assertTrue(ok, "no request reached cas1-b (127.0.0.12) within "
                        "%.1f s of re-pointing the CNAME; seen (t, status, "
                        "where): %s; cas1-a served them on its connections "
                        "%s; easfront said:\n%s" % (
                            bound, brief(seen),
                            sorted({r.conn_id for r in a.client_requests()}),
                            self.cas_log_lines(d)))
        print("\nCNAME re-pointed: first request at cas1-b after %.2f s"
              % seen[-1][0])
        before_a = len(a.client_requests())
        for _ in range(5):
            s = self.send(d)
            self.assertEqual(s.status, 200, s)
            self.assertEqual(self.reached(s.mark, cases), ["b"],
                             "after the CNAME moved, requests must go to "
                             "cas1-b only")
        self.assertEqual(len(a.client_requests()), before_a,
                         "cas1-a still got requests after the move")
        self.assertEqual(d.pid, pid)
        d.assert_alive()
        return before_a

    def test_cname_repointed_then_dns_gone(self):
        """The resolver side: every request needs a new connection (the
        stand-ins close after each answer), so where it goes is where the
        current DNS answer points."""
        knot, d, a, b, cases = self.world(keep_alive=False)
        before_a = self.repoint(knot, d, a, b, cases)

        # DNS goes away: the last good answer keeps serving.
        knot.stop()
        t1 = time.monotonic()
        n = 0
        while time.monotonic() - t1 < 12:
            s = self.send(d)
            n += 1
            self.assertEqual(s.status, 200, "%.1f s after the DNS server "
                             "stopped: %r" % (time.monotonic() - t1, s))
            self.assertEqual(self.reached(s.mark, cases), ["b"])
            time.sleep(0.4)
        self.assertEqual(len(a.client_requests()), before_a)
        print("DNS server stopped: %d requests over 12 s all reached "
              "cas1-b" % n)

    def test_cname_repointed_keepalive_cas(self):
        """The same move with CAS that keep connections alive, as IIS
        does: an idle upstream connection to an address that is no longer
        a member must not carry new requests."""
        knot, d, a, b, cases = self.world(keep_alive=True)
        self.repoint(knot, d, a, b, cases)


# --------------------------------------------------------------------------

class Health(NsCase):
    """Two CAS in site1 (A on 127.0.0.11, B on 127.0.0.12); A fails in three
    ways in turn while a Ping is held on B."""

    PING_HEARTBEAT = 50

    def takeout(self, d, cases, t0, bound, label):
        """Sends requests until 6 in a row miss A; asserts the last one
        that reached A was sent within bound seconds of t0."""
        last_a = None
        streak = 0
        log = []
        deadline = t0 + bound + 10
        while streak < 6 and time.monotonic() < deadline:
            s = self.send(d, timeout=15)
            where = self.reached(s.mark, cases)
            log.append((round(s.t_sent - t0, 2), s.status, where))
            if "a" in where:
                last_a = s.t_sent
                streak = 0
            else:
                streak += 1
            time.sleep(0.1)
        self.assertEqual(streak, 6, "%s: A was never taken out; seen (t, "
                         "status, where): %s; easfront said:\n%s" % (
                             label, brief(log), self.cas_log_lines(d)))
        took = (last_a - t0) if last_a is not None else 0.0
        print("%s: last request at A %.2f s after the failure began (bound "
              "%.1f s)" % (label, took, bound))
        self.assertLessEqual(took, bound, "%s: A still got requests %.2f s "
                             "after it began failing; seen (t, status, "
                             "where): %s; easfront said:\n%s" % (
                                 label, took, brief(log),
                                 self.cas_log_lines(d)))
        return log

    def stays_out(self, d, cases, label, n=6):
        for _ in range(n):
            s = self.send(d)
            if s.status != 200:
                self.fail("%s: B is up but a request got %r; access log: "
                          "%s" % (label, s, self.log_entry(d, s.device)))
            self.assertEqual(self.reached(s.mark, cases), ["b"],
                             "%s: a request reached A while it is out; "
                             "easfront said:\n%s" % (label,
                                                    self.cas_log_lines(d)))

    def put_back(self, d, cases, t0, bound, label):
        seen = []

        def back():
            s = self.send(d)
            seen.append((round(s.t_sent - t0, 2), s.status,
                         self.reached(s.mark, cases)))
            return s.status == 200 and "a" in self.reached(s.mark, cases)
        self.assertTrue(eftest.wait_until(back, bound, 0.2),
                        "%s: A was not put back within %.1f s of "
                        "recovering; seen: %s; easfront said:\n%s" % (
                            label, bound, brief(seen),
                            self.cas_log_lines(d)))
        print("%s: A back after %.2f s" % (label, seen[-1][0]))

    def test_health_fail_refuse_hang_with_ping_held(self):
        h = FAST_HEALTH
        a, b = self.cas_pair(["127.0.0.11", "127.0.0.12"],
                             ["casa.site1.test", "casb.site1.test"])
        cases = {"a": a, "b": b}
        all_a = [a]
        d = self.start_ns_daemon(
            [{"name": "site1", "cas": [a.url, b.url], "health": h}],
            timeouts={"upstream_response": 3, "long_poll": 120})
        # both are in rotation
        where = [self.reached(self.send(d).mark, cases) for _ in range(6)]
        self.assertIn(["a"], where, "A got no request: %s" % where)
        self.assertIn(["b"], where, "B got no request: %s" % where)

        # A Ping held on B for the whole case.
        ping = {}
        conn = None
        for _ in range(4):
            req = http_request(
                "POST", eas_target("Ping", user=ALICE, device_id=device_id()),
                eas_headers(ALICE), sc.ping_request(self.PING_HEARTBEAT))
            conn = d.connect(timeout=self.PING_HEARTBEAT + 30)
            self.addCleanup(conn.close)
            conn.send(req.raw)
            got = eftest.wait_until(
                lambda: self.reached(req.mark, cases), 5)
            if got == ["b"]:
                break
            conn.close()        # landed on A: try again
        self.assertEqual(got, ["b"], "could not get a Ping held on B")
        ping["mark"] = req.mark
        ping["t0"] = time.monotonic()

        def read_ping():
            try:
                ping["resp"] = conn.read_response(
                    timeout=self.PING_HEARTBEAT + 30)
            except Exception as e:      # reported by the main thread
                ping["err"] = repr(e)
            ping["t1"] = time.monotonic()
        reader = threading.Thread(target=read_ping, daemon=True)
        reader.start()

        out_bound = h["fall"] * h["interval"] + MARGIN
        back_bound = h["rise"] * h["interval"] + h["timeout"] + MARGIN

        # Each way of failing is its own sub-test, so one that goes wrong
        # does not hide the others; A is brought back after each either
        # way.
        def fail_then_recover(label, fail, recover, out_bound):
            t0 = time.monotonic()
            fail()
            with self.subTest(failure=label, step="taken out"):
                self.takeout(d, cases, t0, out_bound, label)
                self.stays_out(d, cases, label)
            t0 = time.monotonic()
            recover()
            with self.subTest(failure=label, step="put back"):
                self.put_back(d, cases, t0, back_bound, label)

        # 1. A answers healthcheck.htm with 503; its EAS requests still
        # work, so only the health check can take it out.
        def health_503():
            cases["a"].health_status = 503

        def health_200():
            cases["a"].health_status = 200
        fail_then_recover("health 503", health_503, health_200, out_bound)

        # 2. A is stopped: connections are refused.
        def restart():
            cases["a"] = self.restart_cas(cases["a"])
            all_a.append(cases["a"])
        fail_then_recover("refused", lambda: cases["a"].stop(), restart,
                          out_bound)

        # 3. A hangs, health checks included: they time out.
        def hang():
            cases["a"].modes_apply_to_health = True
            cases["a"].mode = "hang"

        def unhang():
            cases["a"].mode = None
        fail_then_recover(
            "hang", hang, unhang,
            h["fall"] * (h["interval"] + h["timeout"]) + MARGIN)

        # The Ping on B was untouched throughout: one answer, 200, after
        # its whole heartbeat.
        reader.join(self.PING_HEARTBEAT + 35)
        self.assertIn("resp", ping, "the Ping failed: %s" % ping.get("err"))
        r = ping["resp"]
        self.assertEqual(r.status, 200, r.status_line)
        self.assertEqual(r.body, sc.ping_response(1))
        self.assertEqual(len(b.find(ping["mark"])), 1,
                         "the Ping reached B more than once")
        self.assertEqual([c for c in all_a if c.find(ping["mark"])], [])
        took = ping["t1"] - ping["t0"]
        print("Ping held on B: %s after %.1f s" % (r.status_line, took))
        self.assertGreaterEqual(took, self.PING_HEARTBEAT - 6)


# --------------------------------------------------------------------------

class Failover(NsCase):

    MAP = [("user", BOB, "site2")]

    def wait_status(self, d, user, version, want, bound, cases):
        seen = []

        def ok():
            s = self.send(d, user=user, version=version)
            seen.append((s.status, self.reached(s.mark, cases)))
            return s if want(s) else None
        s = eftest.wait_until(ok, bound, 0.2)
        self.assertIsNotNone(s, "%s at %s: not as expected within %.1f s; "
                             "seen (status, where): %s" % (
                                 user, version, bound, brief(seen)))
        return s

    def test_fallback_to_site1_and_back(self):
        s1, s2 = self.cas_pair(["127.0.0.11", "127.0.0.12"],
                               ["cas1.site1.test", "cas1.site2.test"])
        cases = {"site1": s1, "site2": s2}
        sites = [{"name": "site1", "cas": [s1.url], "health": FAST_HEALTH},
                 {"name": "site2", "external_url": EXT2, "cas": [s2.url],
                  "fallback": "site1", "health": FAST_HEALTH}]
        d = self.start_ns_daemon(sites, map_lines=self.MAP)

        # site2 up: 14.1 is redirected, 12.1 proxied to site2
        s = self.send(d, user=BOB, version="14.1")
        self.assertEqual(s.status, 451, s.resp.status_line if s.resp else s)
        self.assertEqual(s.resp.header("X-MS-Location"), EXT2)
        self.assertEqual(self.reached(s.mark, cases), [])
        s = self.send(d, user=BOB, version="12.1")
        self.assertEqual(s.status, 200)
        self.assertEqual(self.reached(s.mark, cases), ["site2"])

        # site2's only CAS goes down
        t0 = time.monotonic()
        s2.stop()
        bound = FAST_HEALTH["fall"] * FAST_HEALTH["interval"] + MARGIN
        s = self.wait_status(d, BOB, "14.1", lambda s: s.status == 200,
                             bound, cases)
        print("\nsite2 down: bob at 14.1 proxied to site1 after %.2f s"
              % (time.monotonic() - t0))
        for version in ("12.1", "14.1", "16.1", "2.5"):
            s = self.send(d, user=BOB, version=version)
            self.assertEqual(s.status, 200, "bob at %s while site2 is down: "
                             "%r" % (version, s.resp.status_line
                                     if s.resp else s))
            self.assertIsNone(s.resp.header("X-MS-Location"))
            self.assertEqual(self.reached(s.mark, cases), ["site1"])
            assert_passthrough(self, s.resp, self.one_cas_request(s1, s.mark))
            e = self.log_entry(d, s.device)
            self.assertEqual(e.get("reason"), "fallback",
                             "access log for bob at %s: %s" % (version, e))
            self.assertEqual(e.get("decision"), "proxy", e)
            self.assertEqual(e.get("site"), "site1", e)
        # site1's own users are not disturbed
        s = self.send(d, user=ALICE)
        self.assertEqual(s.status, 200)
        self.assertEqual(self.log_entry(d, s.device).get("reason"), "local")
        # easfront itself is healthy: its own site is up
        self.assertEqual(self.healthcheck(d).status, 200)

        # site2's CAS recovers: its users go back to it
        t0 = time.monotonic()
        s2 = cases["site2"] = self.restart_cas(s2)
        bound = (FAST_HEALTH["rise"] * FAST_HEALTH["interval"] +
                 FAST_HEALTH["timeout"] + MARGIN)
        s = self.wait_status(d, BOB, "14.1", lambda s: s.status == 451,
                             bound, cases)
        print("site2 back: bob at 14.1 redirected again after %.2f s"
              % (time.monotonic() - t0))
        self.assertEqual(s.resp.header("X-MS-Location"), EXT2)
        self.assertEqual(self.log_entry(d, s.device).get("reason"),
                         "redirect")
        s = self.send(d, user=BOB, version="12.1")
        self.assertEqual(s.status, 200)
        self.assertEqual(self.reached(s.mark, cases), ["site2"])
        self.assertNotEqual(self.log_entry(d, s.device).get("reason"),
                            "fallback")

    def test_no_fallback_503_and_own_healthcheck(self):
        """site1 (own) falls back to site2; site2 has no fallback."""
        s1, s2 = self.cas_pair(["127.0.0.11", "127.0.0.12"],
                               ["cas1.site1.test", "cas1.site2.test"])
        cases = {"site1": s1, "site2": s2}
        sites = [{"name": "site1", "cas": [s1.url], "fallback": "site2",
                  "health": FAST_HEALTH},
                 {"name": "site2", "external_url": EXT2, "cas": [s2.url],
                  "health": FAST_HEALTH}]
        d = self.start_ns_daemon(sites, map_lines=self.MAP)
        out_bound = FAST_HEALTH["fall"] * FAST_HEALTH["interval"] + MARGIN
        back_bound = (FAST_HEALTH["rise"] * FAST_HEALTH["interval"] +
                      FAST_HEALTH["timeout"] + MARGIN)
        hc = self.healthcheck(d)
        self.assertEqual(hc.status, 200)
        self.assertTrue(hc.body.startswith(b"200 OK<br/>"), hc.body)

        # site2 down, no fallback: bob gets easfront's own 503 (a 12.1
        # request gets it at once, from the refused connect; a 14.1 one,
        # which is never proxied, once the health checks agree)
        s2.stop()
        s = self.wait_status(d, BOB, "14.1", lambda s: s.status == 503,
                             out_bound, cases)
        self.assert_own_error(s.resp, (503,))
        self.assertRegex(s.resp.header("Retry-After") or "", r"^[0-9]+$",
                         "503 without Retry-After")
        self.assertIsNone(s.resp.header("X-MS-Location"))
        self.assertEqual(self.reached(s.mark, cases), [])
        s = self.send(d, user=BOB, version="12.1")
        self.assert_own_error(s.resp, (503,))
        self.assertRegex(s.resp.header("Retry-After") or "", r"^[0-9]+$")
        self.assertEqual(self.reached(s.mark, cases), [])
        # site1 is up: alice served, easfront healthy
        s = self.send(d, user=ALICE)
        self.assertEqual(s.status, 200)
        self.assertEqual(self.reached(s.mark, cases), ["site1"])
        self.assertEqual(self.healthcheck(d).status, 200,
                         "healthcheck.htm must stay 200 while its own site "
                         "is up")

        # site1 down too: nothing serves, easfront says so
        t0 = time.monotonic()
        s1.stop()
        got = []

        def hc_down():
            r = self.healthcheck(d)
            got.append(r.status)
            return r if r.status == 503 else None
        hc = eftest.wait_until(hc_down, out_bound, 0.2)
        self.assertIsNotNone(hc, "healthcheck.htm not 503 within %.1f s of "
                             "its site and fallback losing every CAS: %s" %
                             (out_bound, got))
        print("\nboth sites down: healthcheck.htm 503 after %.2f s"
              % (time.monotonic() - t0))
        self.assertIsNone(hc.header("X-MS-ASThrottle"))
        s = self.send(d, user=ALICE)
        self.assert_own_error(s.resp, (503,))
        self.assertRegex(s.resp.header("Retry-After") or "", r"^[0-9]+$")

        # site2 (site1's fallback) recovers: healthy again, alice proxied
        # there
        t0 = time.monotonic()
        s2 = cases["site2"] = self.restart_cas(s2)
        got.clear()

        def hc_up():
            r = self.healthcheck(d)
            got.append(r.status)
            return r if r.status == 200 else None
        hc = eftest.wait_until(hc_up, back_bound, 0.2)
        self.assertIsNotNone(hc, "healthcheck.htm not back to 200 within "
                             "%.1f s of the fallback's CAS recovering: %s" %
                             (back_bound, got))
        print("site2 back: healthcheck.htm 200 after %.2f s"
              % (time.monotonic() - t0))
        self.assertTrue(hc.body.startswith(b"200 OK<br/>"), hc.body)
        s = self.send(d, user=ALICE, version="14.1")
        self.assertEqual(s.status, 200, s.resp.status_line if s.resp else s)
        self.assertEqual(self.reached(s.mark, cases), ["site2"])
        self.assertEqual(self.log_entry(d, s.device).get("reason"),
                         "fallback")

        # site1 recovers: alice back home
        s1 = cases["site1"] = self.restart_cas(s1)
        s = self.wait_status(
            d, ALICE, "14.1",
            lambda s: s.status == 200 and s1.find(s.mark), back_bound,
            cases)
        self.assertEqual(self.log_entry(d, s.device).get("reason"), "local")
        self.assertEqual(self.healthcheck(d).status, 200)


# --------------------------------------------------------------------------

class RetryOnce(NsCase):

    def test_refused_first_name_retried_on_second(self):
        knot = Knot(self, "cas-dead A 127.0.0.13\ncas-live A 127.0.0.14\n")
        live = self.start_cas_at("127.0.0.14", name="cas-live.site1.test")
        cases = {"live": live}
        # nothing listens on 127.0.0.13 at that port: refused
        urls = ["http://cas-dead.site1.test:%d" % live.port,
                "http://cas-live.site1.test:%d" % live.port]
        # Slow active checks (the first comes about 1 s after the name
        # resolves, the next a minute later), fall 6: the dead member stays
        # "up" while the first requests below try it, and only the
        # failures those requests see can take it out.
        health = {"path": HEALTH_PATH, "interval": 60, "timeout": 1,
                  "rise": 1, "fall": 6}
        d = self.start_ns_daemon([{"name": "site1", "cas": urls,
                                   "health": health}], knot=knot)
        self.assertTrue(
            self.wait_for_log(d, r"cas-dead\.site1\.test resolves to [1-9]",
                              10),
            "the dead name never resolved (it must be a pool member for "
            "this case); stderr:\n" + d.stderr_text()[-2000:])
        self.assertIsNone(re.search(r"127\.0\.0\.13:\d+\) is down",
                                    d.stderr_text()))
        for i in range(8):
            s = self.send(d)
            self.assertEqual(s.status, 200, "request %d: %r (a connect "
                             "refused before any byte was sent must be "
                             "retried on the next CAS)" % (
                                 i, s.resp.status_line if s.resp else s))
            self.assertEqual(len(live.find(s.mark)), 1)
            e = self.log_entry(d, s.device)
            self.assertEqual(e.get("upstream"), "127.0.0.14:%d" % live.port,
                             e)
        # Those requests did try the dead name first: the connect failures
        # they saw take it out now (passive ejection; the active checks
        # alone could not reach fall 6 in this time).
        self.assertTrue(
            self.wait_for_log(d, r"127\.0\.0\.13:\d+\) is down", 4),
            "the refused member was never taken out: did the requests try "
            "it at all? easfront said:\n" + self.cas_log_lines(d))


# --------------------------------------------------------------------------

class Preflight(NsCase):

    ZONE = ("site1-eas A 127.0.0.1\nsite2-eas A 127.0.0.1\n"
            "site3-eas A 127.0.0.1\nautodiscover A 127.0.0.1\n"
            "cas1 2 CNAME cas1-a\ncas1-a A 127.0.0.11\n"
            "cas2 A 127.0.0.12\n")
    SANS = ["DNS:site1-eas.site1.test", "DNS:site2-eas.site1.test",
            "DNS:autodiscover.site1.test"]

    def setUp(self):
        super().setUp()
        self.knot = Knot(self, self.ZONE)
        self.ca = eftest.Pki()
        cert, self.key = self.ca.leaf("eas", self.SANS, days=90)
        self.chain = self.with_ca(cert)
        c5, self.key5 = self.ca.leaf("soon", ["DNS:mail.site1.test"], days=5)
        self.chain5 = self.with_ca(c5)
        self.leaf_only = cert
        self.dir = eftest.mktemp_dir("eftest-pf-")

    def with_ca(self, cert):
        path = cert[:-4] + "-chain.pem"
        with open(cert) as f, open(self.ca.ca_cert) as ca, \
                open(path, "w") as out:
            out.write(f.read() + ca.read())
        return path

    def config(self, sites=None, certs=None):
        sites = sites or [
            {"name": "site1", "external_url":
             "https://site1-eas.site1.test/Microsoft-Server-ActiveSync",
             "cas": ["http://cas1.site1.test:8080"]},
            {"name": "site2", "external_url":
             "https://site2-eas.site1.test/Microsoft-Server-ActiveSync",
             "cas": ["http://cas2.site1.test:8080"]}]
        c = {"site": "site1",
             "pid_file": os.path.join(self.dir, "easfront.pid"),
             "listen": [{"address": "127.0.0.1:%d" % eftest.free_port()}],
             "tls": {"certificates": [{"cert": c, "key": k} for c, k in (
                 certs or [(self.chain, self.key)])]},
             "sites": sites,
             "dns": {"servers": [self.knot.server]}}
        path = os.path.join(self.dir, "pf-%s.yaml" % uuid.uuid4().hex[:8])
        with open(path, "w") as f:
            f.write(eftest.yaml_dump(c))
        return path

    def preflight(self, conf):
        p = subprocess.run([eftest.easfront_bin(), "preflight", "-c", conf],
                           capture_output=True, text=True, timeout=60)
        out = p.stdout + p.stderr
        for m in eftest.SANITIZER_MARKERS:
            self.assertNotIn(m, out)
        return p.returncode, p.stdout, out

    def line(self, out, *words):
        """The first line containing every word."""
        for ln in out.splitlines():
            if all(w in ln for w in words):
                return ln
        self.fail("no line with %s in:\n%s" % (words, out))

    def test_good_setup(self):
        rc, stdout, out = self.preflight(self.config())
        print("\n" + stdout)
        self.assertEqual(rc, 0, out)
        self.assertEqual(stdout.strip().splitlines()[-1], "preflight: ok")
        self.assertNotIn("FAIL", stdout)
        ln = self.line(stdout, "cas1.site1.test")
        self.assertTrue(ln.startswith("ok"), ln)
        self.assertRegex(ln, r"CNAME cas1-a\.site1\.test\.?\b")
        self.assertIn("127.0.0.11", ln)
        self.assertRegex(ln, r"TTL 2\b", "the chain's smallest TTL is 2")
        ln = self.line(stdout, "cas2.site1.test")
        self.assertTrue(ln.startswith("ok"), ln)
        self.assertIn("127.0.0.12", ln)
        # (A TTL 60; the empty AAAA answer's negative TTL is 5 and the
        # resolver currently folds it in: either is shown with "TTL")
        self.assertRegex(ln, r"\(TTL [0-9]+\)")
        for name in ("site1-eas.site1.test", "site2-eas.site1.test",
                     "autodiscover.site1.test"):
            ln = self.line(stdout, name)
            self.assertTrue(ln.startswith("ok"), ln)
            self.assertIn("127.0.0.1", ln)

    def bad_sites(self, external3=False, nxdomain=False):
        sites = [
            {"name": "site1", "external_url":
             "https://site1-eas.site1.test/Microsoft-Server-ActiveSync",
             "cas": ["http://cas1.site1.test:8080"]},
            {"name": "site2", "external_url":
             "https://site2-eas.site1.test/Microsoft-Server-ActiveSync",
             "cas": ["http://cas2.site1.test:8080"]}]
        if external3:
            sites.append({"name": "site3", "external_url":
                          "https://site3-eas.site1.test/Microsoft-Server-"
                          "ActiveSync", "cas": ["http://127.0.0.13:8080"]})
        if nxdomain:
            sites[1]["cas"].append("http://cas9.site1.test:8080")
        return sites

    def assert_problem(self, rc, stdout, out, *words):
        self.assertEqual(rc, 1, out)
        self.assertEqual(stdout.strip().splitlines()[-1],
                         "preflight: problems found")
        ln = self.line(stdout, *words)
        self.assertTrue(ln.startswith("FAIL"), ln)
        return ln

    def check_san(self, stdout, rc, out):
        ln = self.assert_problem(rc, stdout, out, "site3-eas.site1.test",
                                 "certificate")
        self.assertRegex(ln, r"(?i)no configured certificate|not on|SAN")

    def check_nx(self, stdout, rc, out):
        ln = self.assert_problem(rc, stdout, out, "cas9.site1.test")
        self.assertRegex(ln, r"(?i)does not resolve|NXDOMAIN|no such name")

    def check_soon(self, stdout, rc, out):
        ln = self.assert_problem(rc, stdout, out, "soon-chain.pem")
        self.assertRegex(ln, r"(?i)expire")

    def test_bad_setups_each_problem_named(self):
        soon = [(self.chain, self.key), (self.chain5, self.key5)]
        cases = [
            ("external name not on the certificate",
             self.config(self.bad_sites(external3=True)), [self.check_san]),
            ("CAS name NXDOMAIN",
             self.config(self.bad_sites(nxdomain=True)), [self.check_nx]),
            ("leaf expiring in 5 days",
             self.config(certs=soon), [self.check_soon]),
            ("all three at once",
             self.config(self.bad_sites(True, True), soon),
             [self.check_san, self.check_nx, self.check_soon]),
        ]
        for name, conf, checks in cases:
            with self.subTest(case=name):
                rc, stdout, out = self.preflight(conf)
                print("\n-- %s:\n%s" % (name, stdout))
                for check in checks:
                    check(stdout, rc, out)
                # what is fine is still said to be fine
                ln = self.line(stdout, "cas1.site1.test")
                self.assertTrue(ln.startswith("ok"), ln)
                n_fail = len([ln for ln in stdout.splitlines()
                              if ln.startswith("FAIL")])
                self.assertGreaterEqual(n_fail, len(checks))

    def test_chain_without_anchor_flagged(self):
        rc, stdout, out = self.preflight(self.config(
            certs=[(self.leaf_only, self.key)]))
        print("\n" + stdout)
        ln = self.assert_problem(rc, stdout, out, "eas.pem")
        self.assertRegex(ln, r"(?i)verif|chain")


if __name__ == "__main__":
    unittest.main()
