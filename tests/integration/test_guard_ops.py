"""The operators' view of the guard (DESIGN.md "Edge protection", issue 14
item 4): the admin endpoint's GET /guard and POST /guard/clear, the guard's
metrics, the guard's word in `easfront route` (running and offline) and
`easfront guard list|clear`.

Holds are made the way phones make them: Basic requests with a wrong
password, which the stand-in CAS refuses (its `passwords`), until the
shield answers them itself. Every case starts its own daemon and stand-in
CAS on 127.0.0.1 and bounds its own waits."""

import concurrent.futures
import json
import os
import re
import urllib.parse

import eftest
from eftest import basic, eas_request, wait_until
from test_ops import OpsDaemon, mval, parse_metrics

ALICE = "alice@contoso.test"
BOB = "bob@contoso.test"
RIGHT = "right-Passw0rd"
WRONG = "stale-Passw0rd"
HOLD = 600
GUARD = {
    "devices": [{"block": {"device_type": "^BadPhone$"}},
                {"allow": {"user_agent": "^GoodAgent/"}},
                {"block": {"user_agent": "^Good"}}],
    "passwords": {"password_failures": 2, "user_failures": 3,
                  "window": 600, "hold": HOLD},
    "max_entries": 5000,
}
REASONS = ("device-blocked", "stale-password", "password-guessing")
GUARD_GAUGES = ("easfront_guard_held_passwords", "easfront_guard_held_users",
                "easfront_guard_entries", "easfront_guard_max_entries",
                "easfront_guard_evictions_total", "easfront_guard_rules")
LIST_LINE = re.compile(r"^(\S+)  held passwords: (-|\d+ \(\d+ s left\))  "
                       r"guessing hold: (-|\d+ s left)$", re.M)


class GuardCase(eftest.EfTestCase):

    def daemon(self, guard=GUARD):
        """A started daemon with the admin endpoint and guard (None: no
        guard section) before a CAS that knows alice's and bob's
        passwords."""
        cas = self.start_cas(passwords={"alice": RIGHT, "bob": RIGHT})
        extra = {"guard": guard} if guard is not None else {}
        d = OpsDaemon(self, [cas.url], extra=extra)
        d.cas = cas
        return d.start()

    def offline_config(self, guard=GUARD, admin_port=None):
        """The path of a config no daemon runs with: no admin endpoint, or
        one on admin_port where nothing listens."""
        d = OpsDaemon(self, ["http://127.0.0.1:%d" % eftest.closed_port()],
                      admin=False, extra={"guard": guard} if guard else {})
        if admin_port:
            d.extra["admin"] = {"listen": "127.0.0.1:%d" % admin_port}
        d.write_config()
        return d.conf_path

    def send(self, d, user, password, device="EFGUARD0001", **kw):
        """The status of a FolderSync with Basic user:password."""
        raw = eas_request("FolderSync", user=user, auth=False,
                          device_id=device,
                          extra=[("Authorization", basic(user, password))],
                          **kw).raw
        return d.roundtrip(raw).status

    def guard(self, d, query=""):
        code, text = d.admin("GET", "/guard" + query)
        self.assertEqual(code, 200, text)
        self.assert_no_secrets(text)
        return json.loads(text)

    def assert_no_secrets(self, text):
        for secret in (RIGHT, WRONG, "guess-"):
            self.assertNotIn(secret, text, "a password in the output")
        for user, pw in ((ALICE, WRONG), (BOB, "guess-1"), (ALICE, RIGHT)):
            self.assertNotIn(basic(user, pw).split()[1], text,
                             "an Authorization value in the output")

    def hold_alice(self, d):
        """alice's stale password is held (password_failures refusals)."""
        for _ in range(GUARD["passwords"]["password_failures"]):
            self.assertEqual(self.send(d, ALICE, WRONG), 401)
        self.assertTrue(wait_until(
            lambda: self.guard(d, "?user=" + ALICE)["holds"], 5),
            "no hold for alice after %d refusals" %
            GUARD["passwords"]["password_failures"])

    def hold_bob(self, d):
        """bob is in a guessing hold (user_failures different passwords)."""
        for i in range(GUARD["passwords"]["user_failures"]):
            self.assertEqual(self.send(d, BOB, "guess-%d" % i,
                                       device="EFGUARD%04d" % i), 401)
        self.assertTrue(wait_until(
            lambda: self.guard(d, "?user=" + BOB)["holds"], 5),
            "no guessing hold for bob")

    def rule(self, conf_path, n):
        """The guard line `route` prints for the n-th entry of
        guard.devices in conf_path."""
        with open(conf_path) as f:
            lines = [i + 1 for i, ln in enumerate(f)
                     if re.match(r"\s*- (block|allow):", ln)]
        if "block" in GUARD["devices"][n]:
            return ("guard:    device rule at %s:%d (block): 403 "
                    "device-blocked" % (conf_path, lines[n]))
        return ("guard:    device rule at %s:%d (allow): passes the device "
                "rules" % (conf_path, lines[n]))

    def cli(self, *args, check=True):
        return eftest.run([eftest.easfront_bin()] + list(args), timeout=30,
                          check=check)

    def guard_lines(self, text):
        return [ln for ln in text.splitlines() if ln.startswith("guard:")]


