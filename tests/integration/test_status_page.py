"""The operators' view (issue 17): the admin endpoint's status page in
headless Chromium, and the Grafana dashboard against a live /metrics (which
promtool must find clean).

The page case runs easfront with two sites, site2's only CAS answering its
health check 503 (so site2 is down and its fallback, site1, serves), a
guard hold made the way phones make one (a stale Basic password the
stand-in CAS refuses), and some proxied, redirected and refused requests.
Chromium (Debian's /usr/bin/chromium, driven by playwright-core, which
EF_NODE_DIR holds: tests/CMakeLists.txt installs it into the build tree)
must draw the page with no console error and no request to another
origin, show the down CAS as down, show exactly the numbers of the /status
answer it drew, and fit a phone's width; its screenshots go to
EF_ARTIFACTS (default: a temporary directory).

Loopback only; every wait is bounded."""

import json
import os
import re
import subprocess
import urllib.parse

import eftest
from eftest import basic, eas_request, wait_until
from test_ops import OpsDaemon, parse_metrics

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
DASHBOARD = os.path.join(TOP, "deploy", "grafana", "easfront.json")
ALICE = "alice@contoso.test"
REMOTE = "remote@contoso.test"
RIGHT = "right-Passw0rd"
WRONG = "stale-Passw0rd"
GUARD = {"passwords": {"password_failures": 2, "user_failures": 5,
                       "window": 600, "hold": 600},
         "devices": [{"block": {"device_type": "^BadPhone$"}}]}


class FallbackDaemon(OpsDaemon):
    """OpsDaemon whose site2 falls back to site1."""

    def config(self):
        c = super().config()
        c["sites"][1]["fallback"] = "site1"
        return c


def at_path(obj, path):
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


# status.js's WORDS: how a flag reads, by its field's name
FLAG_WORDS = {"up": ("up", "down"), "ok": ("ok", "refused"),
              "fallback_in_use": ("in use", "standby")}


def shown_as(path, value):
    """The text the page shows for value at path (status.js: num, flag)."""
    if isinstance(value, bool):
        words = FLAG_WORDS.get(path.split(".")[-1], ("yes", "no"))
        return words[0] if value else words[1]
    return str(value)


class StatusPage(eftest.EfTestCase):

    def setUp(self):
        super().setUp()
        self.cas1 = self.start_cas(passwords={"alice": RIGHT})
        self.cas2 = self.start_cas(health_status=503)
        self.d = FallbackDaemon(self, [self.cas1.url],
                                site2_urls=[self.cas2.url],
                                sitemap=[("user", REMOTE, "site2")],
                                extra={"guard": GUARD})
        self.d.start()

    def send(self, user, password=None, **kw):
        extra = [("Authorization", basic(user, password))] if password else []
        raw = eas_request("FolderSync", user=user, auth=password is None,
                          extra=extra, **kw).raw
        return self.d.roundtrip(raw).status

    def make_traffic(self):
        # site2 down: its users are proxied to site1 (the fallback)
        self.assertTrue(wait_until(
            lambda: not self.d.status()["sites"][1]["up"], 15),
            "site2 never went down: %r" % self.d.status()["sites"][1])
        for _ in range(2):
            self.assertEqual(self.send(ALICE, WRONG), 401)
        self.assertEqual(self.send(ALICE, WRONG), 401)   # held: easfront's
        self.assertEqual(self.send(ALICE, RIGHT), 200)
        self.assertIn(self.send(REMOTE), (200, 401))      # via the fallback
        self.assertEqual(self.send(ALICE, RIGHT, device_type="BadPhone"), 403)

    def run_chromium(self, outdir):
        node_dir = os.environ.get("EF_NODE_DIR")
        self.assertTrue(node_dir and os.path.isdir(os.path.join(
            node_dir, "node_modules", "playwright-core")),
            "EF_NODE_DIR must hold playwright-core (ctest installs it)")
        eftest.ensure_tool("chromium")
        url = "http://127.0.0.1:%d/" % self.d.admin_port
        p = subprocess.run(["node", os.path.join(HERE, "page_check.js"), url,
                            outdir], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ))
        self.assertEqual(p.returncode, 0, "page_check.js failed:\n%s\n%s" % (
            p.stdout[-2000:], p.stderr[-4000:]))
        return json.loads(p.stdout)

    def test_page_in_chromium(self):
        self.make_traffic()
        st = self.d.status()
        self.assertGreaterEqual(st["guard"]["held_passwords"], 1)
        self.assertTrue(st["sites"][1]["fallback_in_use"])
        outdir = os.environ.get("EF_ARTIFACTS") or eftest.mktemp_dir(
            "eftest-page-")
        os.makedirs(outdir, exist_ok=True)
        r = self.run_chromium(outdir)

        self.assertEqual(r["console"], [], "console errors or warnings")
        self.assertEqual(r["pageerrors"], [])
        origin = "http://127.0.0.1:%d" % self.d.admin_port
        foreign = [u for u in r["requests"] if not u.startswith(origin + "/")
                   and not u.startswith("data:")]
        self.assertEqual(foreign, [], "requests to another origin")
        for directive in ("default-src 'none'", "connect-src 'self'",
                          "script-src 'sha256-", "style-src 'sha256-"):
            self.assertIn(directive, r["csp"])

        shown = r["shown"]
        self.assertGreaterEqual(shown["seq"], 2, "the page never refreshed")
        drawn = json.loads(r["statuses"][shown["seq"] - 1])
        self.assertGreater(len(shown["fields"]), 20)
        for f in shown["fields"]:
            self.assertEqual(f["text"], shown_as(f["path"],
                                                 at_path(drawn, f["path"])),
                             "the page shows %s differently" % f["path"])
        for s in shown["sums"]:
            self.assertEqual(int(s["text"]), sum(at_path(drawn, s["path"])))
        self.assertEqual(len(shown["sums"]), 4)
        paths = {f["path"]: f["text"] for f in shown["fields"]}
        down = "sites.1.servers.0.members.0.up"
        self.assertEqual(paths.get(down), "down", "the down CAS not shown "
                         "as down: %r" % paths)
        self.assertEqual(paths.get("sites.0.servers.0.members.0.up"), "up")
        self.assertEqual(paths.get("sites.1.fallback_in_use"), "in use")
        self.assertNotEqual(paths.get("guard.held_passwords"), "0")
        # the blocked device's rule leads the top blocked rules
        with open(self.d.conf_path) as f:
            block_line = [i + 1 for i, ln in enumerate(f)
                          if ln.strip() == "- block:"][0]
        self.assertEqual(drawn["guard"]["top_rules"][0]["line"], block_line)
        self.assertGreaterEqual(drawn["guard"]["top_rules"][0]["blocked"], 1)
        self.assertNotEqual(paths.get("guard.top_rules.0.blocked"), None)
        self.assertTrue(any(int(s["text"]) > 0 for s in shown["sums"]),
                        "no decision in the last minute's charts")
        self.assertLessEqual(r["phone_width"], 390,
                             "the page is wider than a phone")
        for name in ("status-1280x800.png", "status-390x844.png"):
            self.assertGreater(os.path.getsize(os.path.join(outdir, name)),
                               1000)


