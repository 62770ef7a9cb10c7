"""easfront in front of a real ActiveSync server: SOGo 5 (Debian's sogo and
sogo-activesync), two sites, each with its own sogod, PostgreSQL database
and memcached, one Dovecot for both (sogo_world.py builds it).

easfront stands in site1. Its site map puts user1@site1.test in site1 and
user2@site2.test in site2. Every request goes to easfront over real TLS with
real WBXML bodies (eas_wbxml.py):

 1. user1 at 14.1: OPTIONS (SOGo's capability headers pass unchanged),
    Provision, FolderSync SyncKey 0 (an Inbox), a Ping held past easfront's
    ordinary upstream timeout until its heartbeat, SOGo's own 401;
 2. user2 at 12.1: FolderSync proxied to site2's SOGo;
 3. user2 at 14.1: 451 + X-MS-Location from easfront, no SOGo contacted;
 4. many requests back to back: sogod closes every connection after its
    response (without saying so), which must not turn into 502s.

Run through ctest (label integration) or run.sh, which installs the Debian
packages first. By hand, with the packages present:
    EASFRONT_BIN=.../easfront /usr/bin/python3 -m unittest -v test_sogo
"""

import base64
import os
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import eas_wbxml as wb  # noqa: E402
import sogo_world  # noqa: E402
from sogo_world import EXTERNAL, SOGO_EAS_PATH, USERS  # noqa: E402

WORLD = None
EAS = "/Microsoft-Server-ActiveSync"
WBXML = "application/vnd.ms-sync.wbxml"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te",
              "transfer-encoding", "upgrade", "trailer"}
PING_HEARTBEAT = 20     # s; SOGo answers after it (steps of 5 s)
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:",
                     "LeakSanitizer", "WARNING: ThreadSanitizer")


def setUpModule():
    global WORLD
    WORLD = sogo_world.World()
    try:
        WORLD.start()
    except BaseException:
        WORLD.stop()
        raise


def tearDownModule():
    if WORLD is None:
        return
    problems = []
    rc = WORLD.ef_proc.proc.poll() if hasattr(WORLD, "ef_proc") else None
    if rc is not None:
        problems.append("easfront exited on its own with %s" % rc)
    try:
        with open(WORLD.path("easfront.out"), "rb") as f:
            text = f.read().decode("utf-8", "replace")
        for m in SANITIZER_MARKERS:
            if m in text:
                i = text.find(m)
                problems.append("sanitizer report from easfront:\n" +
                                text[max(0, i - 200):i + 3000])
                break
    except FileNotFoundError:
        pass
    problems += WORLD.stop()
    if problems:
        raise AssertionError("; ".join(problems))


def basic(user, password):
    return "Basic " + base64.b64encode(
        ("%s:%s" % (user, password)).encode()).decode()


class EasClient:
    """What a phone does, as far as these tests need: plain-query EAS
    requests with Basic credentials, provisioning when the server asks."""

    def __init__(self, user, version, device, password=None):
        self.user = user
        self.password = password or USERS[user][0]
        self.version = version
        self.device = device
        self.policy_key = None
        self.provisioned = []      # why a Provision was made

    def target(self, cmd, prefix=EAS):
        return "%s?Cmd=%s&User=%s&DeviceId=%s&DeviceType=SmartPhone" % (
            prefix, cmd, self.user, self.device)

    def headers(self, body=True):
        h = [("Authorization", basic(self.user, self.password)),
             ("User-Agent", "easfront-sogo-test/1.0"),
             ("MS-ASProtocolVersion", self.version)]
        if body:
            h.append(("Content-Type", WBXML))
        if self.policy_key is not None:
            h.append(("X-MS-PolicyKey", self.policy_key))
        return h

    def options(self, conn, prefix=EAS):
        return conn.request("OPTIONS", prefix, self.headers(body=False))

    def post(self, conn, cmd, tree, timeout=30, prefix=EAS):
        r = conn.request("POST", self.target(cmd, prefix), self.headers(),
                         wb.encode(tree), timeout=timeout)
        doc = None
        if r.status == 200 and r.body:
            doc = wb.decode(r.body)
        return r, doc

    def provision(self, conn):
        """The two-phase Provision of MS-ASPROV: ask for the policy, then
        acknowledge it with the temporary key."""
        ptype = ("MS-WAP-Provisioning-XML" if self.version == "2.5"
                 else "MS-EAS-Provisioning-WBXML")
        r, doc = self.post(conn, "Provision", (
            "Provision:Provision", [("Provision:Policies", [(
                "Provision:Policy", [("Provision:PolicyType", ptype)])])]))
        if r.status != 200 or doc is None:
            raise AssertionError("Provision phase 1: %r" % r)
        key = wb.text_of(doc, "Provision:PolicyKey")
        if key:
            self.policy_key = key
            r, doc = self.post(conn, "Provision", (
                "Provision:Provision", [("Provision:Policies", [(
                    "Provision:Policy", [
                        ("Provision:PolicyType", ptype),
                        ("Provision:PolicyKey", key),
                        ("Provision:Status", "1")])])]))
            if r.status != 200 or doc is None:
                raise AssertionError("Provision phase 2: %r" % r)
            self.policy_key = wb.text_of(doc, "Provision:PolicyKey", key)
        return r, doc

    def folder_sync(self, conn, sync_key="0"):
        """FolderSync; provisions and retries once on HTTP 449 (<= 12.1) or
        Status 142/143/144 (14.0+), like a client."""
        tree = ("FolderHierarchy:FolderSync",
                [("FolderHierarchy:SyncKey", sync_key)])
        r, doc = self.post(conn, "FolderSync", tree)
        status = wb.text_of(doc, "FolderHierarchy:Status") if doc else None
        if r.status == 449 or status in ("142", "143", "144"):
            self.provisioned.append(r.status if r.status == 449 else status)
            self.provision(conn)
            r, doc = self.post(conn, "FolderSync", tree)
        return r, doc


