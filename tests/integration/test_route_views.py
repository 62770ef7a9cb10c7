"""The three views of one routing decision (issue 13, item 5): a request on
the data path, the admin's GET /route and `easfront route` build their input
in one place (src/proxy/routing.c), so for the same user, version and host
they must agree -- with live site health and the directory's answer.

The world: two sites (test_routing.World: site1 this front end's own, site2
remote with the external URL EXT2, falling back to site1), fast health
checks, the site map and slapd of test_directory (userNNNN's home database
comes from the directory; PINNED_DB is placed by a map line), default_site
site2, and the admin endpoint. For users placed by the map, by the
directory (also in its NetBIOS form), by a domain line and by nothing, at
EAS 12.1, 14.1 and no version, with no host, the front end's name and
site2's own name:
- `easfront route -c CONF USER --version V --host H` prints exactly what
  GET /route answers (it asks the running easfront);
- the request itself gets what that text says: 451 with X-MS-Location,
  proxied to the named site's CAS, or easfront's own 503, and its
  access-log line carries the same decision, reason and site.
This holds with every site up, with site2's CAS dead (marked down by the
health checks: its users go to site1), and in a world where site2 has no
fallback (503). With no easfront answering, `easfront route` says that it
shows the offline view, and decides with every site up.
"""

import os
import re
import urllib.parse

import eftest
import test_directory as td
import test_routing as tr

VERSIONS = ("12.1", "14.1", None)
HOSTS = (None, eftest.SNI, tr.HOST2)
USERS = (
    td.PINNED_DB,                 # map line: DB02, site2
    td.upn(1),                    # directory: DB02, site2
    "CONTOSO\\user0006",          # directory, NetBIOS form: DB02, site2
    td.upn(5),                    # directory: DB01, site1
    "someone@fabrikam.test",      # domain line: site2
    "ghost@contoso.test",         # nobody knows: default_site site2
)
SITE2_USERS = [u for u in USERS if u != td.upn(5)]
DECISION = re.compile(r"^decision:\s+(?:PROXY to the CAS pool of (?P<site>\S+)"
                      r"|REDIRECT 451 X-MS-Location: (?P<url>\S+)"
                      r"|REJECT (?P<status>\d+))$", re.M)
REASON = re.compile(r"^reason:\s+([a-z-]+): ", re.M)
OFFLINE = re.compile(r"^offline view: ", re.M)
SITE2_DOWN = re.compile(r"^health:\s+every CAS of site2 is down", re.M)


class ViewsWorld(td.DirWorld):
    """test_directory's DirWorld cut down to two sites: site2 falls back to
    site1 (unless fallback is False), every site checked fast,
    default_site site2."""

    def __init__(self, tc, slapd, fallback=True):
        super().__init__(tc, slapd, default_site="site2", site3=False,
                         health=eftest.FAST_HEALTH,
                         site_opts={"site2": {"fallback": "site1"}}
                         if fallback else None)