# --------------------------------------------------------------------------
# the admin endpoint

class AdminGuard(GuardCase):

    def test_guard_json_with_holds_and_clear(self):
        d = self.daemon()
        g = self.guard(d)
        self.assertEqual(
            {k: g[k] for k in g if k != "entries"},
            {"passwords": True, "rules": 3, "max_entries": 5000,
             "held_passwords": 0, "held_users": 0, "evictions": 0,
             "turned_away": 0, "throttle": False, "throttled_keys": 0,
             "holds": [], "more": 0})
        self.assertEqual(self.send(d, ALICE, RIGHT), 200)

        self.hold_alice(d)
        # the held password is answered here now; alice's right one is not
        seen = d.cas.attempts(ALICE, password=WRONG)
        self.assertEqual(self.send(d, ALICE, WRONG), 401)
        self.assertEqual(d.cas.attempts(ALICE, password=WRONG), seen,
                         "a held password reached the CAS")
        self.assertEqual(self.send(d, ALICE, RIGHT), 200)
        self.hold_bob(d)

        g = self.guard(d)
        self.assertEqual((g["held_passwords"], g["held_users"], g["more"]),
                         (1, 1, 0))
        self.assertGreaterEqual(g["entries"], 2)
        self.assertEqual([h["user"] for h in g["holds"]], [ALICE, BOB])
        a, b = g["holds"]
        self.assertEqual((a["held_passwords"], a["user_left"]), (1, 0))
        self.assertTrue(0 < a["password_left"] <= HOLD, a)
        self.assertEqual((b["held_passwords"], b["password_left"]), (0, 0))
        self.assertTrue(0 < b["user_left"] <= HOLD, b)
        # one user, any spelling routing accepts; unknown users: none
        self.assertEqual(self.guard(d, "?user=ALICE%40Contoso.test")["holds"],
                         [a])
        self.assertEqual(self.guard(d, "?user=carol%40contoso.test")["holds"],
                         [])
        self.assertEqual(d.admin("GET", "/guard?user=")[0], 400)

        # methods
        self.assertEqual(d.admin("POST", "/guard")[0], 405)
        self.assertEqual(d.admin("GET", "/guard/clear")[0], 405)

        # clearing one user, then everyone
        code, text = d.admin("POST", "/guard/clear?user=" + ALICE)
        self.assertEqual((code, json.loads(text)),
                         (200, {"cleared": 1, "refilled": 0}))
        self.assertEqual([h["user"] for h in self.guard(d)["holds"]], [BOB])
        self.assertEqual(self.send(d, ALICE, WRONG), 401)   # the CAS's again
        code, text = d.admin("POST", "/guard/clear")
        self.assertEqual(code, 200)
        self.assertGreaterEqual(json.loads(text)["cleared"], 1)
        g = self.guard(d)
        self.assertEqual((g["holds"], g["held_passwords"], g["held_users"]),
                         ([], 0, 0))
        self.assertEqual(self.send(d, BOB, RIGHT), 200)
        self.assert_no_secrets(d.stderr_text())
        self.assert_no_secrets("\n".join(d.access_log_lines()))

    def refuse_each(self, d, users):
        """One refused Basic request per user, on one connection; the
        statuses."""
        c = d.connect()
        try:
            out = []
            for user in users:
                c.send(eas_request("FolderSync", user=user, auth=False,
                                   extra=[("Authorization",
                                           basic(user, WRONG))]).raw)
                out.append(c.read_response().status)
            return out
        finally:
            c.close()

    def test_list_is_capped(self):
        """More held users than one answer lists: 1000 of them, and how
        many more."""
        guard = dict(GUARD, passwords=dict(GUARD["passwords"],
                                           password_failures=1))
        d = self.daemon(guard=guard)
        users = ["u%04d@contoso.test" % i for i in range(1003)]
        # side by side: each request waits for the CAS on loopback
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = pool.map(lambda k: self.refuse_each(d, users[k::16]),
                                range(16), timeout=120)
            self.assertEqual(set(s for part in statuses for s in part),
                             {401})
        g = self.guard(d)
        self.assertEqual((len(g["holds"]), g["more"], g["held_passwords"]),
                         (1000, 3, 1003))
        shown = [h["user"] for h in g["holds"]]
        self.assertEqual(shown, sorted(set(shown)))
        self.assertTrue(set(shown) <= set(users))
        out = self.cli("guard", "-c", d.conf_path, "list").stdout
        self.assertEqual(len(LIST_LINE.findall(out)), 1000)
        self.assertIn("\n... and 3 more\nusers with a hold: 1003; "
                      "passwords held: 1003;", out)

    def test_guard_json_passwords_off(self):
        d = self.daemon(guard={"devices": GUARD["devices"]})
        self.assertEqual(self.send(d, ALICE, WRONG), 401)
        self.assertEqual(self.send(d, ALICE, WRONG), 401)
        self.assertEqual(self.send(d, ALICE, WRONG), 401)
        g = self.guard(d)
        self.assertEqual(
            (g["passwords"], g["rules"], g["entries"], g["held_passwords"],
             g["held_users"], g["holds"], g["more"]),
            (False, 3, 0, 0, 0, [], 0))
        self.assertEqual(self.guard(d, "?user=" + ALICE)["holds"], [])
        code, text = d.admin("POST", "/guard/clear?user=" + ALICE)
        self.assertEqual((code, json.loads(text)),
                         (200, {"cleared": 0, "refilled": 0}))

    def assert_guard_metrics(self, text, promtool, guard):
        """text passes promtool and has every guard family: the reasons
        always, the figures of a daemon with guard."""
        p = eftest.run([promtool, "check", "metrics"], input=text,
                       check=False)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""),
                         "promtool check metrics:\n" + text[:3000])
        self.assertIn("# TYPE easfront_guard_answers_total counter", text)
        m = parse_metrics(text)
        for name in GUARD_GAUGES:
            self.assertIn((name, ()), m, name)
        self.assertEqual(
            [m.get(("easfront_guard_answers_total", (("reason", r),)))
             for r in REASONS],
            [1, 1, 0] if guard else [0, 0, 0])
        want = {
            "easfront_guard_held_passwords": 1 if guard else 0,
            "easfront_guard_held_users": 0,
            "easfront_guard_max_entries": 5000 if guard else 0,
            "easfront_guard_rules": 3 if guard else 0,
        }
        self.assertEqual({k: mval(m, k) for k in want}, want)
        if guard:
            self.assertGreaterEqual(mval(m, "easfront_guard_entries"), 1)

    def test_metrics_pass_promtool(self):
        promtool = eftest.ensure_tool("promtool", "prometheus")
        for guard in (GUARD, None):
            with self.subTest(guard=guard is not None):
                d = self.daemon(guard=guard)
                if guard:
                    # one stale-password and one device-blocked answer
                    self.hold_alice(d)
                    self.assertEqual(self.send(d, ALICE, WRONG), 401)
                    self.assertEqual(self.send(
                        d, ALICE, RIGHT, device_type="BadPhone"), 403)
                self.assert_guard_metrics(d.metrics_text(), promtool, guard)


