"""`easfront check -c FILE`: exit 0 on a good config; exit 1 with
`FILE:LINE: reason` naming the right line on a bad one."""

import os
import re
import subprocess
import tempfile
import unittest

import eftest

GOOD = """\
# easfront check test: a two-site config
site: site1
pid_file: "{dir}/easfront.pid"
workers: 1
listen:
  - address: "127.0.0.1:{port}"
tls:
  certificates:
    - cert: "{ec_cert}"
      key: "{ec_key}"
    - cert: "{rsa_cert}"
      key: "{rsa_key}"
sites:
  - name: site1
    external_url: https://site1-eas.contoso.test/Microsoft-Server-ActiveSync
    cas:
      - http://127.0.0.1:{cas_port}
    fallback: site2
  - name: site2
    cas: [ "https://cas1.site2.contoso.test" ]
upstream:
  ca_file: "{ca}"
timeouts:
  client_header: 15
log:
  access: "-"
  format: json
  level: info
"""


class Check(eftest.EfTestCase):

    def setUp(self):
        super().setUp()
        self.bin = eftest.easfront_bin()
        self.dir = tempfile.mkdtemp(prefix="eftest-check-")
        self.addCleanup(subprocess.run, ["rm", "-rf", self.dir])
        p = self.pki
        self.vars = {"dir": self.dir, "port": eftest.free_port(),
                     "cas_port": eftest.free_port(),
                     "ec_cert": p.eas_ec[0], "ec_key": p.eas_ec[1],
                     "rsa_cert": p.eas_rsa[0], "rsa_key": p.eas_rsa[1],
                     "ca": p.ca_cert}

    def write(self, text, name="easfront.yaml"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text.format(**self.vars))
        return path

    def check(self, path, cmd="check", timeout=20):
        p = subprocess.run([self.bin, cmd, "-c", path], capture_output=True,
                           text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    @staticmethod
    def line_of(text, needle):
        for i, ln in enumerate(text.splitlines(), 1):
            if needle in ln:
                return i
        raise AssertionError("%r not in the config" % needle)

    def assert_bad(self, text, needle, reason_re, also_lines=()):
        """check exits 1 and prints PATH:LINE: reason with LINE the line of
        needle (or one of also_lines, given as needles too)."""
        path = self.write(text)
        rc, out = self.check(path)
        self.assertEqual(rc, 1, "check accepted a bad config:\n" + out)
        found = re.findall(r"^%s:(\d+): (.+)$" % re.escape(path), out, re.M)
        self.assertTrue(found, "no FILE:LINE: reason line in:\n" + out)
        rendered = text.format(**self.vars)
        want = {self.line_of(rendered, needle)} | {
            self.line_of(rendered, n) for n in also_lines}
        lines = {int(n) for n, _ in found}
        self.assertTrue(lines & want, "expected line %s, got:\n%s"
                        % (sorted(want), out))
        reasons = " ".join(r for n, r in found if int(n) in want)
        self.assertRegex(reasons, reason_re)
        return out

    def test_good_config(self):
        path = self.write(GOOD)
        rc, out = self.check(path)
        self.assertEqual(rc, 0, out)
        self.assertNotRegex(out, r"^%s:\d+: " % re.escape(path))

    def test_unknown_key(self):
        text = GOOD.replace("    fallback: site2\n",
                            "    fallback: site2\n    colour: blue\n")
        self.assert_bad(text, "colour: blue", r"(?i)colour")
        text = GOOD.replace("workers: 1\n", "workers: 1\nwrokers: 2\n")
        self.assert_bad(text, "wrokers: 2", r"(?i)wrokers")

    def test_fallback_names_no_site(self):
        text = GOOD.replace("fallback: site2", "fallback: site9")
        self.assert_bad(text, "fallback: site9", r"site9")

    def test_non_http_url(self):
        text = GOOD.replace("      - http://127.0.0.1:{cas_port}",
                            "      - ftp://127.0.0.1:{cas_port}")
        self.assert_bad(text, "- ftp://", r"(?i)ftp|http|scheme|url")
        text = GOOD.replace('cas: [ "https://cas1.site2.contoso.test" ]',
                            'cas: [ "ldap://cas1.site2.contoso.test" ]')
        self.assert_bad(text, "ldap://", r"(?i)ldap|http|scheme|url")

    def test_unreadable_certificate(self):
        text = GOOD.replace('- cert: "{rsa_cert}"',
                            '- cert: "{dir}/no-such-cert.pem"')
        self.assert_bad(text, "no-such-cert.pem",
                        r"(?i)no such|cannot|can't|unreadable|open|read")

    def test_key_not_matching_certificate(self):
        text = GOOD.replace('      key: "{ec_key}"', '      key: "{rsa_key}"')
        rendered = text.format(**self.vars)
        cert_line = self.line_of(rendered, self.vars["ec_cert"])
        # the key line is the one after the cert line
        key_needle = rendered.splitlines()[cert_line]
        self.assertIn("key:", key_needle)
        self.assert_bad(text, self.vars["ec_cert"], r"(?i)match|key",
                        also_lines=[key_needle.strip()])

    def test_expired_certificate(self):
        cert, key = self.pki.leaf("expired-%s" % os.getpid(),
                                  eftest.EAS_SANS, "ec", days=-1)
        self.vars.update(exp_cert=cert, exp_key=key)
        text = GOOD.replace('- cert: "{rsa_cert}"\n      key: "{rsa_key}"',
                            '- cert: "{exp_cert}"\n      key: "{exp_key}"')
        self.assert_bad(text, cert, r"(?i)expire|not after|valid")

    def test_run_refuses_bad_config(self):
        text = GOOD.replace("fallback: site2", "fallback: site9")
        path = self.write(text)
        rc, out = self.check(path, cmd="run", timeout=10)
        self.assertNotEqual(rc, 0)
        self.assertRegex(out, r"^%s:%d: " % (
            re.escape(path), self.line_of(text.format(**self.vars),
                                          "fallback: site9")))


if __name__ == "__main__":
    unittest.main()
