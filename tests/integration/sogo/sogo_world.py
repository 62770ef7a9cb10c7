"""The world of the SOGo integration test (standard library only).

Starts, on 127.0.0.1 only and on ports picked at run time, each as a process
of its own with its configuration and data under one temporary directory:

  - PostgreSQL (one cluster; databases sogo1, sogo2: SOGo's profile,
    folder-info, sessions and cache tables, and a SQL user source table
    sogo_users with plain passwords);
  - Dovecot (IMAP, passwd-file users, maildir) shared by both sites;
  - one memcached per site;
  - one sogod per site (SOGo 5 with its ActiveSync bundle): site1 knows
    user1@site1.test, site2 knows user2@site2.test;
  - easfront, standing in site1, in front of both over real TLS.

Every process is started in a session of its own; its process-group id is
written to $SOGO_TEST_DIR/pgids/ so that run.sh's trap can kill whatever is
left even if Python dies, and World.stop() stops them in reverse order with
bounded waits.
"""

import glob
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid

SNI = "eas.contoso.test"
EXTERNAL = {
    "site1": "https://site1-eas.contoso.test/Microsoft-Server-ActiveSync",
    "site2": "https://site2-eas.contoso.test/Microsoft-Server-ActiveSync",
}
USERS = {  # login -> (password, site)
    "user1@site1.test": ("Site1-Passw0rd", "site1"),
    "user2@site2.test": ("Site2-Passw0rd", "site2"),
}
SOGO_EAS_PATH = "/SOGo/Microsoft-Server-ActiveSync"
# SOGo's Ping loop sleeps in steps of SOGoInternalSyncInterval seconds (at
# least 5) and answers after HeartbeatInterval / step steps; a heartbeat
# above SOGoMaximumPingInterval (default 10 s) gets Status 5.
SOGO_INTERNAL_SYNC_INTERVAL = 5
SOGO_MAXIMUM_PING_INTERVAL = 3540
# easfront: an ordinary command gets upstream_response seconds, a Ping or a
# Sync with Wait gets long_poll; the test's Ping heartbeat is longer than
# upstream_response so that a Ping timed like an ordinary command fails.
EF_TIMEOUTS = {"handshake": 10, "client_header": 10, "client_body": 30,
               "idle": 60, "upstream_connect": 5, "upstream_response": 10,
               "long_poll": 120, "drain": 5}


def log(msg):
    sys.stderr.write("[sogo-world %s] %s\n" % (time.strftime("%H:%M:%S"),
                                               msg))
    sys.stderr.flush()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout, what, proc=None, logfile=None, interval=0.1):
    """Polls pred() until truthy; fails with what (and the tail of logfile)
    after timeout seconds or as soon as proc exited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("%s: process exited with %s%s" % (
                what, proc.returncode, tail(logfile)))
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError("%s: not ready within %d s (last error: %r)%s" % (
        what, timeout, last, tail(logfile)))


def tail(path, n=4000):
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - n))
        return "\n---- tail of %s ----\n%s" % (
            path, f.read().decode("utf-8", "replace"))


def run(cmd, timeout=60, **kw):
    p = subprocess.run(cmd, capture_output=True, timeout=timeout, text=True,
                       **kw)
    if p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s%s" % (
            " ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p.stdout


def pg_bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                  key=lambda p: int(re.search(r"/(\d+)/bin", p).group(1)))
    if not dirs:
        raise AssertionError("PostgreSQL server binaries are missing "
                             "(run.sh installs the postgresql package)")
    return os.path.dirname(dirs[-1])


# --------------------------------------------------------------------------
# HTTP/1.1 client with exact heads (header order and spelling kept)

class Response:
    def __init__(self, status, reason, headers, body, elapsed, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers          # [(name, value)] as received
        self.body = body
        self.elapsed = elapsed
        self.raw_head = raw_head

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "<%d %s %r body=%d bytes>" % (self.status, self.reason,
                                             self.headers, len(self.body))


class Conn:
    """One HTTP/1.1 connection (TLS to easfront, plain TCP to sogod)."""

    def __init__(self, port, tls_ctx=None, sni=SNI, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        if tls_ctx is not None:
            self.sock = tls_ctx.wrap_socket(self.sock, server_hostname=sni)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("response not complete in time")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by peer")
        self.buf += data

    def request(self, method, target, headers, body=b"", timeout=30,
                host=SNI):
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, target, host)
        for k, v in headers:
            head += "%s: %s\r\n" % (k, v)
        if body or method == "POST":
            head += "Content-Length: %d\r\n" % len(body)
        head += "\r\n"
        t0 = time.monotonic()
        self.sock.sendall(head.encode("latin-1") + body)
        return self.read_response(method, t0 + timeout, t0)

    def read_response(self, method, deadline, t0):
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
        if not m:
            raise AssertionError("bad status line %r" % lines[0])
        status, reason = int(m.group(1)), m.group(2) or ""
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers.append((k, v.strip()))
        hmap = {k.lower(): v for k, v in headers}
        body = b""
        if method == "HEAD" or status in (204, 304) or status < 200:
            pass
        elif "chunked" in hmap.get("transfer-encoding", "").lower():
            while True:
                while b"\r\n" not in self.buf:
                    self._fill(deadline)
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill(deadline)
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        elif "content-length" in hmap:
            n = int(hmap["content-length"])
            while len(self.buf) < n:
                self._fill(deadline)
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            try:
                while True:
                    self._fill(deadline)
            except ConnectionError:
                pass
            body, self.buf = self.buf, b""
        return Response(status, reason, headers, body,
                        time.monotonic() - t0, raw)


# --------------------------------------------------------------------------
# processes

class Proc:
    def __init__(self, name, proc, logfile, stop_signal=signal.SIGTERM,
                 stop_wait=15):
        self.name = name
        self.proc = proc
        self.logfile = logfile
        self.stop_signal = stop_signal
        self.stop_wait = stop_wait


def descendants(pid):
    """Every live descendant of pid (sogod's workers call setsid(), so its
    process group does not hold them)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


