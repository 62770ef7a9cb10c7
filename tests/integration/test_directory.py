"""The directory as the source of the site map (issue 8), end to end: a real
OpenLDAP slapd (ldap/run.sh: 3,000 users userNNNN whose homeMDB is
DB0(NNNN % 5 + 1), a CA, a service account), the real daemon with
`sitemap.ldap` pointing at it, and the stand-in CAS of two or three sites
(test_routing.World). Every case starts its own slapd and daemon and stops
both at the end, failed or not.

The site map of these cases (map_lines()) places the databases: DB01, DB04
and DB05 in site1 (this front end's site), DB02, DB03 and "DB,07" (user0007's
homeMDB is written with a hex escape) in site2, the remote site with an
external URL.
So userNNNN lives in site1 when NNNN % 5 is 0, 3 or 4, and in site2 when it
is 1 or 2. Two users are pinned by a user line over what the directory says,
and fabrikam.test is a domain rule. default_site is site3 (a CAS without an
external URL) where a case needs "unknown user" to be told apart from the
two sites, site2 where it needs a 451 turned into a proxy.

slapd is driven through run.sh: `run.sh DRIVER` builds and serves the
directory for as long as DRIVER runs (here a small script that prints where
slapd is and then waits for its standard input to close, so slapd goes away
with this process whatever happens), `run.sh ctl DIR modify|stop|start|
pause|resume|searches` changes it. The slapd log (stats level) is read
directly to count searches per user and the searches in flight at once.
"""

import asyncio
import os
import re
import shlex
import ssl
import subprocess
import threading
import time
import unittest
import urllib.parse

import eftest
import test_routing as tr
from eftest import SNI

HERE = os.path.dirname(os.path.abspath(__file__))
RUN_SH = os.path.join(HERE, "ldap", "run.sh")
SUFFIX = "dc=contoso,dc=test"
EXT2 = tr.EXT2
SITE_OF_DB = {"DB01": "site1", "DB02": "site2", "DB03": "site2",
              "DB04": "site1", "DB05": "site1"}
PINNED_DB = "user0010@contoso.test"     # directory DB01 (site1), map DB02
PINNED_SITE = "user0016@contoso.test"   # directory DB02 (site2), map site1


def map_lines(site_of_db=None):
    lines = ["# easfront directory tests\twhat\tkey\tvalue"]
    for db, site in sorted((site_of_db or SITE_OF_DB).items()):
        lines.append("database\t%s\t%s" % (db, site))
    lines += ["database\tDB,07\tsite2",
              "user\t%s\tDB02" % PINNED_DB,
              "user\t%s\tsite1" % PINNED_SITE,
              "domain\tfabrikam.test\tsite2"]
    return lines


def db_of(n):
    """The homeMDB database run.sh gives userNNNN."""
    return "DB,07" if n == 7 else "DB%02d" % (n % 5 + 1)


def upn(n):
    return "user%04d@contoso.test" % n


def users_in(site, start, count, site_of_db=None):
    """count user numbers from start on whose database is in site."""
    m = site_of_db or SITE_OF_DB
    out, n = [], start
    while len(out) < count:
        if n not in (7, 8) and m.get(db_of(n)) == site:
            out.append(n)
        n += 1
    return out


# --------------------------------------------------------------------------
# slapd through ldap/run.sh

DRIVER = r"""#!/bin/bash
# ldap/run.sh's DRIVER for test_directory.py: says where slapd is, then
# holds it up until the test closes our standard input.
if [ "${1:-}" = --free-port ]; then
	exec /usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
fi
printf 'EF_LDAP_READY %s %s %s\n' "$EF_LDAP_DIR" "$EF_LDAP_PORT" \
	"$EF_LDAPS_PORT"
exec cat >/dev/null
"""

LOG_TIME = re.compile(r"^([0-9a-f]+)\.([0-9a-f]+) \S+ conn=(\d+) op=(\d+) ")
SRCH_USER = re.compile(r' SRCH base="[^"]*" .*filter="\(\|\(userPrincipalName'
                       r'=([^)]*)\)')
RESULT_TIMES = re.compile(r" SEARCH RESULT .*qtime=([0-9.]+) "
                          r"etime=([0-9.]+)")