# --------------------------------------------------------------------------
# the command line

class RouteGuard(GuardCase):

    def route(self, conf, *args):
        return self.cli("route", "-c", conf, ALICE, "--version", "14.1",
                        *args).stdout

    def test_route_running_and_offline(self):
        d = self.daemon()
        conf = d.conf_path
        none = "guard:    no device rule matches: default allow"
        cases = (
            (("--device-type", "badphone", "--device-id", "X1"),
             self.rule(conf, 0)),
            (("--user-agent", "GoodAgent/2.0", "--cmd", "Sync"),
             self.rule(conf, 1)),
            (("--user-agent", "GoodOther/1"), self.rule(conf, 2)),
            ((), none),
        )
        for args, want in cases:
            text = self.route(conf, *args)
            self.assertNotIn("offline view", text)
            self.assertEqual(self.guard_lines(text), [
                want, "guard:    password shield: no hold for %s" % ALICE,
                "guard:    throttle off"], text)
            # the admin's /route says the same words
            q = {"user": ALICE, "version": "14.1"}
            q.update({a[2:].replace("-", "_"): v
                      for a, v in zip(args[::2], args[1::2])})
            code, body = d.admin("GET", "/route?" + urllib.parse.urlencode(q))
            self.assertEqual((code, body), (200, text))

        self.hold_alice(d)
        self.hold_bob(d)
        lines = self.guard_lines(self.route(conf))
        self.assertEqual(lines[0], none)
        self.assertRegex(lines[1], r"^guard:    password shield: 1 password "
                         r"of %s held for \d+ s more \(stale-password: those "
                         r"passwords get 401 here\)$" % re.escape(ALICE))
        self.assertEqual(lines[2], "guard:    throttle off")
        self.assertEqual(len(lines), 3, lines)
        text = self.cli("route", "-c", conf, BOB).stdout
        self.assertRegex(text, r"(?m)^guard:    %s is in a guessing hold for "
                         r"\d+ s more: passwords not known good get 401 "
                         r"here$" % re.escape(BOB))
        self.assert_no_secrets(text)

        # offline: no admin.listen; then no guard at all
        off = self.offline_config()
        text = self.route(off, "--device-type", "BadPhone")
        self.assertTrue(text.startswith("offline view: no admin.listen"), text)
        self.assertEqual(self.guard_lines(text), [
            self.rule(off, 0),
            "guard:    password shield: holds are known only to a running "
            "easfront", "guard:    throttle off"])
        text = self.route(self.offline_config(guard=None), "--cmd", "Ping")
        self.assertEqual(self.guard_lines(text), [
            "guard:    no device rules", "guard:    password shield off",
            "guard:    throttle off"])