class RouteViews(tr.RoutingCase):

    def admin_route(self, w, user, version, host):
        q = {"user": user}
        if version:
            q["version"] = version
        if host:
            q["host"] = host
        code, text = w.admin("GET", "/route?" + urllib.parse.urlencode(
            q, quote_via=urllib.parse.quote))
        self.assertEqual(code, 200, text)
        return text

    def cli_route(self, conf, user, version=None, host=None):
        cmd = [eftest.easfront_bin(), "route", "-c", conf, user]
        if version:
            cmd += ["--version", version]
        if host:
            cmd += ["--host", host]
        return eftest.run(cmd, timeout=30).stdout

    def decision(self, text):
        """(site, url, status, reason) of an explanation."""
        m, r = DECISION.search(text), REASON.search(text)
        self.assertTrue(m and r, "no decision or reason in:\n" + text)
        status = int(m.group("status")) if m.group("status") else None
        return m.group("site"), m.group("url"), status, r.group(1)

    def assert_request_agrees(self, w, user, version, host, text):
        """The request of user at version, by host (the front end's name
        when None), gets what text says, on the wire and in the log."""
        site, url, status, reason = self.decision(text)
        r = tr.EasReq("Sync", user, version, host=host or eftest.SNI)
        resp = w.send(r)
        if url is not None:
            self.assert_redirected(w, r.req, resp, url)
            rec = self.assert_log(w, r.device, decision="redirect",
                                  reason=reason)
            ext = {s["name"]: s.get("external_url")
                   for s in w.d.extra["sites"]}
            self.assertEqual(ext.get(rec["site"]), url, rec)
        elif status is not None:
            self.assert_own_error(resp, (status,))
            self.assertEqual(w.where(r.mark), [])
            self.assert_log(w, r.device, decision="reject", reason=reason,
                            site="-", status=status)
        else:
            self.assert_proxied(w, r.req, resp, site)
            self.assert_log(w, r.device, decision="proxy", reason=reason,
                            site=site)

    def views_agree(self, w, users=USERS, versions=VERSIONS, hosts=HOSTS):
        """Every view of every (user, version, host) agrees; returns
        {(user, version, host): the admin's text}."""
        texts = {}
        for user in users:
            for version in versions:
                for host in hosts:
                    with self.subTest(user=user, version=version,
                                      host=host):
                        text = self.admin_route(w, user, version, host)
                        cli = self.cli_route(w.d.conf_path, user, version,
                                             host)
                        self.assertEqual(cli, text)
                        self.assertNotRegex(cli, OFFLINE)
                        self.assert_request_agrees(w, user, version, host,
                                                   text)
                        texts[user, version, host] = text
        return texts

    def kill_site2(self, w):
        """Stops site2's CAS and waits until GET /route shows it down."""
        w.cas["site2"].stop()
        down = eftest.wait_until(lambda: SITE2_DOWN.search(
            self.admin_route(w, td.upn(1), "14.1", None)), 20, 0.2)
        self.assertTrue(down, "site2 never shown down by GET /route")

    def test_views_agree(self):
        s = td.Slapd(self)
        w = ViewsWorld(self, s)

        # every site up: 451s, proxies, the directory's placements
        texts = self.views_agree(w)
        self.assertRegex(texts[td.upn(1), "14.1", None], re.compile(
            r"^map:\s+directory: user -> database DB02; .*site site2$",
            re.M))
        self.assertIn("X-MS-Location: " + tr.EXT2,
                      texts[td.upn(1), "14.1", None])
        self.assertRegex(texts[td.upn(1), "14.1", tr.HOST2], re.compile(
            r"^reason:\s+proxy-loop-guard: ", re.M))
        self.assertRegex(texts["ghost@contoso.test", "14.1", None],
                         re.compile(r"^directory: no such user$", re.M))

        # the directory gone, a user nobody cached: no view makes a 451 of
        # the guess
        s.stop()
        texts = self.views_agree(w, users=(td.upn(11),), versions=("14.1",),
                                 hosts=(None,))
        self.assertRegex(texts[td.upn(11), "14.1", None], re.compile(
            r"^directory: unreachable and the user is not cached", re.M))
        self.assertRegex(texts[td.upn(11), "14.1", None], re.compile(
            r"^reason:\s+directory-down: ", re.M))
        s.start()

        # site2's CAS dies; once the health checks mark it down, its users
        # go to site1, proxied, in every view
        self.kill_site2(w)
        texts = self.views_agree(w)
        for user in SITE2_USERS:
            self.assertRegex(texts[user, "14.1", None], re.compile(
                r"^decision:\s+PROXY to the CAS pool of site1$", re.M))
            self.assertRegex(texts[user, "14.1", None], re.compile(
                r"^reason:\s+fallback: ", re.M))

        # no easfront answering: the offline view says so, and knows no
        # health (site2 up there: a 451)
        w.d.stop()
        out = self.cli_route(w.d.conf_path, td.upn(1), "14.1")
        self.assertRegex(out, re.compile(
            r"\Aoffline view: no easfront answers at 127\.0\.0\.1:%d "
            r"\(.*\): site health is not known$" % w.admin_port, re.M))
        self.assertRegex(out, re.compile(
            r"^map:\s+directory: user -> database DB02; ", re.M))
        self.assertRegex(out, re.compile(
            r"^decision:\s+REDIRECT 451 X-MS-Location: %s$"
            % re.escape(tr.EXT2), re.M))
        self.assertNotRegex(out, SITE2_DOWN)
        # and a config without admin.listen
        c = w.d.config()
        del c["admin"]
        path = os.path.join(w.d.dir, "noadmin.yaml")
        with open(path, "w") as f:
            f.write(eftest.yaml_dump(c))
        out = self.cli_route(path, td.upn(5), "14.1")
        self.assertRegex(out, re.compile(
            r"\Aoffline view: no admin\.listen: site health is not known$",
            re.M))
        self.assertRegex(out, re.compile(
            r"^decision:\s+PROXY to the CAS pool of site1$", re.M))

    def test_views_agree_without_fallback(self):
        """site2 down and no fallback: its users get easfront's 503 in
        every view; site1's are served."""
        s = td.Slapd(self)
        w = ViewsWorld(self, s, fallback=False)
        self.kill_site2(w)
        texts = self.views_agree(w, hosts=(None, tr.HOST2))
        for user in SITE2_USERS:
            self.assertRegex(texts[user, "14.1", None], re.compile(
                r"^decision:\s+REJECT 503$", re.M))
            self.assertRegex(texts[user, "14.1", None], re.compile(
                r"^reason:\s+no-site-available: ", re.M))
        self.assertRegex(texts[td.upn(5), "14.1", None], re.compile(
            r"^decision:\s+PROXY to the CAS pool of site1$", re.M))


if __name__ == "__main__":
    import unittest
    unittest.main()