class World:
    def __init__(self):
        self.dir = os.environ.get("SOGO_TEST_DIR")
        if not self.dir:
            self.dir = tempfile.mkdtemp(prefix="ef-sogo-")
            self._own_dir = True
        else:
            os.makedirs(self.dir, exist_ok=True)
            self._own_dir = False
        # daemons running as postgres, dovecot, sogo, nobody read their
        # files here
        os.chmod(self.dir, 0o755)
        self.pgid_dir = os.path.join(self.dir, "pgids")
        os.makedirs(self.pgid_dir, exist_ok=True)
        self.procs = []
        self.sogo_port = {}
        self.memcached_port = {}
        self.sogo_log = {}

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def mkdir(self, *p, owner=None, mode=0o755):
        d = self.path(*p)
        os.makedirs(d, exist_ok=True)
        os.chmod(d, mode)
        if owner:
            shutil.chown(d, owner, owner if owner != "nobody" else "nogroup")
        return d

    def spawn(self, name, argv, user=None, group=None, env=None, cwd=None,
              stop_signal=signal.SIGTERM, stop_wait=15):
        logfile = self.path(name + ".out")
        out = open(logfile, "ab")
        kw = {}
        if user:
            kw.update(user=user, group=group or user, extra_groups=[])
        base_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG": "C.UTF-8", "HOME": cwd or self.dir}
        base_env.update(env or {})
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, env=base_env,
                             cwd=cwd or self.dir, start_new_session=True,
                             **kw)
        out.close()
        with open(os.path.join(self.pgid_dir, "%s.pgid" % name), "w") as f:
            f.write("%d\n" % p.pid)
        pr = Proc(name, p, logfile, stop_signal, stop_wait)
        self.procs.append(pr)
        return pr

    def stop(self):
        """Stops every process, newest first: its signal to its process
        group, a bounded wait, then SIGKILL to the group and to every
        descendant seen before. Returns a list of problems (easfront not
        exiting cleanly on SIGTERM)."""
        problems = []
        for pr in reversed(self.procs):
            family = descendants(pr.proc.pid)
            was_running = pr.proc.poll() is None
            try:
                os.killpg(pr.proc.pid, pr.stop_signal)
            except ProcessLookupError:
                pass
            try:
                rc = pr.proc.wait(pr.stop_wait)
                if pr.name == "easfront" and was_running and rc != 0:
                    problems.append("easfront exited %d after SIGTERM" % rc)
            except subprocess.TimeoutExpired:
                # (sogod's workers finish a Ping in hand first: expected)
                if pr.name == "easfront":
                    problems.append("easfront did not exit within %d s of "
                                    "SIGTERM" % pr.stop_wait)
                elif not pr.name.startswith("sogod"):
                    log("%s did not stop within %d s: SIGKILL" % (
                        pr.name, pr.stop_wait))
            for pid in family:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(pr.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                pr.proc.wait(5)
            except subprocess.TimeoutExpired:
                log("%s survived SIGKILL?" % pr.name)
            try:
                os.unlink(os.path.join(self.pgid_dir, "%s.pgid" % pr.name))
            except FileNotFoundError:
                pass
        self.procs = []
        if self._own_dir and not os.environ.get("SOGO_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems

    def start(self):
        t0 = time.monotonic()
        self.start_pki()
        self.start_postgres()
        self.start_dovecot()
        for site in ("site1", "site2"):
            self.start_memcached(site)
        for site in ("site1", "site2"):
            self.start_sogo(site)
        for site in ("site1", "site2"):
            self.wait_sogo(site)
        self.start_easfront()
        log("world up in %.1f s (dir %s)" % (time.monotonic() - t0, self.dir))

    # ---- TLS

    def start_pki(self):
        d = self.mkdir("pki", mode=0o700)
        self.ca_key = os.path.join(d, "ca.key")
        self.ca_cert = os.path.join(d, "ca.pem")
        self.cert = os.path.join(d, "eas.pem")
        self.key = os.path.join(d, "eas.key")
        csr = os.path.join(d, "eas.csr")
        ext = os.path.join(d, "eas.ext")
        ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        run(["openssl", "genpkey"] + ec + ["-out", self.ca_key])
        run(["openssl", "req", "-x509", "-new", "-key", self.ca_key,
             "-sha256", "-subj", "/O=easfront sogo test/CN=sogo test CA",
             "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", self.ca_cert])
        run(["openssl", "genpkey"] + ec + ["-out", self.key])
        run(["openssl", "req", "-new", "-key", self.key, "-subj",
             "/CN=" + SNI, "-out", csr])
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:%s,DNS:site1-eas.contoso.test\n"
                    "basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n" % SNI)
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca_cert,
             "-CAkey", self.ca_key, "-set_serial",
             "0x" + uuid.uuid4().hex[:16], "-days", "2", "-sha256",
             "-extfile", ext, "-out", self.cert])
        self.tls_ctx = ssl.create_default_context(cafile=self.ca_cert)

    # ---- PostgreSQL

    def start_postgres(self):
        bindir = pg_bindir()
        data = self.mkdir("pg", owner="postgres", mode=0o700)
        sock = self.mkdir("pgsock", owner="postgres")
        self.pg_port = free_port()
        run([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"],
            user="postgres", group="postgres", cwd=data, timeout=120)
        pr = self.spawn("postgres", [
            os.path.join(bindir, "postgres"), "-D", data, "-k", sock,
            "-p", str(self.pg_port), "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=100"],
            user="postgres", cwd=data, stop_signal=signal.SIGINT)
        wait_for(lambda: self.psql("postgres", "SELECT 1").strip() == "1",
                 60, "PostgreSQL on 127.0.0.1:%d" % self.pg_port, pr.proc,
                 pr.logfile, interval=0.2)
        self.psql("postgres", "CREATE ROLE sogo LOGIN PASSWORD 'sogo'")
        for site in ("site1", "site2"):
            db = "sogo_" + site
            self.psql("postgres", "CREATE DATABASE %s OWNER sogo" % db)
            sql = ["CREATE TABLE sogo_users (c_uid varchar(255) PRIMARY KEY,"
                   " c_name varchar(255) NOT NULL, c_password varchar(255)"
                   " NOT NULL, c_cn varchar(255), mail varchar(255))"]
            for login, (pw, usite) in USERS.items():
                if usite == site:
                    sql.append("INSERT INTO sogo_users VALUES "
                               "('%s', '%s', '%s', '%s', '%s')" % (
                                   login, login, pw,
                                   "Test " + login.split("@")[0], login))
            self.psql(db, ";\n".join(sql), user="sogo")

    def psql(self, db, sql, user="postgres"):
        return run([os.path.join(pg_bindir(), "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                    "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", user,
                    "-d", db, "-c", sql], timeout=30)

    # ---- Dovecot

    def start_dovecot(self):
        d = self.mkdir("dovecot")
        self.mkdir("dovecot", "run")
        self.mkdir("dovecot", "state")
        mail = self.mkdir("mail", owner="nobody")
        self.imap_port = free_port()
        users = os.path.join(d, "users")
        with open(users, "w") as f:
            for login, (pw, _) in USERS.items():
                f.write("%s:{PLAIN}%s\n" % (login, pw))
        os.chmod(users, 0o644)
        conf = os.path.join(d, "dovecot.conf")
        with open(conf, "w") as f:
            f.write("""\
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = ef-sogo-{tag}
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{mail}/%u/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = create
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""".format(d=d, tag=uuid.uuid4().hex[:8], mail=mail, users=users,
           port=self.imap_port))
        pr = self.spawn("dovecot", ["dovecot", "-F", "-c", conf])

        def banner():
            with socket.create_connection(("127.0.0.1", self.imap_port),
                                          timeout=2) as s:
                return s.recv(200).startswith(b"* OK")
        wait_for(banner, 30, "Dovecot IMAP on 127.0.0.1:%d" % self.imap_port,
                 pr.proc, os.path.join(d, "dovecot.log"))

    # ---- memcached

    def start_memcached(self, site):
        port = free_port()
        self.memcached_port[site] = port
        pr = self.spawn("memcached-" + site, [
            "memcached", "-u", "memcache", "-l", "127.0.0.1", "-p", str(port),
            "-U", "0", "-m", "16"])

        def up():
            with socket.create_connection(("127.0.0.1", port),
                                          timeout=2) as s:
                s.sendall(b"version\r\n")
                return s.recv(100).startswith(b"VERSION")
        wait_for(up, 20, "memcached (%s) on 127.0.0.1:%d" % (site, port),
                 pr.proc, pr.logfile)

    # ---- SOGo

    def start_sogo(self, site):
        d = self.mkdir("sogo-" + site, owner="sogo")
        port = free_port()
        self.sogo_port[site] = port
        self.sogo_log[site] = os.path.join(d, "sogo.log")
        db = "postgresql://sogo:sogo@127.0.0.1:%d/sogo_%s" % (self.pg_port,
                                                              site)
        sources = ('({ type = sql; id = users_%s; viewURL = "%s/sogo_users";'
                   ' canAuthenticate = YES; isAddressBook = NO;'
                   ' userPasswordAlgorithm = plain; })' % (site, db))
        # Everything on the command line (GNUstep's argument domain, which
        # wins over /etc/sogo/sogo.conf and the user defaults).
        args = {
            "WONoDetach": "YES",
            "WOWorkersCount": "3",
            "WOPort": "127.0.0.1:%d" % port,
            "WOLogFile": self.sogo_log[site],
            "WOPidFile": os.path.join(d, "sogo.pid"),
            "SOGoProfileURL": db + "/sogo_user_profile",
            "OCSFolderInfoURL": db + "/sogo_folder_info",
            "OCSSessionsFolderURL": db + "/sogo_sessions_folder",
            "OCSEMailAlarmsFolderURL": db + "/sogo_alarms_folder",
            "SOGoUserSources": sources,
            "SOGoIMAPServer": "imap://127.0.0.1:%d" % self.imap_port,
            "SOGoSieveScriptsEnabled": "NO",
            "SOGoVacationEnabled": "NO",
            "SOGoForwardEnabled": "NO",
            "SOGoMemcachedHost": "127.0.0.1:%d" % self.memcached_port[site],
            "SOGoTimeZone": "UTC",
            "SOGoLanguage": "English",
            "SOGoMaximumPingInterval": str(SOGO_MAXIMUM_PING_INTERVAL),
            "SOGoInternalSyncInterval": str(SOGO_INTERNAL_SYNC_INTERVAL),
            "SOGoEASDebugEnabled": "YES",
            "SOGoMaximumFailedLoginCount": "0",
        }
        argv = ["/usr/sbin/sogod"]
        for k, v in args.items():
            argv += ["-" + k, v]
        with open(os.path.join(d, "argv.txt"), "w") as f:
            f.write("\n".join(argv) + "\n")
        # its workers finish the request in hand on SIGTERM (a Ping: up to
        # its heartbeat); the test does not wait for that
        self.spawn("sogod-" + site, argv, user="sogo", cwd=d, stop_wait=3)

    def wait_sogo(self, site):
        port = self.sogo_port[site]
        pr = [p for p in self.procs if p.name == "sogod-" + site][0]

        def up():
            c = Conn(port, timeout=5)
            try:
                r = c.request("GET", "/SOGo/", [("Connection", "close")],
                              timeout=5, host="127.0.0.1:%d" % port)
                return r.status == 200
            finally:
                c.close()
        wait_for(up, 90, "sogod (%s) on 127.0.0.1:%d" % (site, port),
                 pr.proc, self.sogo_log[site], interval=0.3)

    def sogo_requests(self, site):
        """The request lines of the ActiveSync requests sogod of site
        logged so far (its access-log lines)."""
        try:
            with open(self.sogo_log[site], "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return re.findall(r'"((?:GET|POST|OPTIONS) %s[^"]*)" (\d{3})'
                          % re.escape(SOGO_EAS_PATH), text)

    # ---- easfront

    def start_easfront(self):
        binary = os.environ.get("EASFRONT_BIN")
        if not binary or not os.access(binary, os.X_OK):
            raise AssertionError("EASFRONT_BIN=%r is not an executable; run "
                                 "through ctest or set it" % binary)
        d = self.mkdir("easfront")
        self.ef_port = free_port()
        self.ef_access = os.path.join(d, "access.log")
        self.ef_stderr = self.path("easfront.out")
        sitemap = os.path.join(d, "sitemap.tsv")
        with open(sitemap, "w") as f:
            f.write("# what\tkey\tvalue\n"
                    "database\tDB-SITE1\tsite1\n"
                    "database\tDB-SITE2\tsite2\n"
                    "user\tuser1@site1.test\tDB-SITE1\n"
                    "user\tuser2@site2.test\tDB-SITE2\n")
        sites = []
        for site in ("site1", "site2"):
            sites.append(
                "  - name: %s\n"
                "    external_url: %s\n"
                "    cas: [ \"http://127.0.0.1:%d\" ]\n"
                "    proxy_path: %s\n"
                # SOGo answers healthcheck.htm with its login page, not
                # "200 OK": health.expect "" takes any 200 as healthy.
                "    health: { interval: 2, timeout: 5, "
                "expect: \"\" }\n" % (site, EXTERNAL[site],
                                      self.sogo_port[site], SOGO_EAS_PATH))
        conf = os.path.join(d, "easfront.yaml")
        with open(conf, "w") as f:
            f.write("site: site1\n"
                    "pid_file: %s\n"
                    "workers: 2\n"
                    "listen:\n  - address: \"127.0.0.1:%d\"\n"
                    "tls:\n  certificates:\n    - cert: %s\n      key: %s\n"
                    "sites:\n%s"
                    "sitemap:\n  file: %s\n  default_site: site1\n"
                    "timeouts:\n%s"
                    "log:\n  access: %s\n  format: json\n  level: debug\n"
                    % (os.path.join(d, "easfront.pid"), self.ef_port,
                       self.cert, self.key, "".join(sites), sitemap,
                       "".join("  %s: %d\n" % kv
                               for kv in EF_TIMEOUTS.items()),
                       self.ef_access))
        self.ef_conf = conf
        pr = self.spawn("easfront", [binary, "run", "-c", conf], cwd=d,
                        stop_wait=EF_TIMEOUTS["drain"] + 10,
                        env={"ASAN_OPTIONS": os.environ.get(
                            "ASAN_OPTIONS", "detect_leaks=0")})
        self.ef_proc = pr

        def healthy():
            c = Conn(self.ef_port, self.tls_ctx, timeout=3)
            try:
                r = c.request("GET",
                              "/Microsoft-Server-ActiveSync/healthcheck.htm",
                              [("Connection", "close")], timeout=3)
                return r.status == 200
            finally:
                c.close()
        wait_for(healthy, 30, "easfront on 127.0.0.1:%d" % self.ef_port,
                 pr.proc, pr.logfile, interval=0.2)

    def easfront_alive(self):
        rc = self.ef_proc.proc.poll()
        if rc is not None:
            raise AssertionError("easfront exited with %s%s" % (
                rc, tail(self.ef_proc.logfile)))

    def access_log(self):
        """easfront's access-log entries so far (JSON lines)."""
        out = []
        try:
            with open(self.ef_access) as f:
                for ln in f:
                    ln = ln.strip()
                    if ln:
                        out.append(json.loads(ln))
        except FileNotFoundError:
            pass
        return out

    def ef_conn(self, timeout=30):
        return Conn(self.ef_port, self.tls_ctx, timeout=timeout)

    def sogo_conn(self, site, timeout=30):
        return Conn(self.sogo_port[site], timeout=timeout)