class GuardCommand(GuardCase):

    def list(self, conf, *user):
        out = self.cli("guard", "-c", conf, "list", *user).stdout
        self.assert_no_secrets(out)
        return out

    def test_list_and_clear(self):
        d = self.daemon()
        conf = d.conf_path
        out = self.list(conf)
        self.assertEqual(LIST_LINE.findall(out), [])
        self.assertIn("users with a hold: 0; passwords held: 0; users in a "
                      "guessing hold: 0; table: ", out)
        self.assertIn("device rules: 3", out)

        self.hold_alice(d)
        self.hold_bob(d)
        out = self.list(conf)
        rows = LIST_LINE.findall(out)
        self.assertEqual([r[0] for r in rows], [ALICE, BOB], out)
        self.assertRegex(rows[0][1], r"^1 \(\d+ s left\)$")
        self.assertEqual(rows[0][2], "-")
        self.assertEqual(rows[1][1], "-")
        self.assertRegex(rows[1][2], r"^\d+ s left$")
        self.assertIn("users with a hold: 2; passwords held: 1; users in a "
                      "guessing hold: 1; table: ", out)
        self.assertEqual([r[0] for r in LIST_LINE.findall(
            self.list(conf, "ALICE@contoso.test"))], [ALICE])

        self.assertEqual(self.cli("guard", "-c", conf, "clear",
                                  ALICE).stdout, "cleared 1\n")
        self.assertEqual([r[0] for r in LIST_LINE.findall(self.list(conf))],
                         [BOB])
        self.assertEqual(self.cli("guard", "-c", conf, "clear",
                                  ALICE).stdout, "cleared 0\n")
        self.assertEqual(self.cli("guard", "-c", conf, "clear").stdout,
                         "cleared 1\n")
        self.assertEqual(LIST_LINE.findall(self.list(conf)), [])
        self.assertEqual(self.send(d, BOB, RIGHT), 200)

    def test_usage_errors_exit_2(self):
        conf = self.offline_config()
        for args in (["guard", "-c", conf],
                     ["guard", "-c", conf, "show"],
                     ["guard", "-c", conf, "list", ALICE, BOB],
                     ["guard", "list"],
                     ["guard", "-c", conf, "list", "--bogus"],
                     ["guard", "-c", conf, "list", "--device-id", "P1"],
                     ["guard", "-c", conf, "clear", "--host", "h"],
                     ["route", "-c", conf, ALICE, "--device-type"],
                     ["route", "-c", conf, ALICE, BOB],
                     ["route", "-c", conf],
                     ["check", "-c", conf, "extra"]):
            with self.subTest(args=args):
                p = self.cli(*args, check=False)
                self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
                self.assertIn("easfront guard", p.stderr)
                self.assertIn("--device-type", p.stderr)

    def test_no_admin_exits_1(self):
        conf = self.offline_config()
        for op in (["list"], ["clear"], ["clear", ALICE]):
            p = self.cli("guard", "-c", conf, *op, check=False)
            self.assertEqual((p.returncode, p.stdout), (1, ""), p.stderr)
            self.assertIn("the guard's tables live in the running easfront;",
                          p.stderr)
            self.assertIn("admin.listen", p.stderr)
        port = eftest.closed_port()
        conf = self.offline_config(admin_port=port)
        p = self.cli("guard", "-c", conf, "list", check=False)
        self.assertEqual((p.returncode, p.stdout), (1, ""), p.stderr)
        self.assertRegex(p.stderr, r"^the guard's tables live in the running "
                         r"easfront; none answers at 127\.0\.0\.1:%d: \S"
                         % port)
        bad = os.path.join(os.path.dirname(conf), "missing.yaml")
        p = self.cli("guard", "-c", bad, "list", check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