# --------------------------------------------------------------------------
# the dashboard names only metrics easfront exports

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left",
                "group_right", "and", "or", "unless", "bool", "offset",
                "inf", "nan"}


def dashboard_exprs(doc):
    """Every PromQL text of the dashboard: panel targets (rows' nested
    panels too) and the queries of its query variables."""
    exprs = []

    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("expr"), str):
                exprs.append(x["expr"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(doc.get("panels", []))
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            exprs.append(q.get("query", "") if isinstance(q, dict) else q)
    return exprs


def dashboard_metrics(doc):
    """Every PromQL text of the dashboard, and the metric names in them."""
    exprs = dashboard_exprs(doc)
    names = set()
    for e in exprs:
        e = re.sub(r"label_values\(\s*([^,()]+),\s*\w+\s*\)", r"\1", e)
        e = re.sub(r'"(\\.|[^"\\])*"', "", e)           # strings
        e = re.sub(r"\{[^}]*\}", "", e)                  # matchers
        e = re.sub(r"\[[^\]]*\]", "", e)                 # ranges
        e = re.sub(r"\$\{?\w+\}?", "1", e)               # Grafana variables
        e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)"
                   r"\s*\([^)]*\)", "", e)               # label lists
        for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
            word = m.group(0)
            if word.lower() in PROMQL_WORDS or \
                    e[m.end():].lstrip().startswith("("):
                continue
            names.add(word)
    return exprs, names


class DirectoryDaemon(FallbackDaemon):
    """FallbackDaemon with a directory nobody answers: its metrics are
    exported all the same, and they are what the dashboard shows of it."""

    def config(self):
        c = super().config()
        c["sitemap"]["ldap"] = {
            "uris": ["ldap://127.0.0.1:%d" % eftest.closed_port()],
            "base": "DC=contoso,DC=test"}
        return c


class Dashboard(eftest.EfTestCase):

    def test_dashboard_names_only_exported_metrics(self):
        cas1 = self.start_cas()
        cas2 = self.start_cas()
        d = DirectoryDaemon(self, [cas1.url], site2_urls=[cas2.url],
                            sitemap=[], extra={"guard": GUARD})
        d.start()
        text = d.metrics_text()
        lint = subprocess.run([eftest.ensure_tool("promtool", "prometheus"),
                               "check", "metrics"], input=text,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(lint.returncode, 0, "promtool check metrics:\n%s%s"
                         % (lint.stdout, lint.stderr))
        exported = set()
        for line in text.splitlines():
            m = re.match(r"# TYPE (\S+) (\S+)", line)
            if m:
                exported.add(m.group(1))
                if m.group(2) == "histogram":
                    exported.update(m.group(1) + s for s in
                                    ("_bucket", "_sum", "_count"))
        with open(DASHBOARD) as f:
            doc = json.load(f)
        exprs, names = dashboard_metrics(doc)
        self.assertGreater(len(exprs), 10)
        self.assertEqual(sorted(n for n in names if n not in exported), [],
                         "the dashboard names metrics easfront does not "
                         "export")
        self.assertTrue(all(n.startswith("easfront_") for n in names), names)
