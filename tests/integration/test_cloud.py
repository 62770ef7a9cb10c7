"""Mailboxes in Exchange Online (issue 16): a cloud site (`cloud: true`, an
external URL, no CAS of ours) answers its users' clients itself -- a 451 to
the cloud when the client follows a 451 and is at or above the site's
min_version, a 403 (reason cloud-min-version) otherwise -- and never lets a
request reach a CAS.

Users get there two ways, each tested end to end:
- the directory (test_directory's slapd of ldap/run.sh, whose schema holds
  msExchRecipientTypeDetails, msExchRemoteRecipientType and targetAddress):
  moved@ (no homeMDB, RemoteUserMailbox, migrated), tenant@ (only a
  targetAddress in the tenant domain), sharedmoved@ (RemoteSharedMailbox),
  onprem@ (a homeMDB on DB01 beside cloud-looking attributes: on premises)
  and elsewhere@ (a targetAddress outside the tenant: unknown user);
- a user line of the TSV site map naming the cloud site.

Each case checks, per EAS version and query form (plain and base64): the
status, X-MS-Location, that no stand-in CAS saw the request, and the access
log's decision and reason. Autodiscover (answer and proxy modes), a reload
moving a user to the cloud site and back, the metrics, the admin /route's
explanation and `easfront check`'s refusals of bad cloud sites are here too.
"""

import os
import re
import subprocess
import tempfile
import unittest

import eftest
import test_directory as td
import test_routing as tr

EXO = "https://outlook.office365.com/Microsoft-Server-ActiveSync"
EXO2 = "https://eas.cloud2.test/Microsoft-Server-ActiveSync"
TENANT = "contoso.mail.onmicrosoft.com"
VERSIONS = ["12.1", "14.1", "16.0", "16.1"]
FORMS = ["plain", "base64"]
CLOUD_USERS = ["moved@contoso.test", "tenant@contoso.test",
               "sharedmoved@contoso.test"]


def cloud_site(name="exo", url=EXO, min_version="16.1"):
    s = {"name": name, "cloud": True, "external_url": url}
    if min_version:
        s["min_version"] = min_version
    return s


def expected(version, min_version="16.1"):
    """(status, X-MS-Location, decision, reason) a cloud user's client of
    version gets."""
    low = tr.VERSION_CODE[min_version] if min_version else 0
    if version in tr.REDIRECTING and tr.VERSION_CODE[version] >= low:
        return 451, EXO, "redirect", "cloud"
    return 403, None, "reject", "cloud-min-version"


class CloudCase(tr.RoutingCase):

    def start_with(self, w, *sites):
        """Adds the cloud sites to w's (not yet started) config, starts it."""
        w.d.extra["sites"].extend(sites)
        w.d.start()
        return w

    def send_eas(self, w, user, version, form):
        r = tr.EasReq("Sync", user, version, form=form)
        return r, w.send(r)

    def assert_cloud(self, w, user, version, form, url=EXO,
                     min_version="16.1"):
        """user's client at version gets the cloud site's answer, from
        easfront itself, and the access log says why."""
        status, _, decision, reason = expected(version, min_version)
        r, resp = self.send_eas(w, user, version, form)
        what = "%s %s %s" % (user, version, form)
        self.assertEqual(resp.status, status, what)
        if status == 451:
            self.assert_redirected(w, r, resp, url)
        else:
            self.assertIsNone(resp.header("X-MS-Location"), what)
            self.assertIsNone(resp.header("X-MS-ASThrottle"), what)
            self.assert_own_headers(resp)
            self.assertEqual(w.where(r.mark), [], "a refused cloud user's "
                             "request reached a CAS: " + what)
        self.assert_log(w, r.device, decision=decision, reason=reason)

    def assert_local(self, w, user, version, form, site="site1",
                     reason="local"):
        r, resp = self.send_eas(w, user, version, form)
        self.assert_proxied(w, r.req, resp, site)
        self.assert_log(w, r.device, decision="proxy", reason=reason)