class Slapd:
    """One slapd of ldap/run.sh for one test case (stopped at cleanup)."""

    def __init__(self, tc, timeout=300):
        self.tc = tc
        self.tmp = eftest.mktemp_dir("eftest-ldap-")
        driver = os.path.join(self.tmp, "driver.sh")
        with open(driver, "w") as f:
            f.write(DRIVER)
        os.chmod(driver, 0o755)
        self.out_path = os.path.join(self.tmp, "run.out")
        self.err_path = os.path.join(self.tmp, "run.err")
        with open(self.out_path, "wb") as out, \
                open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(["bash", RUN_SH, driver],
                                         stdin=subprocess.PIPE, stdout=out,
                                         stderr=err, cwd=self.tmp)
        tc.addCleanup(self.close)
        self.paused = False
        ready = eftest.wait_until(self._ready, timeout, 0.05)
        if not ready:
            raise AssertionError("ldap/run.sh did not serve within %d s "
                                 "(rc %s):\n%s\n%s" % (
                                     timeout, self.proc.poll(),
                                     self._text(self.out_path),
                                     self._text(self.err_path)[-3000:]))
        self.dir, port, sport = ready
        self.port, self.sport = int(port), int(sport)
        self.log_path = os.path.join(self.dir, "slapd.log")
        self.ca = os.path.join(self.dir, "ca.pem")
        self.pw = os.path.join(self.dir, "svc.pw")
        self.bad_pw = os.path.join(self.dir, "bad.pw")

    @staticmethod
    def _text(path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _ready(self):
        m = re.search(r"^EF_LDAP_READY (\S+) (\d+) (\d+)$",
                      self._text(self.out_path), re.M)
        if m:
            return m.groups()
        if self.proc.poll() is not None:
            raise AssertionError("ldap/run.sh exited %s before serving:\n"
                                 "%s\n%s" % (self.proc.returncode,
                                             self._text(self.out_path),
                                             self._text(self.err_path)))
        return None

    def close(self):
        """Ends the driver: run.sh then stops slapd and removes its dir."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.terminate()       # its trap still stops slapd
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)

    # ---- ctl

    def ctl(self, *args, timeout=60):
        cmd = ["bash", RUN_SH, "ctl", self.dir] + [str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise AssertionError("%s exited %d: %s %s" % (
                " ".join(shlex.quote(c) for c in cmd), p.returncode,
                p.stdout, p.stderr))
        return p.stdout

    def modify(self, n, db):
        """userNNNN's homeMDB becomes CN=db,..."""
        self.ctl("modify", "user%04d" % n, db)

    def stop(self):
        self.ctl("stop")

    def start(self):
        self.ctl("start")

    def pause(self):
        self.ctl("pause")
        self.paused = True

    def resume(self):
        self.ctl("resume")
        self.paused = False

    def searches(self, user):
        """Searches slapd logged for user (run.sh ctl searches)."""
        return int(self.ctl("searches", user).strip() or "0")

    # ---- the log

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_lines(self, offset=0):
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace").splitlines()

    def search_counts(self, offset=0):
        """{user (the filter's value): searches} since offset."""
        counts = {}
        for ln in self.log_lines(offset):
            m = SRCH_USER.search(ln)
            if m:
                u = m.group(1).lower()
                counts[u] = counts.get(u, 0) + 1
        return counts

    def search_results(self, offset=0):
        """Searches answered since offset, each as (conn, arrival, end) in
        seconds: end is when slapd logged the result, arrival that minus
        its etime (the op's time since slapd read it off the socket)."""
        out = []
        for ln in self.log_lines(offset):
            m = LOG_TIME.match(ln)
            r = RESULT_TIMES.search(ln) if m else None
            if not r:
                continue
            end = int(m.group(1), 16) + int(m.group(2), 16) / 1e9
            out.append((int(m.group(3)), end - float(r.group(2)), end))
        return out

    def max_in_flight(self, offset=0, slack=0.02):
        """{conn: the most searches slapd held at once on it} since offset,
        counted at each arrival. slapd logs a result after sending it, so
        the client may already have sent its next search (and slapd read
        it) before the previous one shows as done: a search that ends
        within slack seconds of an arrival does not count against it (on a
        loaded 2-core machine that log line lags by more than 1 ms)."""
        by_conn = {}
        for conn, start, end in self.search_results(offset):
            by_conn.setdefault(conn, []).append((start, end))
        most = {}
        for conn, spans in by_conn.items():
            spans.sort()
            top = 0
            for i, (a, _) in enumerate(spans):
                top = max(top, 1 + sum(1 for _, e2 in spans[:i]
                                       if e2 > a + slack))
            most[conn] = top
        return most

    def first_wave(self, offset=0):
        """{conn: searches slapd had read before it answered its first
        one} since offset: with slapd stopped (SIGSTOP) meanwhile, what
        the client had sent while it got no answer. slapd logs its first
        result after sending it: the one search the client sends on
        reading that answer may be logged as read before it."""
        res = self.search_results(offset)
        if not res:
            return {}
        first = min(e for _, _, e in res)
        out = {}
        for conn, a, _ in res:
            if a < first:
                out[conn] = out.get(conn, 0) + 1
        return out


def ldap_conf(slapd, **over):
    c = {"uris": ["ldap://127.0.0.1:%d" % slapd.port],
         "starttls": True,
         "ca_file": slapd.ca,
         "bind_dn": "cn=svc," + SUFFIX,
         "password_file": slapd.pw,
         "base": SUFFIX}
    c.update(over)
    return c


# --------------------------------------------------------------------------
# the daemon with a directory

class DirWorld(tr.World):
    """test_routing's World (site1 own, site2 remote with EXT2, site3 with
    no external URL unless site3 is False) with map_lines(site_of_db),
    sitemap.ldap on slapd and the admin endpoint; the other keywords
    (timeouts, health, site_opts, start, ...) pass through."""

    def __init__(self, tc, slapd, ldap=None, default_site="site3",
                 site_of_db=None, workers=2, limits=None, site3=True, **kw):
        self.slapd = slapd
        self.ldap = ldap_conf(slapd, **(ldap or {}))
        self.admin_port = eftest.free_port()
        extra = {"admin": {"listen": "127.0.0.1:%d" % self.admin_port}}
        if limits:
            extra["limits"] = limits
        super().__init__(tc, site3=site3, lines=map_lines(site_of_db),
                         default_site=default_site, workers=workers,
                         sitemap={"ldap": self.ldap}, extra=extra, **kw)

    # ---- admin endpoint

    def admin(self, method, path):
        return eftest.admin_request(self.admin_port, method, path)

    def metrics(self):
        """{"hit"|"miss"|"stale"|"error": n, "entries": n}"""
        status, text = self.admin("GET", "/metrics")
        self.tc.assertEqual(status, 200, text)
        out = {}
        for m in re.finditer(r'^easfront_directory_lookups_total\{result="'
                             r'(\w+)"\} (\d+)$', text, re.M):
            out[m.group(1)] = int(m.group(2))
        m = re.search(r"^easfront_directory_cache_entries (\d+)$", text,
                      re.M)
        if m:
            out["entries"] = int(m.group(1))
        self.tc.assertEqual(sorted(out), ["entries", "error", "hit", "miss",
                                          "stale"],
                            "directory metrics missing from:\n" + text)
        return out

    def flush(self, user=None):
        path = "/cache/flush"
        if user is not None:
            path += "?user=" + urllib.parse.quote(user, safe="@")
        return self.admin("POST", path)


class DirCase(tr.RoutingCase):

    def send(self, w, user, version="14.1", cmd="Sync", timeout=10):
        """(EasReq, response, seconds) of one request from user."""
        r = tr.EasReq(cmd, user, version)
        t0 = time.monotonic()
        resp = w.send(r, timeout=timeout)
        return r, resp, time.monotonic() - t0

    def routed(self, w, user, site, version="14.1", reason=None):
        """A request from user reaches site the way a site's user would:
        proxied to site1 (own), 451 to EXT2 (site2, 14.0+), proxied to
        site2 (older) or site3, and the access log says so. reason: the
        log's reason when not the usual one; given for a version that
        follows a 451, the request must be proxied instead (the
        directory-down case). Returns the seconds it took."""
        r, resp, secs = self.send(w, user, version)
        decision, _, usual = self.expect(site, version)
        if site == "site3" and decision == "redirect":
            decision, usual = "proxy", "proxy-no-external-url"
        if decision == "redirect" and reason is None:
            self.assert_redirected(w, r.req, resp, EXT2)
        else:
            self.assert_proxied(w, r.req, resp, site)
            decision = "proxy"
        self.assert_log(w, r.device, decision=decision,
                        reason=reason or usual, site=site)
        return secs

    def route(self, w, user, version="14.1", conf=None):
        p = eftest.run([w.d.bin, "route", "-c", conf or w.d.conf_path, user,
                        "--version", version], timeout=30)
        return p.stdout

    def map_line(self, w, text):
        return tr.line_of(w.lines, text)


# --------------------------------------------------------------------------

class Routes(DirCase):
    """1. Routes come from the directory; a map line pins a user over it;
    what the directory does not know follows the domain and default
    rules."""

    def test_routes_from_directory(self):
        s = Slapd(self)
        w = DirWorld(self, s)
        cases = [
            (upn(5), "14.1", "site1"),            # DB01
            (upn(4), "16.1", "site1"),            # DB05
            (upn(3), "14.0", "site1"),            # DB04
            (upn(1), "14.1", "site2"),            # DB02
            (upn(1), "12.1", "site2"),
            (upn(2), "16.0", "site2"),            # DB03
            (upn(2), "2.5", "site2"),
            ("User0011@CONTOSO.test", "14.1", "site2"),   # DB02
            ("CONTOSO\\user0006", "16.1", "site2"),        # DB02
            ("CONTOSO\\user0009", "14.1", "site1"),        # DB05
            ("a.lias@contoso.test", "14.1", "site2"),      # mail=, DB03
            (upn(7), "14.1", "site2"),            # "DB\2C07"
            (PINNED_DB, "14.1", "site2"),         # directory: site1
            (PINNED_DB, "12.1", "site2"),
            (PINNED_SITE, "14.1", "site1"),       # directory: site2
            ("ghost@contoso.test", "14.1", "site3"),       # unknown
            ("nomailbox@contoso.test", "14.1", "site3"),   # no homeMDB
            (upn(8), "14.1", "site3"),            # db08: not in the map
            ("someone@fabrikam.test", "14.1", "site2"),    # domain rule
            ("someone@fabrikam.test", "12.1", "site2"),
        ]
        for user, version, site in cases:
            with self.subTest(user=user, version=version, site=site):
                self.routed(w, user, site, version)
        # The directory was asked once per user (cached after), and about
        # pinned users it need not be.
        self.assertEqual(s.searches(upn(1)), 1)
        self.assertEqual(s.searches(upn(2)), 1)
        self.assertLessEqual(s.searches(PINNED_DB), 1)


class Changes(DirCase):
    """2. A database move in the directory is seen after cache_ttl, or at
    once after POST /cache/flush?user=."""

    def test_move_seen_after_ttl(self):
        s = Slapd(self)
        ttl = 2
        w = DirWorld(self, s, ldap={"cache_ttl": ttl, "negative_ttl": ttl})
        n = 5                                   # DB01: site1
        t0 = time.monotonic()
        self.routed(w, upn(n), "site1")
        s.modify(n, "DB02")                     # now site2
        if time.monotonic() - t0 < ttl - 0.5:
            # within the TTL the cached answer still holds
            self.routed(w, upn(n), "site1")
        self.assertEqual(s.searches(upn(n)), 1)
        time.sleep(max(0.0, t0 + ttl + 0.5 - time.monotonic()))
        self.routed(w, upn(n), "site2")
        self.routed(w, upn(n), "site2", version="12.1")
        self.assertEqual(s.searches(upn(n)), 2)
        # and back, by the same way
        s.modify(n, "DB04")
        time.sleep(ttl + 0.5)
        self.routed(w, upn(n), "site1")
        self.assertEqual(s.searches(upn(n)), 3)

    def test_flush_one_user(self):
        s = Slapd(self)
        w = DirWorld(self, s, ldap={"cache_ttl": 300})
        a, b = 15, 20                           # both DB01: site1
        for n in (a, b):
            self.routed(w, upn(n), "site1")
            s.modify(n, "DB03")                 # site2
        for n in (a, b):                        # cached: no change yet
            self.routed(w, upn(n), "site1")
        status, text = w.flush(upn(a))
        self.assertEqual((status, text.strip()), (200, "flushed"))
        self.routed(w, upn(a), "site2")         # asked again at once
        self.routed(w, upn(b), "site1")         # still cached
        self.assertEqual(s.searches(upn(a)), 2)
        self.assertEqual(s.searches(upn(b)), 1)
        # the key is the normalised user: DOMAIN\user flushes user@domain
        status, text = w.flush("CONTOSO\\user%04d" % b)
        self.assertEqual((status, text.strip()), (200, "flushed"))
        self.routed(w, upn(b), "site2")
        status, text = w.flush("never-seen@contoso.test")
        self.assertEqual((status, text.strip()), (200, "not cached"))
        # everyone
        self.assertGreater(w.metrics()["entries"], 0)
        status, text = w.flush()
        self.assertEqual(status, 200, text)
        self.assertEqual(w.metrics()["entries"], 0)
        s.modify(a, "DB01")
        self.routed(w, upn(a), "site1")
        self.assertEqual(s.searches(upn(a)), 3)


class DirectoryDown(DirCase):
    """3. The directory stops or stalls: users seen before keep their route
    past the TTL, new users go to default_site proxied (never a 451 on a
    guess), no request waits longer than timeout_ms; it comes back and is
    used again, without restarting easfront."""

    TIMEOUT_MS = 1000
    MARGIN = 1.5        # seconds on top of timeout_ms for one request

    def bound(self):
        return self.TIMEOUT_MS / 1000.0 + self.MARGIN

    def wait_directory_back(self, w, candidates, timeout=45, in_a_row=10):
        """Sends requests of new site1 users (from candidates), 0.2 s
        apart, until in_a_row of them in a row are routed from the
        directory again (proxied to site1), each worker's client having
        reconnected after its own back-off (each new connection lands on
        a worker at random); until then they go to default_site (site2),
        proxied. Returns how many users that took and how long."""
        t0 = time.monotonic()
        good = 0
        for i, n in enumerate(candidates):
            r, resp, secs = self.send(w, upn(n))
            self.assertLess(secs, self.bound(), "request stalled")
            self.assertNotEqual(resp.status, 451, resp.status_line)
            if w.where(r.mark) == ["site1"]:
                good += 1
                if good == in_a_row:
                    return i + 1, time.monotonic() - t0
                continue
            good = 0
            self.assertEqual(w.where(r.mark), ["site2"])
            self.assertEqual(w.log_entry(r.device).get("reason"),
                             "directory-down")
            if time.monotonic() > t0 + timeout:
                break
            time.sleep(0.2)
        self.fail("the directory was not used again within %d s of slapd "
                  "coming back" % timeout)

    def test_slapd_stopped_then_back(self):
        s = Slapd(self)
        ttl = 2
        w = DirWorld(self, s, default_site="site2",
                     ldap={"cache_ttl": ttl, "negative_ttl": ttl,
                           "timeout_ms": self.TIMEOUT_MS})
        local, remote = 5, 1                    # DB01 site1, DB02 site2
        t0 = time.monotonic()
        self.routed(w, upn(local), "site1")
        self.routed(w, upn(remote), "site2")
        self.routed(w, "ghost@contoso.test", "site2")    # default, 451
        s.stop()
        time.sleep(max(0.0, t0 + ttl + 0.5 - time.monotonic()))
        before = w.metrics()
        # seen before: the stale answer keeps the route, 451 included
        for user, site, version in ((upn(local), "site1", "14.1"),
                                    (upn(remote), "site2", "14.1"),
                                    (upn(remote), "site2", "12.1"),
                                    (upn(local), "site1", "16.1")):
            with self.subTest(user=user, version=version, stale=True):
                secs = self.routed(w, user, site, version)
                self.assertLess(secs, self.bound())
        # a map line is no guess: a pinned user is still redirected
        self.routed(w, PINNED_DB, "site2")
        # never seen: default_site (site2), proxied, never redirected
        new_local, new_remote = users_in("site1", 100, 3), \
            users_in("site2", 100, 3)
        for n in new_local + new_remote:
            with self.subTest(user=upn(n), down=True):
                secs = self.routed(w, upn(n), "site2",
                                   reason="directory-down")
                self.assertLess(secs, self.bound())
        for user, version in (("user0200@contoso.test", "12.1"),
                              ("someone@fabrikam.test", "14.1")):
            with self.subTest(user=user, version=version, down=True):
                reason = None if version == "12.1" else "directory-down"
                secs = self.routed(w, user, "site2", version, reason=reason)
                self.assertLess(secs, self.bound())
        after = w.metrics()
        self.assertGreaterEqual(after["stale"] - before["stale"], 4, after)
        self.assertGreaterEqual(after["error"] - before["error"], 6, after)
        # slapd comes back: new users are routed from it again
        s.start()
        tried, secs = self.wait_directory_back(w, users_in("site1", 300,
                                                          300))
        if eftest.VERBOSE:
            print("directory used again after %.1f s, %d users" % (secs,
                                                                   tried))
        for n in users_in("site2", 300, 3):
            self.routed(w, upn(n), "site2")
        # and the users seen before are fresh again
        self.routed(w, upn(remote), "site2")
        self.assertGreaterEqual(s.searches(upn(remote)), 2)

    def test_slapd_stalls_worker_keeps_serving(self):
        """A lookup waiting on a stalled directory (SIGSTOP) holds only its
        own request: the same worker answers a cached user meanwhile."""
        s = Slapd(self)
        w = DirWorld(self, s, default_site="site2", workers=1,
                     ldap={"timeout_ms": self.TIMEOUT_MS})
        local = 5
        self.routed(w, upn(local), "site1")
        s.pause()
        waiting = {}

        def new_user():
            try:
                waiting["res"] = self.send(w, upn(110))       # DB01
            except Exception as e:      # reported below
                waiting["err"] = e
        t = threading.Thread(target=new_user, daemon=True)
        t0 = time.monotonic()
        t.start()
        time.sleep(0.2)
        secs = self.routed(w, upn(local), "site1")
        self.assertLess(secs, 0.5, "a cached user waited on the directory")
        self.assertTrue(t.is_alive() or time.monotonic() - t0 >=
                        self.TIMEOUT_MS / 1000.0 - 0.1,
                        "the new user's request did not wait for the "
                        "directory at all")
        t.join(self.bound() + 5)
        self.assertFalse(t.is_alive(), "request stalled past timeout_ms")
        if "err" in waiting:
            raise waiting["err"]
        r, resp, secs = waiting["res"]
        self.assertLess(secs, self.bound())
        self.assertGreater(secs, self.TIMEOUT_MS / 1000.0 - 0.2)
        self.assert_proxied(w, r.req, resp, "site2")
        self.assert_log(w, r.device, decision="proxy",
                        reason="directory-down", site="site2")
        # more new users while it stalls: each answered within the bound
        for n in users_in("site1", 120, 3):
            secs = self.routed(w, upn(n), "site2", reason="directory-down")
            self.assertLess(secs, self.bound())
        s.resume()
        self.wait_directory_back(w, users_in("site1", 300, 300))
        self.routed(w, upn(1), "site2")


# --------------------------------------------------------------------------
# many requests at once

def _complete(buf):
    """Whether buf holds a whole response (Content-Length or chunked)."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return False
    head = bytes(buf[:i]).lower()
    m = re.search(rb"\r\ncontent-length: *(\d+)", head)
    if m:
        return len(buf) - i - 4 >= int(m.group(1))
    if b"transfer-encoding: chunked" in head:
        return buf.endswith(b"0\r\n\r\n")
    return False


async def _burst(port, raws, after_sent, connect_limit):
    ctx = eftest.client_context()
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(connect_limit)
    go = asyncio.Event()
    results = [None] * len(raws)
    conns = [None] * len(raws)

    async def connect(i):
        async with sem:
            try:
                conns[i] = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=ctx, server_hostname=SNI,
                    ssl_handshake_timeout=60)
            except (OSError, ssl.SSLError, asyncio.TimeoutError) as e:
                results[i] = (e, 0.0)

    async def exchange(i):
        if conns[i] is None:
            return
        reader, writer = conns[i]
        await go.wait()
        t0 = loop.time()
        buf = bytearray()
        try:
            writer.write(raws[i])
            await writer.drain()
            while not _complete(buf):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
            results[i] = (bytes(buf), loop.time() - t0)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as e:
            results[i] = (e, loop.time() - t0)
        finally:
            writer.close()

    await asyncio.gather(*(connect(i) for i in range(len(raws))))
    tasks = [asyncio.ensure_future(exchange(i)) for i in range(len(raws))]
    await asyncio.sleep(0)
    go.set()
    if after_sent:
        await asyncio.sleep(0.05)
        await loop.run_in_executor(None, after_sent)
    await asyncio.gather(*tasks)
    return results


def burst(port, raws, after_sent=None, connect_limit=64, timeout=120):
    """Opens one TLS connection per request in raws (at most connect_limit
    handshakes at a time), then sends every request at once and reads
    every response; after_sent() runs (in a thread) once they are on
    their way. Returns [(raw response bytes or exception, seconds)]."""
    return asyncio.run(asyncio.wait_for(
        _burst(port, raws, after_sent, connect_limit), timeout))


def parse(raw):
    """eftest.Response of raw response bytes (body set from them)."""
    i = raw.index(b"\r\n\r\n")
    resp = eftest.Response(raw[:i + 4])
    resp.body = raw[i + 4:]
    return resp


class Scale(DirCase):
    """4. 1,000 first requests at once for 1,000 users: each routed right,
    one search each, max_inflight searches in flight at most; 100
    requests at once for one user: one search."""

    INFLIGHT = 4
    # only DB01 in site1: 200 of the 1,000 are proxied, 800 get a 451
    SITES = {"DB01": "site1", "DB02": "site2", "DB03": "site2",
             "DB04": "site2", "DB05": "site2"}

    def world(self, s, workers):
        return DirWorld(self, s, site_of_db=self.SITES, workers=workers,
                        ldap={"max_inflight": self.INFLIGHT},
                        timeouts={"handshake": 60, "client_header": 60,
                                  "idle": 120},
                        limits={"connections": 0,
                                "connections_per_client": 0})

    def check_burst(self, w, reqs, results, site_of):
        """Every (user number, EasReq) got its site's answer."""
        self.assertEqual(len(results), len(reqs))
        wrong = []
        log = {}

        def logged():
            for ln in w.d.access_log_lines():
                m = re.search(r'"device":"([^"]*)"', ln)
                if m:
                    log[m.group(1)] = ln
            return all(r.device in log for _, r in reqs)
        eftest.wait_until(logged, 10, 0.2)
        at_cas = {site: {r.header("X-Test-Mark") for r in c.requests}
                  for site, c in w.cas.items()}
        slowest = 0.0
        for (n, r), (raw, secs) in zip(reqs, results):
            slowest = max(slowest, secs)
            site = site_of(n)
            if isinstance(raw, Exception) or not raw:
                wrong.append((n, repr(raw)))
                continue
            resp = parse(raw)
            where = sorted(s for s, marks in at_cas.items()
                           if r.mark in marks)
            if site == "site1":
                ok = resp.status == 200 and where == ["site1"]
            else:
                ok = (resp.status == 451 and where == [] and
                      resp.headers_named("X-MS-Location") == [EXT2])
            line = log.get(r.device, "")
            if '"reason":"directory-down"' in line:
                ok = False
            if not ok:
                wrong.append((n, site, resp.status_line, where, line))
        self.assertEqual(wrong[:10], [], "%d of %d requests routed wrong"
                         % (len(wrong), len(reqs)))
        return slowest

    def test_thousand_users_at_once(self):
        s = Slapd(self)
        w = self.world(s, workers=2)
        users = list(range(1000, 2000))
        reqs = [(n, tr.EasReq("Sync", upn(n), "14.1")) for n in users]
        offset = s.log_size()
        before = w.metrics()
        t0 = time.monotonic()
        results = burst(w.d.port, [r.raw for _, r in reqs])
        took = time.monotonic() - t0
        self.check_burst(w, reqs, results,
                         lambda n: self.SITES[db_of(n)])
        # one search per user, no more
        eftest.wait_until(
            lambda: sum(s.search_counts(offset).values()) >= 1000, 10)
        counts = s.search_counts(offset)
        ours = {upn(n): counts.get(upn(n), 0) for n in users}
        missing = [u for u, c in ours.items() if c == 0]
        twice = [(u, c) for u, c in ours.items() if c > 1]
        self.assertEqual((missing[:5], twice[:5]), ([], []),
                         "%d users never searched, %d searched more than "
                         "once" % (len(missing), len(twice)))
        self.assertEqual(sum(counts.values()), 1000, "searches slapd saw")
        self.assertEqual(s.searches("user1500"), 1)
        # never more than max_inflight searches at once per connection
        most = s.max_in_flight(offset)
        self.assertEqual(len(most), 2, most)    # a connection per worker
        self.assertLessEqual(max(most.values()), self.INFLIGHT,
                             "searches in flight per connection: %r" % most)
        # (unbounded, this burst keeps some 200 in flight per connection)
        self.assertGreaterEqual(max(s.max_in_flight(offset, 0).values()),
                                2, "the burst never queued searches")
        after = w.metrics()
        self.assertGreaterEqual(after["miss"] - before["miss"], 1000)
        self.assertEqual(after["error"], before["error"])
        self.assertGreaterEqual(after["entries"], 1000)
        if eftest.VERBOSE:
            print("1,000 users at once: %.1f s, in flight %r" % (took, most))

    def test_one_user_hundred_times_at_once(self):
        """With slapd stalled while the requests arrive, every lookup joins
        the one search; a burst of new users meanwhile shows the bound on
        searches in flight."""
        s = Slapd(self)
        w = self.world(s, workers=1)
        one = 2001                                  # DB02: site2
        others = list(range(2100, 2140))
        reqs = [(one, tr.EasReq("Sync", upn(one), "14.1"))
                for _ in range(100)]
        reqs += [(n, tr.EasReq("Sync", upn(n), "14.1")) for n in others]
        offset = s.log_size()
        s.pause()

        def later():
            time.sleep(0.3)
            s.resume()
        results = burst(w.d.port, [r.raw for _, r in reqs], after_sent=later)
        self.check_burst(w, reqs, results, lambda n: self.SITES[db_of(n)])
        eftest.wait_until(lambda: s.searches(upn(others[-1])) >= 1 and
                          s.searches(upn(one)) >= 1, 10)
        self.assertEqual(s.searches(upn(one)), 1,
                         "100 lookups of one user, searches")
        counts = s.search_counts(offset)
        self.assertEqual({upn(n): counts.get(upn(n), 0) for n in others},
                         {upn(n): 1 for n in others})
        # While slapd was stopped the worker sent max_inflight searches
        # and queued the other 37; slapd read those first.
        wave = s.first_wave(offset)
        self.assertEqual(len(wave), 1, wave)        # one worker, one conn
        # (+1: the search sent on reading the first answer, see first_wave)
        self.assertLessEqual(max(wave.values()), self.INFLIGHT + 1,
                             "searches sent before any answer: %r" % wave)
        self.assertGreaterEqual(max(wave.values()), 2, wave)
        most = s.max_in_flight(offset)
        self.assertLessEqual(max(most.values()), self.INFLIGHT,
                             "searches in flight: %r" % most)


# --------------------------------------------------------------------------

class Commands(DirCase):
    """5. `easfront check` binds and searches; `easfront route` asks the
    directory."""

    def variant(self, w, name, **ldap):
        """Writes w's config with sitemap.ldap changed; returns (path,
        line of its `ldap:` key)."""
        c = w.d.config()
        c["sitemap"] = dict(c["sitemap"])
        c["sitemap"]["ldap"] = dict(c["sitemap"]["ldap"], **ldap)
        text = eftest.yaml_dump(c)
        path = os.path.join(w.d.dir, name)
        with open(path, "w") as f:
            f.write(text)
        line = text.splitlines().index("  ldap:") + 1
        return path, line

    def check(self, path):
        return eftest.run([eftest.easfront_bin(), "check", "-c", path],
                          timeout=60, check=False)

    def assert_check_fails(self, path, line, why):
        p = self.check(path)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertRegex(p.stderr, re.compile(
            r"^%s:%d: sitemap\.ldap: .*%s" % (re.escape(path), line, why),
            re.M | re.I))

    def test_check_and_route(self):
        s = Slapd(self)
        w = DirWorld(self, s, start=False)
        good, good_line = self.variant(w, "good.yaml")
        p = self.check(good)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("OK", p.stdout)
        ldaps, _ = self.variant(w, "ldaps.yaml", starttls=False, uris=[
            "ldaps://127.0.0.1:%d" % s.sport])
        p = self.check(ldaps)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        bad, line = self.variant(w, "badpw.yaml", password_file=s.bad_pw)
        self.assert_check_fails(bad, line, "")
        p = self.check(bad)
        self.assertRegex(p.stderr, re.compile(r"invalid credentials|bind",
                                              re.I))
        base, line = self.variant(w, "base.yaml",
                                  base="ou=nowhere," + SUFFIX)
        self.assert_check_fails(base, line, "")
        closed, line = self.variant(w, "closed.yaml", uris=[
            "ldap://127.0.0.1:%d" % eftest.closed_port()])
        self.assert_check_fails(closed, line, "")

        m = re.escape(w.map_path)

        def db_line(db, site):
            return self.map_line(w, "database\t%s\t%s" % (db, site))

        def from_dir(db, site):
            return (r"^map:\s+directory: user -> database %s; %s:%d: "
                    r"database %s -> site %s$" % (
                        re.escape(db), m, db_line(db, site),
                        re.escape(db), site))
        cases = [
            (upn(1), "14.1", [from_dir("DB02", "site2"),
                              r"^decision:\s+REDIRECT 451 X-MS-Location: "
                              + re.escape(EXT2) + "$"]),
            (upn(1), "12.1", [from_dir("DB02", "site2"),
                              r"^decision:\s+PROXY to the CAS pool of "
                              r"site2$"]),
            ("CONTOSO\\user0005", "14.1", [
                r"^user:\s+user0005@contoso\.test$",
                from_dir("DB01", "site1"),
                r"^decision:\s+PROXY to the CAS pool of site1$"]),
            (upn(7), "14.1", [from_dir("DB,07", "site2")]),
            ("ghost@contoso.test", "14.1", [
                r"^directory: no such user$",
                r"^home:\s+site3 \(default_site",
                r"^decision:\s+PROXY to the CAS pool of site3$"]),
            (PINNED_DB, "14.1", [
                r"^map:\s+%s:%d: user -> database DB02; " % (
                    m, self.map_line(w, "user\t%s\tDB02" % PINNED_DB)),
                r"^directory: database DB01, which the map does not "
                r"place \(or a map line pins the user\)$",
                r"^decision:\s+REDIRECT 451"]),
        ]
        for conf in (good, ldaps):
            for user, version, want in cases:
                with self.subTest(conf=os.path.basename(conf), user=user,
                                  version=version):
                    out = self.route(w, user, version, conf=conf)
                    for rx in want:
                        self.assertRegex(out, re.compile(rx, re.M))
        # the directory down: a guess is never a 451
        s.stop()
        out = self.route(w, upn(1), "14.1", conf=good)
        self.assertRegex(out, re.compile(
            r"^directory: unreachable and the user is not cached", re.M))
        self.assertNotRegex(out, re.compile(r"^decision:\s+REDIRECT", re.M))
        self.assert_check_fails(good, good_line, "")


class Metrics(DirCase):
    """6. /metrics: a miss, then hits; cache entries; flush."""

    def test_counters(self):
        s = Slapd(self)
        w = DirWorld(self, s)
        m0 = w.metrics()
        self.assertEqual(m0, {"hit": 0, "miss": 0, "stale": 0, "error": 0,
                              "entries": 0})
        self.routed(w, upn(5), "site1")
        m1 = w.metrics()
        self.assertEqual((m1["miss"], m1["hit"], m1["entries"]), (1, 0, 1),
                         m1)
        self.routed(w, upn(5), "site1")
        self.routed(w, "CONTOSO\\user0005", "site1")    # the same key
        m2 = w.metrics()
        self.assertEqual((m2["miss"], m2["hit"], m2["entries"]), (1, 2, 1),
                         m2)
        self.routed(w, "ghost@contoso.test", "site3")   # negative answer
        self.routed(w, "ghost@contoso.test", "site3")
        m3 = w.metrics()
        self.assertEqual((m3["miss"], m3["hit"], m3["entries"]), (2, 3, 2),
                         m3)
        self.assertEqual((m3["stale"], m3["error"]), (0, 0), m3)
        self.assertEqual(s.searches("ghost@contoso.test"), 1)


if __name__ == "__main__":
    unittest.main()