def folders(doc):
    """[(ServerId, DisplayName, Type)] of a FolderSync response."""
    out = []
    for _, content in wb.find_all(doc, "FolderHierarchy:Add"):
        d = {n.split(":", 1)[1]: v for n, v in content}
        out.append((d.get("ServerId"), d.get("DisplayName"), d.get("Type")))
    return out


def end_to_end(headers):
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]


class SogoBehindEasfront(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        WORLD.easfront_alive()

    def wait_access(self, pred, what, timeout=5):
        """The access-log entry matching pred (the newest), waiting a little
        for it to be written."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [e for e in WORLD.access_log() if pred(e)]
            if hits:
                return hits[-1]
            if time.monotonic() > deadline:
                self.fail("no easfront access-log entry for %s; log:\n%s" % (
                    what, "\n".join(map(str, WORLD.access_log()[-10:]))))
            time.sleep(0.1)

    def wait_sogo_log(self, site, before, pred, what, timeout=5):
        """The ActiveSync request lines sogod of site logged since the
        before-th, once one satisfies pred (sogod logs a request after it
        has answered it, so the line may lag a little)."""
        deadline = time.monotonic() + timeout
        while True:
            reqs = WORLD.sogo_requests(site)[before:]
            if any(pred(line, st) for line, st in reqs):
                return reqs
            if time.monotonic() > deadline:
                self.fail("%s's SOGo did not log %s; it logged: %r" % (
                    site, what, reqs))
            time.sleep(0.1)

    def settled_sogo_logs(self, quiet=0.5, timeout=10):
        """How many requests each sogod has logged, once neither log has
        grown for `quiet` seconds (lines of earlier tests may lag)."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            now = (len(WORLD.sogo_requests("site1")),
                   len(WORLD.sogo_requests("site2")))
            if now == last or time.monotonic() > deadline:
                return now
            last = now
            time.sleep(quiet)

    def assert_foldersync_ok(self, r, doc, who):
        self.assertEqual(r.status, 200, "%s: FolderSync %r" % (who, r))
        self.assertEqual(r.header("Content-Type"), WBXML, who)
        self.assertIsNotNone(doc, "%s: empty FolderSync body" % who)
        self.assertEqual(wb.text_of(doc, "FolderHierarchy:Status"), "1",
                         "%s:\n%s" % (who, wb.to_xml(doc)))
        self.assertTrue(wb.text_of(doc, "FolderHierarchy:SyncKey"),
                        "%s: no new SyncKey:\n%s" % (who, wb.to_xml(doc)))
        fl = folders(doc)
        inbox = [f for f in fl if f[2] == "2"]       # Type 2: default Inbox
        self.assertEqual(len(inbox), 1, "%s: no (or several) Inbox in %r"
                         % (who, fl))
        self.assertEqual(inbox[0][1].lower(), "inbox", fl)
        return inbox[0]

    # ------------------------------------------------------------------
    # 1. own-site user at 14.1

    def test_1a_local_options_passes_sogo_headers(self):
        """OPTIONS of a site1 user at 14.1 reaches site1's SOGo; its
        capability headers come back exactly as SOGo sends them."""
        cl = EasClient("user1@site1.test", "14.1", "EFSOGOOPT1")
        direct = WORLD.sogo_conn("site1")
        try:
            d = cl.options(direct, prefix=SOGO_EAS_PATH)
        finally:
            direct.close()
        self.assertEqual(d.status, 200, "SOGo itself: %r" % d)
        versions = d.header("MS-ASProtocolVersions")
        self.assertTrue(versions and "14.1" in versions.split(","),
                        "SOGo advertises %r" % versions)

        before = len(WORLD.sogo_requests("site1"))
        c = WORLD.ef_conn()
        try:
            r = cl.options(c)
        finally:
            c.close()
        self.assertEqual((r.status, r.reason), (d.status, d.reason))
        self.assertEqual(r.header("MS-ASProtocolVersions"), versions)
        self.assertEqual(r.header("MS-ASProtocolCommands"),
                         d.header("MS-ASProtocolCommands"))
        self.assertEqual(r.header("MS-Server-ActiveSync"),
                         d.header("MS-Server-ActiveSync"))
        # every end-to-end header, in SOGo's order and spelling
        self.assertEqual(end_to_end(r.headers), end_to_end(d.headers))
        self.assertEqual(r.body, b"")
        self.wait_sogo_log("site1", before, lambda line, st: line.startswith(
            "OPTIONS " + SOGO_EAS_PATH + " ") and st == "200", "the OPTIONS")
        e = self.wait_access(lambda e: e.get("method") == "OPTIONS" and
                             e.get("user") == cl.user, "OPTIONS user1")
        self.assertEqual((e["decision"], e["site"], e["status"]),
                         ("proxy", "site1", 200), e)

    def test_1b_local_provision(self):
        """Provision of a site1 user at 14.1 through easfront: 200 WBXML,
        Provision Status 1 (SOGo answers every device, policy or not)."""
        cl = EasClient("user1@site1.test", "14.1", "EFSOGOPROV1")
        c = WORLD.ef_conn()
        try:
            r, doc = cl.provision(c)
        finally:
            c.close()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("Content-Type"), WBXML)
        self.assertEqual(wb.text_of(doc, "Provision:Status"), "1",
                         wb.to_xml(doc))
        e = self.wait_access(lambda e: e.get("device") == "EFSOGOPROV1",
                             "Provision user1")
        self.assertEqual((e["cmd"], e["decision"], e["site"], e["status"]),
                         ("Provision", "proxy", "site1", 200), e)

    def test_1c_local_foldersync(self):
        """FolderSync SyncKey 0 of a site1 user at 14.1 (provisioning first
        if SOGo asks for it): 200 WBXML with the user's folders, an Inbox
        among them."""
        cl = EasClient("user1@site1.test", "14.1", "EFSOGOFS1")
        before = len(WORLD.sogo_requests("site1"))
        c = WORLD.ef_conn()
        try:
            r, doc = cl.folder_sync(c)
        finally:
            c.close()
        self.assert_foldersync_ok(r, doc, "user1 at 14.1")
        self.wait_sogo_log("site1", before, lambda line, st: (
            "Cmd=FolderSync" in line and "User=user1@site1.test" in line and
            st == "200"), "the FolderSync of user1")
        e = self.wait_access(lambda e: e.get("device") == "EFSOGOFS1" and
                             e.get("cmd") == "FolderSync", "FolderSync user1")
        self.assertEqual((e["decision"], e["reason"], e["site"], e["status"]),
                         ("proxy", "local", "site1", 200), e)
        if cl.provisioned:
            sys.stderr.write("\n[note] SOGo asked to provision first: %r\n"
                             % cl.provisioned)

    def test_1d_local_ping_long_poll(self):
        """A Ping with a PING_HEARTBEAT heartbeat on the Inbox: easfront
        keeps the request open past its ordinary upstream_response timeout
        and SOGo's answer, Status 1 (no change) or 2 (changes), arrives
        after the heartbeat."""
        self.assertGreater(PING_HEARTBEAT,
                           sogo_world.EF_TIMEOUTS["upstream_response"])
        cl = EasClient("user1@site1.test", "14.1", "EFSOGOPING1")
        c = WORLD.ef_conn(timeout=PING_HEARTBEAT + 60)
        try:
            r, doc = cl.folder_sync(c)
            inbox_id = self.assert_foldersync_ok(r, doc, "user1 before Ping")[0]
            ping = ("Ping:Ping", [
                ("Ping:HeartbeatInterval", str(PING_HEARTBEAT)),
                ("Ping:Folders", [("Ping:Folder", [
                    ("Ping:Id", inbox_id), ("Ping:Class", "Email")])])])
            # the same keep-alive connection, as a phone does
            r, doc = cl.post(c, "Ping", ping, timeout=PING_HEARTBEAT + 60)
        finally:
            c.close()
        self.assertEqual(r.status, 200, "Ping after %.1f s: %r" % (
            r.elapsed, r))
        self.assertIsNotNone(doc, "empty Ping response")
        status = wb.text_of(doc, "Ping:Status")
        self.assertIn(status, ("1", "2"), wb.to_xml(doc))
        self.assertGreaterEqual(r.elapsed, PING_HEARTBEAT - 1,
                                "Ping answered before its heartbeat")
        self.assertLess(r.elapsed, PING_HEARTBEAT + 30)
        e = self.wait_access(lambda e: e.get("device") == "EFSOGOPING1" and
                             e.get("cmd") == "Ping", "Ping user1")
        self.assertEqual((e["decision"], e["site"], e["status"]),
                         ("proxy", "site1", 200), e)
        self.assertGreaterEqual(e["ms_total"], (PING_HEARTBEAT - 1) * 1000, e)

    def test_1e_wrong_password_401_from_sogo(self):
        """SOGo's own 401 for a bad password comes back as SOGo wrote it
        (status line, WWW-Authenticate spelled "Www-Authenticate")."""
        cl = EasClient("user1@site1.test", "14.1", "EFSOGOBAD1",
                       password="not-the-password")
        tree = ("FolderHierarchy:FolderSync",
                [("FolderHierarchy:SyncKey", "0")])
        direct = WORLD.sogo_conn("site1")
        try:
            d, _ = cl.post(direct, "FolderSync", tree, prefix=SOGO_EAS_PATH)
        finally:
            direct.close()
        self.assertEqual(d.status, 401, d)
        c = WORLD.ef_conn()
        try:
            r, _ = cl.post(c, "FolderSync", tree)
        finally:
            c.close()
        self.assertEqual((r.status, r.reason), (d.status, d.reason))
        self.assertEqual(end_to_end(r.headers), end_to_end(d.headers))
        self.assertEqual(r.body, d.body)

    # ------------------------------------------------------------------
    # 2. other-site user at 12.1: proxied to site2's SOGo

    def test_2_remote_12_1_foldersync_proxied(self):
        """FolderSync of a site2 user at EAS 12.1 through site1's easfront
        is proxied to site2's SOGo and answers 200 with the user's folders;
        site1's SOGo sees nothing of it."""
        cl = EasClient("user2@site2.test", "12.1", "EFSOGOFS2")
        before1 = len(WORLD.sogo_requests("site1"))
        before2 = len(WORLD.sogo_requests("site2"))
        c = WORLD.ef_conn()
        try:
            r, doc = cl.folder_sync(c)
        finally:
            c.close()
        self.assert_foldersync_ok(r, doc, "user2 at 12.1")
        self.wait_sogo_log("site2", before2, lambda line, st: (
            "Cmd=FolderSync" in line and "User=user2@site2.test" in line and
            st == "200"), "the FolderSync of user2")
        reqs1 = WORLD.sogo_requests("site1")[before1:]
        self.assertFalse([x for x in reqs1 if "user2@" in x[0]],
                         "site1's SOGo saw user2: %r" % reqs1)
        e = self.wait_access(lambda e: e.get("device") == "EFSOGOFS2" and
                             e.get("cmd") == "FolderSync", "FolderSync user2")
        self.assertEqual((e["decision"], e["reason"], e["site"], e["status"]),
                         ("proxy", "proxy-legacy-version", "site2", 200), e)

    # ------------------------------------------------------------------
    # 3. other-site user at 14.1: 451 from easfront, no backend contact

    def test_3_remote_14_1_redirected_451(self):
        """FolderSync (and OPTIONS) of a site2 user at EAS 14.1 through
        site1's easfront: 451 with X-MS-Location = site2's external URL,
        written by easfront; neither SOGo sees a request."""
        cl = EasClient("user2@site2.test", "14.1", "EFSOGOREDIR2")
        before1, before2 = self.settled_sogo_logs()
        c = WORLD.ef_conn()
        try:
            r, _ = cl.folder_sync(c)
            o = cl.options(c)
        finally:
            c.close()
        for what, resp in (("FolderSync", r), ("OPTIONS", o)):
            self.assertEqual(resp.status, 451, "%s: %r" % (what, resp))
            self.assertEqual(resp.all("X-MS-Location"), [EXTERNAL["site2"]],
                             "%s: %r" % (what, resp))
            self.assertEqual(resp.header("Content-Length"), "0", what)
            self.assertEqual(resp.header("Cache-Control"), "private", what)
            self.assertIsNone(resp.header("X-MS-ASThrottle"), what)
            self.assertEqual(resp.body, b"", what)
        self.assertEqual(cl.provisioned, [], "a 451 is not a 449")
        time.sleep(2.0)     # anything proxied would be logged by now
        self.assertEqual(WORLD.sogo_requests("site2")[before2:], [],
                         "site2's SOGo was contacted")
        self.assertEqual(WORLD.sogo_requests("site1")[before1:], [],
                         "site1's SOGo was contacted")
        e = self.wait_access(lambda e: e.get("device") == "EFSOGOREDIR2" and
                             e.get("cmd") == "FolderSync", "451 user2")
        self.assertEqual((e["decision"], e["site"], e["status"],
                          e["upstream"]),
                         ("redirect", "site2", 451, "-"), e)
        e = self.wait_access(lambda e: e.get("method") == "OPTIONS" and
                             e.get("user") == cl.user, "OPTIONS 451 user2")
        self.assertEqual((e["decision"], e["site"], e["status"]),
                         ("redirect", "site2", 451), e)


    # ------------------------------------------------------------------
    # 4. SOGo closes every connection after its response

    def test_4_back_to_back_requests_no_502(self):
        """sogod answers HTTP/1.1 with Content-Length and no "Connection:
        close", then closes the connection anyway. Requests that follow
        each other closely (several phones, or one phone's next command)
        must still reach SOGo: easfront must not hand a request to a pooled
        connection SOGo has already closed and answer 502 for it."""
        results = []
        lock = threading.Lock()

        def phone(kind, device, n):
            cl = EasClient("user1@site1.test", "14.1", device)
            fs = ("FolderHierarchy:FolderSync",
                  [("FolderHierarchy:SyncKey", "0")])
            c = WORLD.ef_conn()
            try:
                for _ in range(n):
                    try:
                        if kind == "OPTIONS":
                            r = cl.options(c)
                        else:
                            r, _ = cl.post(c, "FolderSync", fs)
                        got = (kind, r.status, r.reason,
                               r.header("Retry-After"))
                        if r.header("Connection", "").lower() == "close":
                            c.close()
                            c = WORLD.ef_conn()
                    except (OSError, ValueError, AssertionError) as e:
                        got = (kind, "error", repr(e), None)
                        c.close()
                        c = WORLD.ef_conn()
                    with lock:
                        results.append(got)
            finally:
                c.close()

        threads = [threading.Thread(target=phone,
                                    args=("OPTIONS", "EFSOGOB2B%d" % i, 50))
                   for i in range(4)]
        threads += [threading.Thread(target=phone,
                                     args=("FolderSync", "EFSOGOB2BP%d" % i,
                                           12))
                    for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertFalse([t for t in threads if t.is_alive()],
                         "clients still running after 120 s")
        bad = [r for r in results if r[1] != 200]
        failed = [e for e in WORLD.access_log()
                  if e.get("status") in (502, 503, 504)]
        self.assertEqual(len(results), 4 * 50 + 2 * 12)
        if bad:
            self.fail("%d of %d back-to-back requests failed (%d OPTIONS, "
                      "%d FolderSync), e.g. %r; easfront's access log for "
                      "them:\n%s" % (
                          len(bad), len(results),
                          len([b for b in bad if b[0] == "OPTIONS"]),
                          len([b for b in bad if b[0] == "FolderSync"]),
                          bad[0], "\n".join(map(str, failed[:5]))))


if __name__ == "__main__":
    unittest.main(verbosity=2)