class Directory(CloudCase):
    """The directory says who moved (sitemap.ldap.cloud)."""

    def world(self, slapd, **kw):
        w = td.DirWorld(self, slapd, ldap={"cloud": {
            "site": "exo", "target_domains": [TENANT]}}, start=False, **kw)
        return self.start_with(w, cloud_site())

    def admin_text(self, w, path):
        status, text = w.admin("GET", path)
        self.assertEqual(status, 200, text)
        return text

    def test_moved_users_every_version_and_form(self):
        slapd = td.Slapd(self)
        w = self.world(slapd)
        for user in CLOUD_USERS:
            for version in VERSIONS:
                for form in FORMS:
                    self.assert_cloud(w, user, version, form)
        for version in VERSIONS:
            for form in FORMS:
                # a homeMDB wins over every cloud attribute
                self.assert_local(w, "onprem@contoso.test", version, form)
                # a targetAddress outside the tenant: unknown, default site
                self.assert_local(w, "elsewhere@contoso.test", version,
                                  form, site="site3",
                                  reason="proxy-no-external-url")
        # the cache keeps the answer like any other: one search each
        for user in CLOUD_USERS + ["onprem@contoso.test"]:
            self.assertEqual(slapd.searches(user), 1, user)
        metrics = self.admin_text(w, "/metrics")
        promtool = eftest.ensure_tool("promtool", "prometheus")
        p = eftest.run([promtool, "check", "metrics"], input=metrics,
                       check=False)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""),
                         "promtool check metrics")
        n = len(CLOUD_USERS) * len(FORMS)
        for answer, version in [("redirect", "16.1"), ("refused", "12.1"),
                                ("refused", "14.1"), ("refused", "16.0"),
                                ("redirect", "14.1"), ("refused", "16.1")]:
            want = 0 if (answer == "redirect") != (version == "16.1") else n
            self.assertIn('easfront_cloud_answers_total{answer="%s",'
                          'version="%s"} %d\n' % (answer, version, want),
                          metrics)

    def test_route_explains_cloud_decision(self):
        slapd = td.Slapd(self)
        w = self.world(slapd)
        text = self.admin_text(w, "/route?user=moved@contoso.test"
                                  "&version=14.1")
        for want in ["map:      directory: the mailbox moved to Exchange "
                     "Online (msExchRecipientTypeDetails 2147483648 "
                     "(RemoteUserMailbox); msExchRemoteRecipientType 4 "
                     "(migrated)) -> sitemap.ldap.cloud.site exo\n",
                     "cloud:    exo is Exchange Online, min_version 16.1\n",
                     "cloud:    12.1: 403 cloud-min-version (cannot follow "
                     "a 451)\n",
                     "cloud:    14.1: 403 cloud-min-version (below "
                     "min_version)\n",
                     "cloud:    16.1: 451 to %s\n" % EXO,
                     "decision: REJECT 403\n",
                     "reason:   cloud-min-version: "]:
            self.assertIn(want, text)
        text = self.admin_text(w, "/route?user=tenant@contoso.test"
                                  "&version=16.1")
        self.assertIn("targetAddress smtp:tenant@Contoso.mail.onmicrosoft."
                      "com (tenant domain %s)" % TENANT, text)
        self.assertIn("decision: REDIRECT 451 X-MS-Location: %s\n" % EXO,
                      text)


