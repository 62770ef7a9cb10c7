#!/usr/bin/python3
"""The Debian package on this machine, as an operator meets it: built from
the build directory under test, installed with dpkg, its example config
passing `easfront check` (as root, and as the easfront user that the unit
runs it as), its unit accepted by systemd-analyze, its config kept by
`dpkg -r` and removed by `dpkg -P`.

Needs root. The machine is left as it was found, also on failure: an
easfront package installed before is packed up from dpkg's records and put
back, files of an install by hand (deploy/setup-debian.sh, cmake --install)
and /etc/easfront are saved and restored, and the user, group membership
and snakeoil pair the package adds are taken away again when they are new.

    run.py BUILD_DIR VERSION
"""
import glob
import os
import pwd
import grp
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

PKG = "easfront"
CONF = "/etc/easfront/easfront.yaml"
UNIT = "/usr/lib/systemd/system/easfront.service"
SNAKEOIL = ["/etc/ssl/certs/ssl-cert-snakeoil.pem",
            "/etc/ssl/private/ssl-cert-snakeoil.key"]
# What the package installs or makes, so what a test install may overwrite.
PATHS = ["/etc/easfront", "/etc/logrotate.d/easfront", "/usr/sbin/easfront",
         UNIT, "/lib/systemd/system/easfront.service",
         "/usr/share/man/man8/easfront.8.gz",
         "/usr/share/man/man5/easfront.yaml.5.gz", "/usr/share/doc/easfront",
         "/var/log/easfront"]
LOCK_WAIT = 300  # seconds: other tests may be running apt-get


class Failed(Exception):
    pass


def run(*argv, ok=True, env=None):
    """Runs argv; returns (status, stdout + stderr). Fails when ok and the
    status is not 0."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=env)
    if ok and p.returncode != 0:
        raise Failed("%s: exit %d\n%s" % (" ".join(argv), p.returncode,
                                           p.stdout))
    return p.returncode, p.stdout


def dpkg(*args):
    """dpkg, waiting while another dpkg or apt holds the lock: dpkg itself
    gives up at once."""
    deadline = time.monotonic() + LOCK_WAIT
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    while True:
        rc, out = run("dpkg", *args, ok=False, env=env)
        if rc == 0:
            return out
        if "lock" not in out or time.monotonic() > deadline:
            raise Failed("dpkg %s: exit %d\n%s" % (" ".join(args), rc, out))
        time.sleep(1)


def status():
    """The package's dpkg status ("" when dpkg never heard of it)."""
    _, out = run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", PKG, ok=False)
    return out.strip() if not out.startswith("dpkg-query:") else ""


def exists(p):
    return os.path.lexists(p)


def step(what):
    print("==", what, flush=True)


class Machine:
    """What this machine had before the test, and how to put it back."""

    def __init__(self, work):
        self.work = work
        self.old_deb = None
        self.backup = os.path.join(work, "before.tar")
        self.snakeoil = any(exists(p) for p in SNAKEOIL)
        self.user = self._has_user()
        self.in_ssl_cert = self.user and PKG in grp.getgrnam("ssl-cert").gr_mem \
            if self._has_group("ssl-cert") else False
        self.group = self._has_group(PKG)

    @staticmethod
    def _has_user():
        try:
            pwd.getpwnam(PKG)
            return True
        except KeyError:
            return False

    @staticmethod
    def _has_group(name):
        try:
            grp.getgrnam(name)
            return True
        except KeyError:
            return False

    def save(self):
        """Packs up an installed easfront, saves the files a test install
        would touch, and leaves none of them behind."""
        if status().startswith("ii"):
            self.old_deb = self._repack()
        with tarfile.open(self.backup, "w") as t:
            for p in PATHS:
                if exists(p):
                    t.add(p)
        if status():
            # Also a half-installed one, or its config files alone: dpkg
            # forgets it, its files are in the backup.
            dpkg("--purge", PKG)
        shutil.rmtree("/etc/easfront", ignore_errors=True)

    def _repack(self):
        """A .deb of the installed package, from dpkg's own records: its
        control fields, maintainer scripts, conffiles and files as they are
        now (conffiles with the operator's changes)."""
        root = os.path.join(self.work, "repack")
        ctl = os.path.join(root, "DEBIAN")
        os.makedirs(ctl)
        _, fields = run("dpkg-query", "-s", PKG)
        drop = ("Status:", "Conffiles:", "Config-Version:", " /")
        with open(os.path.join(ctl, "control"), "w") as f:
            f.writelines(l + "\n" for l in fields.splitlines()
                         if l and not l.startswith(drop))
        for info in glob.glob("/var/lib/dpkg/info/%s.*" % PKG):
            part = info.rsplit(".", 1)[1]
            if part not in ("list", "md5sums"):
                shutil.copy2(info, os.path.join(ctl, part))
        _, files = run("dpkg-query", "-L", PKG)
        for p in files.splitlines():
            if p.startswith("/") and exists(p) and not os.path.isdir(p):
                dst = root + p
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(p, dst, follow_symlinks=False)
        deb = os.path.join(self.work, "before.deb")
        run("dpkg-deb", "--root-owner-group", "-b", root, deb)
        return deb

    @staticmethod
    def _remove_snakeoil():
        """The pair make-ssl-cert made, and its hash link in /etc/ssl/certs."""
        name = os.path.basename(SNAKEOIL[0])
        for link in glob.glob("/etc/ssl/certs/*.[0-9]"):
            if os.path.islink(link) and os.readlink(link) == name:
                os.unlink(link)
        for p in SNAKEOIL:
            if exists(p):
                os.unlink(p)

    def restore(self):
        """Purges the test's package and puts back what was here."""
        if status():
            dpkg("--purge", PKG)
        if self.old_deb is not None:
            dpkg("--force-confnew", "-i", self.old_deb)
        if os.path.exists(self.backup):
            with tarfile.open(self.backup) as t:
                t.extractall("/", numeric_owner=True)
        if not self.snakeoil:
            self._remove_snakeoil()
        if not self.user and self._has_user():
            run("deluser", "--quiet", "--system", PKG)
        elif self.user and not self.in_ssl_cert:
            run("deluser", "--quiet", PKG, "ssl-cert", ok=False)
        if not self.group and self._has_group(PKG):
            run("delgroup", "--quiet", "--system", PKG)