class SiteMap(CloudCase):
    """A user line of the TSV map puts a user on a cloud site."""

    LINES = tr.map_lines(extra=["user\tcloudy@contoso.test\texo",
                                "user\told@contoso.test\texo2",
                                "user\tmover2@contoso.test\tDB01"])

    def world(self, lines=None, **kw):
        w = tr.World(self, lines=lines or self.LINES, start=False, **kw)
        return self.start_with(w, cloud_site(),
                               cloud_site("exo2", EXO2, None))

    def test_tsv_every_version_and_form(self):
        w = self.world()
        for version in VERSIONS:
            for form in FORMS:
                self.assert_cloud(w, "cloudy@contoso.test", version, form)
                # without min_version every client that follows a 451
                self.assert_cloud(w, "old@contoso.test", version, form,
                                  url=EXO2, min_version=None)
        # OPTIONS carries no version: refused too
        resp = w.send(tr.options("cloudy@contoso.test"))
        self.assertEqual(resp.status, 403)
        self.assertEqual(w.cas_saw_path(tr.EAS_PATH), [])

    def test_reload_moves_user_to_cloud_and_back(self):
        lines = list(self.LINES)
        w = self.world(lines=lines)
        self.assert_local(w, "mover2@contoso.test", "16.1", "plain")
        moved = [ln.replace("mover2@contoso.test\tDB01",
                            "mover2@contoso.test\texo") for ln in lines]
        w.write_map(moved)
        w.sighup()
        for form in FORMS:
            self.assert_cloud(w, "mover2@contoso.test", "16.1", form)
            self.assert_cloud(w, "mover2@contoso.test", "14.1", form)
        w.write_map(lines)
        w.sighup()
        for form in FORMS:
            self.assert_local(w, "mover2@contoso.test", "14.1", form)

    def test_autodiscover_answer_gives_cloud_url(self):
        w = self.world(autodiscover="answer")
        req = eftest.autodiscover_request("cloudy@contoso.test")
        resp = w.send(req)
        self.assertEqual(resp.status, 200, resp.status_line)
        self.assertIn(("<Url>%s</Url>" % EXO).encode(), resp.body)
        self.assertEqual(w.where(req.mark), [])

    def test_autodiscover_proxy_goes_to_own_site(self):
        w = self.world(autodiscover="proxy")
        req = eftest.autodiscover_request("cloudy@contoso.test")
        resp = w.send(req)
        self.assertEqual(w.where(req.mark), ["site1"], resp.status_line)
        rec = [r for r in w.log_lines()
               if r.get("reason") == "cloud-autodiscover"]
        self.assertEqual(len(rec), 1, w.log_lines())
        self.assertEqual(rec[0]["decision"], "proxy")


CHECK_BASE = """\
site: site1
pid_file: "{dir}/easfront.pid"
listen:
  - address: "127.0.0.1:{port}"
tls:
  certificates:
    - cert: "{cert}"
      key: "{key}"
sites:
  - name: site1
    cas: [ "http://127.0.0.1:{port2}" ]
"""


class Check(eftest.EfTestCase):
    """`easfront check` refuses bad cloud sites with FILE:LINE: reason."""

    def run_check(self, tail):
        d = tempfile.mkdtemp(prefix="eftest-cloud-")
        self.addCleanup(subprocess.run, ["rm", "-rf", d])
        text = CHECK_BASE.format(dir=d, port=eftest.free_port(),
                                 port2=eftest.free_port(),
                                 cert=self.pki.eas_ec[0],
                                 key=self.pki.eas_ec[1]) + tail
        path = os.path.join(d, "easfront.yaml")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([eftest.easfront_bin(), "check", "-c", path],
                           capture_output=True, text=True, timeout=30)
        return path, p.returncode, p.stdout + p.stderr

    def assert_refused(self, tail, line, reason):
        path, rc, out = self.run_check(tail)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"(?m)^%s:%d: %s" % (re.escape(path), line,
                                                   re.escape(reason)))

    def test_good_cloud_site(self):
        _, rc, out = self.run_check(
            "  - name: exo\n    cloud: true\n"
            "    external_url: %s\n    min_version: \"16.1\"\n" % EXO)
        self.assertEqual(rc, 0, out)

    def test_refusals(self):
        exo = "  - name: exo\n    cloud: true\n    external_url: %s\n" % EXO
        self.assert_refused(exo + "    cas: [ \"http://127.0.0.1:1\" ]\n",
                            15, "sites[1].cas: a cloud site has no CAS")
        self.assert_refused(exo + "    fallback: site1\n", 15,
                            "sites[1].fallback: a cloud site has no "
                            "fallback")
        self.assert_refused("  - name: exo\n    cloud: true\n", 12,
                            "sites[1]: a cloud site needs external_url")
        self.assert_refused("  - name: site2\n", 12,
                            "sites[1]: cas is required")
        self.assert_refused(exo + "sitemap:\n  default_site: site1\n"
                            "  ldap:\n    uris: [ \"ldap://127.0.0.1:1\" ]\n"
                            "    base: dc=x\n    cloud:\n      site: site1\n",
                            21, "sitemap.ldap.cloud.site: 'site1' is not a "
                            "cloud site")


if __name__ == "__main__":
    unittest.main()