def expect(cond, what):
    if not cond:
        raise Failed(what)


def build(build_dir, version, work):
    step("cpack -G DEB in " + build_dir)
    _, arch = run("dpkg", "--print-architecture")
    run("cpack", "-G", "DEB", "-B", work, "--config",
        os.path.join(build_dir, "CPackConfig.cmake"))
    deb = os.path.join(work, "%s_%s_%s.deb" % (PKG, version, arch.strip()))
    expect(os.path.exists(deb), "no %s among %s" % (deb, os.listdir(work)))
    _, depends = run("dpkg-deb", "-f", deb, "Depends")
    # dpkg-shlibdeps's, not a hand list: versioned library packages.
    for lib in ("libc6 (>=", "libssl3", "libevent-core", "libcyaml",
                "adduser", "ssl-cert"):
        expect(lib in depends, "Depends lacks %s: %s" % (lib, depends))
    _, conffiles = run("dpkg-deb", "-I", deb, "conffiles")
    expect(conffiles.split() == [CONF, "/etc/logrotate.d/easfront"],
           "conffiles: %r" % conffiles)
    return deb


def installed(deb):
    step("dpkg -i " + os.path.basename(deb))
    dpkg("-i", deb)
    for p in ("/usr/sbin/easfront", UNIT, "/etc/logrotate.d/easfront",
              "/usr/share/man/man8/easfront.8.gz",
              "/usr/share/man/man5/easfront.yaml.5.gz", *SNAKEOIL):
        expect(exists(p), p + " missing after install")
    tls = os.stat("/etc/easfront/tls")
    expect(tls.st_gid == grp.getgrnam(PKG).gr_gid and
           (tls.st_mode & 0o777) == 0o750, "/etc/easfront/tls: bad owner or mode")
    expect(PKG in grp.getgrnam("ssl-cert").gr_mem, "easfront not in ssl-cert")

    step("easfront check -c " + CONF)
    _, out = run("/usr/sbin/easfront", "check", "-c", CONF)
    expect("OK" in out, out)
    # The unit's ExecStartPre and every reload read the config and the key
    # as this user, never as root.
    run("runuser", "-u", PKG, "--", "/usr/sbin/easfront", "check", "-c", CONF)

    step("systemd-analyze verify " + UNIT)
    rc, out = run("systemd-analyze", "verify", UNIT, ok=False)
    expect(rc == 0 and "easfront" not in out, "systemd-analyze verify:\n" + out)


def removed():
    step("dpkg -r: the config stays")
    dpkg("-r", PKG)
    expect(not exists("/usr/sbin/easfront"), "the binary outlived dpkg -r")
    expect(os.path.isfile(CONF), CONF + " gone after dpkg -r")
    expect(status().startswith("rc"), "status after dpkg -r: " + status())

    step("dpkg -P: the config goes")
    dpkg("-P", PKG)
    expect(not exists("/etc/easfront"), "/etc/easfront left after dpkg -P")
    expect(status() in ("", "un"), "status after dpkg -P: " + status())


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: run.py BUILD_DIR VERSION")
    if os.geteuid() != 0:
        sys.exit("needs root: it installs and purges a Debian package")
    build_dir, version = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="easfront-pkg.") as work:
        try:
            deb = build(build_dir, version, work)
            machine = Machine(work)
            try:
                machine.save()
                installed(deb)
                removed()
            finally:
                machine.restore()
        except Failed as e:
            print("FAILED:", e, flush=True)
            return 1
    print("package: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
