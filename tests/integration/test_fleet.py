"""The password shield and the throttle of a fleet (issue 15 item 3, DESIGN.md "Edge
protection", guard.store): two easfront instances, one on 127.0.0.1 and
one on 127.0.0.2, in front of one stand-in CAS and sharing one redis-server
(Debian's, started here on 127.0.0.1 with a password and no persistence).

- a stale password replayed alternately to both reaches the CAS exactly
  password_failures times in all, and both hold it;
- `guard clear` on one clears both;
- Redis stopped mid-run: requests flow without waiting, each front end
  limits alone, easfront_store_up 0; Redis back: sharing resumes without a
  restart of easfront, and the refusals and clears seen meanwhile reach
  the fleet;
- a Redis that accepts and never answers: the same as one that is down;
- a device alternating between both is throttled at its fleet budget
  (within a second of slack), and each limits it alone while Redis is
  down; the tokens it spent meanwhile count when Redis is back.

Every wait is bounded in count and time."""

import json
import os
import socket
import subprocess
import threading
import time
import unittest

import eftest
import test_guard as tg
from eftest import free_port, wait_until

REDIS_PASSWORD = "fleet-" + os.urandom(8).hex()
OLD = tg.OLD
# The store's command timeout (store.h STORE_TIMEOUT_MS_DEFAULT): a request
# that waited for the store would take at least this long.
STORE_TIMEOUT = 0.5


class Redis:
    """A redis-server on 127.0.0.1:port with requirepass and no
    persistence, stoppable and restartable on the same port."""

    def __init__(self, tc):
        eftest.ensure_tool("redis-server", "redis-server")
        self.dir = eftest.mktemp_dir("eftest-redis-")
        self.port = free_port()
        self.proc = None
        tc.addCleanup(self.stop)

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", REDIS_PASSWORD, "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        if not wait_until(self._ready, 10, 0.1):
            raise AssertionError("redis-server did not answer within 10 s")
        return self

    def command(self, *args, timeout=2):
        """One command after AUTH; the raw reply bytes."""
        out = b"".join(b"*%d\r\n" % len(a) + b"".join(
            b"$%d\r\n%s\r\n" % (len(x), x) for x in a) for a in
            ([b"AUTH", REDIS_PASSWORD.encode()],
             [x if isinstance(x, bytes) else str(x).encode()
              for x in args]))
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=timeout) as s:
            s.sendall(out)
            time.sleep(0.1)
            return s.recv(1 << 20)

    def keys(self):
        """Every key, parsed from the KEYS reply (binary-safe)."""
        raw = self.command("KEYS", "*")
        assert raw.startswith(b"+OK\r\n*"), raw
        at = raw.index(b"\r\n", 5)
        n, out = int(raw[6:at]), []
        at += 2
        for _ in range(n):
            end = raw.index(b"\r\n", at)
            size = int(raw[at + 1:end])
            out.append(raw[end + 2:end + 2 + size])
            at = end + 2 + size + 2
        return out

    def _ready(self):
        try:
            return self.command("PING").startswith(b"+OK\r\n+PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class Mute:
    """A server that accepts connections and never answers."""

    def __init__(self, tc):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.done = False
        threading.Thread(target=self._accept, daemon=True).start()
        tc.addCleanup(self.close)

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.done:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)      # read nothing, answer nothing

    def close(self):
        self.done = True
        for c in self.conns:
            c.close()
        self.sock.close()


class FleetCase(tg.GuardCase):

    def fleet(self, store_port, throttle=None, **shield):
        """A CAS and two daemons (127.0.0.1, 127.0.0.2) sharing the store
        at store_port and the shield's key (and guard.throttle when
        given); returns (cas, d1, d2); one more of the fleet from
        self.joiner()."""
        d = eftest.mktemp_dir("eftest-fleet-")
        key, pw = os.path.join(d, "guard.key"), os.path.join(d, "redis.pw")
        with open(key, "wb") as f:
            f.write(os.urandom(32))
        with open(pw, "w") as f:
            f.write(REDIS_PASSWORD + "\n")
        guard = {"passwords": tg.shield(**shield), "key_file": key,
                 "store": "redis://127.0.0.1:%d" % store_port,
                 "store_password_file": pw}
        if throttle is not None:
            guard["throttle"] = throttle
        cas = self.start_cas(passwords={tg.USER: tg.RIGHT})
        self.joiner = lambda: tg.GuardDaemon(self, [cas.url], guard).start()
        d1 = tg.GuardDaemon(self, [cas.url], guard).start()
        d2 = tg.GuardDaemon(self, [cas.url], guard)
        d2.host = "127.0.0.2"
        d2.start()
        return cas, d1, d2

    def shown_store(self, d):
        """What d's /status (the status page's data) says of the store."""
        code, text = d.admin("GET", "/status")
        self.assertEqual(code, 200, text)
        return json.loads(text)["guard"]["store"]

    def store_up(self, d):
        return d.metrics().get(("easfront_store_up", ()))

    def wait_store(self, ds, up, timeout=25):
        for d in ds:
            if not wait_until(lambda: self.store_up(d) == up, timeout, 0.2):
                self.fail("easfront_store_up never became %d on %s "
                          "within %d s:\n%s" % (up, d.host, timeout,
                                                d.stderr_text()[-2000:]))

    def held(self, d, password_holds=1):
        """True when d holds at least password_holds passwords of USER."""
        st = d.guard_status()
        if not st:
            return False
        for h in st.get("holds", []):
            if h["held_passwords"] >= password_holds:
                return True
        return False

    def guard_of(self, d):
        code, text = d.admin("GET", "/guard?user=" + tg.USER)
        self.assertEqual(code, 200, text)
        return text

    def replay(self, phones, password, n, settle=None):
        """Sends password n times, alternately through phones; before each
        further request, up to a second for settle() (a hold to
        propagate). Returns the statuses and the slowest answer's time."""
        statuses, slowest = [], 0.0
        for i in range(n):
            p = phones[i % len(phones)]
            p.password = password
            t0 = time.monotonic()
            _, resp = p.request("Sync")
            slowest = max(slowest, time.monotonic() - t0)
            statuses.append(resp.status)
            if settle is not None:
                wait_until(settle, 1.0, 0.05)
        return statuses, slowest

    def assert_store_metrics(self, d):
        """d's /metrics passes promtool and has every store family."""
        promtool = eftest.ensure_tool("promtool", "prometheus")
        code, text = d.admin("GET", "/metrics")
        self.assertEqual(code, 200)
        p = eftest.run([promtool, "check", "metrics"], input=text,
                       check=False)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""),
                         "promtool check metrics:\n" + text[:3000])
        for name, kind in (("easfront_store_up", "gauge"),
                           ("easfront_store_errors_total", "counter"),
                           ("easfront_store_timeouts_total", "counter"),
                           ("easfront_store_reconnects_total", "counter"),
                           ("easfront_store_messages_total", "counter"),
                           ("easfront_store_rtt_seconds", "gauge"),
                           ("easfront_guard_shared_holds_total", "counter")):
            self.assertIn("# TYPE %s %s\n" % (name, kind), text)
        rtt = d.metrics()[("easfront_store_rtt_seconds", ())]
        self.assertTrue(0 < rtt < STORE_TIMEOUT, rtt)

    def phones(self, d1, d2):
        a = self.phone(d1, password=OLD)
        b = self.phone(d2, password=OLD, device_id=a.device_id)
        return a, b


class SharedHolds(FleetCase):

    def test_stale_password_held_fleet_wide_and_cleared_on_both(self):
        redis = Redis(self).start()
        cas, d1, d2 = self.fleet(redis.port)
        self.wait_store((d1, d2), 1)
        a, b = self.phones(d1, d2)

        statuses, _ = self.replay(
            (a, b), OLD, 12,
            settle=lambda: self.held(d1) and self.held(d2))
        self.assertEqual(statuses, [401] * 12)
        self.assertEqual(cas.attempts(tg.USER, password=OLD), 3,
                         "the CAS saw the stale password more than "
                         "password_failures times across the fleet")
        self.assertTrue(self.held(d1) and self.held(d2),
                        (self.guard_of(d1), self.guard_of(d2)))
        m = d1.metrics()
        m2 = d2.metrics()
        self.assertGreaterEqual(m[("easfront_store_messages_total", ())], 1)
        self.assertGreaterEqual(
            m[("easfront_guard_shared_holds_total", ())] +
            m2[("easfront_guard_shared_holds_total", ())], 1,
            "no front end learned the hold from the store")
        self.assert_store_metrics(d1)
        # the user's right password is untouched on both
        for p in (a, b):
            p.password = tg.RIGHT
            self.assertEqual(p.request()[1].status, 200)
        # Redis holds keyed hashes only, never a name or a password
        keys = redis.command("KEYS", "*")
        for word in (b"alice", b"contoso", OLD.encode(), tg.RIGHT.encode()):
            self.assertNotIn(word, keys)

        # a front end that starts now learns the hold from the store
        d3 = self.joiner()
        self.assertTrue(wait_until(lambda: self.held(d3), 5, 0.1),
                        self.guard_of(d3))

        # an operator clears the user on d1: d2 and d3 forget the hold too
        code, text = d1.admin("POST", "/guard/clear?user=" + tg.USER)
        self.assertEqual((code, json.loads(text)),
                         (200, {"cleared": 1, "refilled": 0,
                                "fleet": "told"}),
                         text)
        for d in (d2, d3):
            self.assertTrue(wait_until(lambda: not self.held(d), 5, 0.1),
                            self.guard_of(d))
        self.assertFalse(self.held(d1))
        b.password = OLD
        self.assertEqual(b.request()[1].status, 401)
        self.assertEqual(cas.attempts(tg.USER, password=OLD), 4,
                         "after the clear d2 forwards the password again")
        # and the store forgot the counts: the hold needs 3 again
        statuses, _ = self.replay(
            (a, b), OLD, 6, settle=lambda: self.held(d1) and self.held(d2))
        self.assertEqual(cas.attempts(tg.USER, password=OLD), 6)


    def test_guessing_counted_fleet_wide(self):
        """user_failures different wrong passwords in all, spread over
        both, hold the user on both; a password that worked on one of
        them passes on both (its known-good mark is in the store)."""
        redis = Redis(self).start()
        cas, d1, d2 = self.fleet(redis.port, user_failures=4)
        self.wait_store((d1, d2), 1)
        a, b = self.phones(d1, d2)
        # the right password works on d1 only, before anyone guesses
        a.password = tg.RIGHT
        self.assertEqual(a.request()[1].status, 200)
        self.assertTrue(wait_until(
            lambda: b"G" in redis.command("KEYS", "*"), 5, 0.1),
            "no known-good mark reached the store")

        def user_held(d):
            st = d.guard_status() or {}
            return any(h["user_left"] > 0 for h in st.get("holds", []))
        for i in range(4):
            p = (a, b)[i % 2]
            p.password = "guess-%d" % i
            self.assertEqual(p.request()[1].status, 401)
            wait_until(lambda: user_held(d1) and user_held(d2), 1.0, 0.05)
        self.assertTrue(user_held(d1) and user_held(d2),
                        (self.guard_of(d1), self.guard_of(d2)))
        for i, p in enumerate((a, b)):
            p.password = "guess-more-%d" % i
            self.assertEqual(p.request()[1].status, 401)
        self.assertEqual(cas.attempts(tg.USER, ok=False), 4,
                         "more than user_failures guesses reached the CAS")
        # d2 never saw the right password work, and lets it through
        b.password = tg.RIGHT
        statuses = []
        self.assertTrue(wait_until(
            lambda: statuses.append(b.request()[1].status) or
            statuses[-1] == 200, 5, 0.2),
            "the owner's password is refused on d2: %r" % statuses)
        a.password = tg.RIGHT
        self.assertEqual(a.request()[1].status, 200)

    def test_reload_turns_sharing_off_and_on(self):
        redis = Redis(self).start()
        cas, d1, d2 = self.fleet(redis.port)
        self.wait_store((d1, d2), 1)
        store = d2.guard.pop("store")
        pw = d2.guard.pop("store_password_file")
        d2.write_config()
        d2.reload()
        self.assertNotIn(("easfront_store_up", ()), d2.metrics())
        # d2 counts alone: d1's hold does not reach it
        a, b = self.phones(d1, d2)
        self.replay((a,), OLD, 3)
        self.assertTrue(wait_until(lambda: self.held(d1), 5, 0.1))
        time.sleep(1)
        self.assertFalse(self.held(d2), self.guard_of(d2))
        # sharing again after a reload: it learns the hold that exists
        d2.guard.update(store=store, store_password_file=pw)
        d2.write_config()
        d2.reload()
        self.wait_store((d2,), 1)
        self.assertTrue(wait_until(lambda: self.held(d2), 5, 0.1),
                        self.guard_of(d2))
        self.assertEqual(b.request()[1].status, 401)
        self.assertEqual(cas.attempts(tg.USER, password=OLD), 3)


# A device's fleet budget in the throttle tests, and the pace of the device
# that alternates between the front ends: each front end shares its tally
# at least every 250 ms, so within one second of slack at most PACE more
# requests pass than the budget; without sharing, 2 x BUDGET would.
BUDGET = 8
PACE = 5  # requests a second
THROTTLE = {"device": {"requests": BUDGET, "per": 120},
            "user": {"requests": 10000, "per": 60}, "retry_after": 7}


def inside_window(per, need):
    """Waits, when need seconds would cross into the next of the fleet
    throttle's fixed windows of per seconds (on the wall clock), for that
    window to begin: a test that counts a window's budget must see one
    window only."""
    left = per - time.time() % per
    if left < need:
        time.sleep(left + 0.5)


class SharedThrottle(FleetCase):

    def alternate(self, phones, n):
        """n Syncs alternately through phones at PACE a second; returns
        the statuses and the slowest answer's time."""
        statuses, slowest = [], 0.0
        for i in range(n):
            t0 = time.monotonic()
            _, resp = phones[i % len(phones)].request("Sync")
            slowest = max(slowest, time.monotonic() - t0)
            statuses.append(resp.status)
            if resp.status == 503:
                self.assertEqual(resp.header("X-MS-ASThrottle"),
                                 "CommandFrequency")
                self.assertEqual(resp.header("Retry-After"), "7")
            time.sleep(max(0.0, 1.0 / PACE - (time.monotonic() - t0)))
        return statuses, slowest

    def device_pair(self, d1, d2):
        a = self.phone(d1)
        return a, self.phone(d2, device_id=a.device_id)

    def reached(self, cas, device):
        return len([r for r in cas.client_requests()
                    if device in (r.target or "")])

    def test_device_budget_fleet_wide(self):
        """A device alternating between both front ends is throttled at
        its fleet budget, within a second of slack; both answer 503 for
        the rest of the window; another device of the user, and a front
        end that joins later, go on as before (the joiner learns the
        hold)."""
        inside_window(THROTTLE["device"]["per"], 30)
        redis = Redis(self).start()
        cas, d1, d2 = self.fleet(redis.port, throttle=THROTTLE)
        self.wait_store((d1, d2), 1)
        a, b = self.device_pair(d1, d2)
        statuses, _ = self.alternate((a, b), 4 * BUDGET)
        passed = statuses.count(200)
        self.assertEqual(passed + statuses.count(503), len(statuses),
                         statuses)
        self.assertEqual(self.reached(cas, a.device_id), passed)
        self.assertGreaterEqual(passed, BUDGET, statuses)
        self.assertLessEqual(passed, BUDGET + PACE,
                             "the fleet let %d of the device's requests "
                             "through, its budget is %d: %r"
                             % (passed, BUDGET, statuses))
        # both front ends refuse it now, neither near its own budget
        self.assertEqual(statuses[-2:], [503, 503], statuses)
        for d in (d1, d2):
            reasons = [r["reason"] for r in self.log_of(d, a.device_id,
                                                        2 * BUDGET)]
            self.assertIn("throttled-device", reasons)
        other, other2 = self.device_pair(d1, d2)
        self.assertEqual(self.alternate((other, other2), 4)[0], [200] * 4)
        # Redis has keyed hashes only
        self.assertNotIn(a.device_id.encode(), redis.command("KEYS", "*"))
        # `easfront route` and the status page say the budgets are the
        # fleet's, and that the store is up
        out = eftest.run([d1.bin, "route", "-c", d1.conf_path, tg.USER,
                          "--device-id", a.device_id]).stdout
        self.assertIn("device %d per 120 s" % BUDGET, out)
        self.assertIn("counted fleet-wide through guard.store", out)
        self.assertEqual(self.shown_store(d2)["up"], True)
        d3 = self.joiner()
        c = self.phone(d3, device_id=a.device_id)
        self.assertTrue(wait_until(
            lambda: c.request("Sync")[1].status == 503, 5, 0.3),
            "a front end that joined did not learn the device's hold")

        # An operator lifts the device on d1: every front end lets it
        # through again, and Redis forgets its hold and its counts.
        out = eftest.run([d1.bin, "guard", "-c", d1.conf_path, "clear",
                          "--device-id", a.device_id]).stdout
        self.assertEqual(out, "cleared 0\nrefilled 1 throttle bucket(s)\n")
        def device_keys():
            return [k for k in redis.keys()
                    if k.startswith((b"easfront:t\x00", b"easfront:T"))]
        # the other device's counter stays
        self.assertTrue(wait_until(lambda: len(device_keys()) == 1, 5,
                                   0.1), device_keys())
        for p in (a, b, c):
            self.assertEqual(p.request("Sync")[1].status, 200, p.host)

    def test_store_down_each_limits_alone_then_shares_again(self):
        """Redis stopped: each front end limits the device to its own
        budget (2 x BUDGET in all), no request waits; Redis back: a new
        device is held at the fleet budget again, without a restart."""
        redis = Redis(self).start()
        cas, d1, d2 = self.fleet(redis.port, throttle=THROTTLE)
        self.wait_store((d1, d2), 1)
        redis.stop()
        self.wait_store((d1, d2), 0, timeout=15)
        self.assertEqual(self.shown_store(d1)["up"], False)
        a, b = self.device_pair(d1, d2)
        statuses, slowest = self.alternate((a, b), 3 * BUDGET)
        self.assertEqual(statuses.count(200), 2 * BUDGET, statuses)
        self.assertLess(slowest, STORE_TIMEOUT * 0.9,
                        "a request waited for the store")

        inside_window(THROTTLE["device"]["per"], 15)
        redis.start()
        self.wait_store((d1, d2), 1)
        a, b = self.device_pair(d1, d2)
        statuses, _ = self.alternate((a, b), 3 * BUDGET)
        self.assertLessEqual(statuses.count(200), BUDGET + PACE,
                             "sharing did not resume: %r" % statuses)
        self.assertEqual(statuses[-2:], [503, 503], statuses)

    def outage_spending(self, n):
        """Two front ends whose device budget is BUDGET an hour, with Redis
        stopped, and a device that sends n requests alternately to both;
        returns (redis, cas, d1, d2, phones, statuses)."""
        per = 3600
        throttle = dict(THROTTLE, device={"requests": BUDGET, "per": per})
        # tokens of a window that is over by the catch-up are not told
        inside_window(per, 60)
        redis = Redis(self).start()
        cas, d1, d2 = self.fleet(redis.port, throttle=throttle)
        self.wait_store((d1, d2), 1)
        redis.stop()
        self.wait_store((d1, d2), 0, timeout=15)
        phones = self.device_pair(d1, d2)
        statuses, _ = self.alternate(phones, n)
        return redis, cas, d1, d2, phones, statuses

    def test_tokens_spent_while_down_count_when_back(self):
        """A device that spent its budget on each front end while Redis
        was down (2 x BUDGET in all) is held fleet-wide once Redis is
        back, in the same window: a front end that joins then, and never
        saw the device, refuses its first request."""
        redis, cas, d1, d2, (a, b), statuses = self.outage_spending(
            2 * BUDGET)
        self.assertEqual(statuses, [200] * (2 * BUDGET))
        waiting = ("easfront_guard_throttle_shared_waiting", ())
        self.assertTrue(wait_until(lambda: d1.metrics()[waiting] >= 1, 5,
                                   0.1), d1.metrics()[waiting])

        redis.start()
        self.wait_store((d1, d2), 1)
        self.assertTrue(wait_until(
            lambda: b"easfront:T" in redis.command("KEYS", "*"), 5, 0.2),
            "the device's tokens spent while Redis was down did not hold "
            "it: %r" % redis.command("KEYS", "*"))
        self.assertIn("bucket(s)' tokens", d1.stderr_text())
        self.assertEqual(d1.metrics()[waiting], 0)
        d3 = self.joiner()
        self.assertTrue(wait_until(
            lambda: (d3.guard_status() or {}).get("throttled_keys"), 5,
            0.1), "the joiner never found the hold")
        c = self.phone(d3, device_id=a.device_id)
        _, resp = c.request("Sync")
        self.assertEqual(resp.status, 503)
        self.assertEqual(resp.header("X-MS-ASThrottle"), "CommandFrequency")
        self.assertEqual(self.reached(cas, a.device_id), 2 * BUDGET)

    def lift_while_down(self, *clear_args):
        """A device over its fleet budget during an outage, lifted by an
        operator on d1 (`guard clear` with clear_args, and its device id
        when the last of them is None) before Redis is back: when it is,
        d2 fills the device's bucket too, and the tokens taken before the
        lift do not hold it again: the device has its whole fleet
        budget."""
        redis, cas, d1, d2, (a, b), statuses = self.outage_spending(
            2 * BUDGET + 2)
        self.assertEqual(statuses[-2:], [503, 503], statuses)
        args = [x if x is not None else a.device_id for x in clear_args]
        out = eftest.run([d1.bin, "guard", "-c", d1.conf_path, "clear"] +
                         args).stdout
        self.assertIn("guard.store is down", out)

        redis.start()
        self.wait_store((d1, d2), 1)
        self.assertTrue(wait_until(
            lambda: "bucket(s)' tokens" in d2.stderr_text(), 5, 0.1))
        time.sleep(0.6)  # two flushes: what was told has been answered
        self.assertNotIn(b"easfront:T", redis.command("KEYS", "*"))
        # d2 heard the lift: its bucket is full again, and the tokens it
        # kept from before the lift were not told
        statuses, _ = self.alternate((a, b), BUDGET)
        self.assertEqual(statuses, [200] * BUDGET)

    def test_lift_while_down_is_not_undone_by_older_tokens(self):
        self.lift_while_down("--device-id", None)

    def test_clear_everyone_while_down_is_not_undone_either(self):
        self.lift_while_down()


class StoreOutages(FleetCase):

    def limits_alone(self, cas, d1, d2, password):
        """With the store gone, each front end holds password after its
        own password_failures refusals: 2 x 3 reach the CAS, and no
        request waits for the store."""
        a, b = self.phones(d1, d2)
        statuses, slowest = self.replay((a, b), password, 12)
        self.assertEqual(statuses, [401] * 12)
        self.assertEqual(cas.attempts(tg.USER, password=password), 6)
        self.assertLess(slowest, STORE_TIMEOUT * 0.9,
                        "a request waited for the store")
        # the right password keeps flowing, without delay
        _, slowest = self.replay((a, b), tg.RIGHT, 6)
        self.assertLess(slowest, STORE_TIMEOUT * 0.9)
        return a, b

    def test_redis_stopped_then_back(self):
        redis = Redis(self).start()
        cas, d1, d2 = self.fleet(redis.port)
        self.wait_store((d1, d2), 1)
        redis.stop()
        self.wait_store((d1, d2), 0, timeout=15)
        a, b = self.limits_alone(cas, d1, d2, "Spring-2024!")
        self.assertIn("counting locally", d1.stderr_text())

        redis.start()
        self.wait_store((d1, d2), 1)
        statuses, _ = self.replay(
            (a, b), "Autumn-2023!", 8,
            settle=lambda: self.held(d1, 2) and self.held(d2, 2))
        self.assertEqual(statuses, [401] * 8)
        self.assertEqual(cas.attempts(tg.USER, password="Autumn-2023!"), 3,
                         "sharing did not resume after Redis came back")
        self.assertGreaterEqual(
            d1.metrics()[("easfront_store_reconnects_total", ())], 1)

    def test_what_one_saw_while_down_is_told_when_back(self):
        """Refusals and a clear that a front end saw while Redis was down
        reach the fleet once Redis is back: a stale password held by d2
        alone then is held by d1 too, which never forwards it; a clear
        made on d1 while Redis was down clears d2 when it is back."""
        redis = Redis(self).start()
        cas, d1, d2 = self.fleet(redis.port)
        self.wait_store((d1, d2), 1)
        redis.stop()
        self.wait_store((d1, d2), 0, timeout=15)
        a, b = self.phones(d1, d2)
        statuses, _ = self.replay((b,), OLD, 5)
        self.assertEqual(statuses, [401] * 5)
        self.assertEqual(cas.attempts(tg.USER, password=OLD), 3)
        self.assertTrue(self.held(d2))
        self.assertFalse(self.held(d1))
        waiting = ("easfront_guard_shared_waiting", ())
        self.assertTrue(wait_until(lambda: d2.metrics()[waiting] >= 3, 5,
                                   0.1), d2.metrics()[waiting])

        redis.start()
        self.wait_store((d1, d2), 1)
        self.assertTrue(wait_until(lambda: self.held(d1), 5, 0.1),
                        "d1 never learned what d2 saw while Redis was "
                        "down:\n" + self.guard_of(d1))
        statuses, _ = self.replay((a,), OLD, 4)
        self.assertEqual(statuses, [401] * 4)
        self.assertEqual(cas.attempts(tg.USER, password=OLD), 3,
                         "d1 forwarded a password the fleet had seen "
                         "refused password_failures times")
        self.assertIn("what came while it was away: 3 refusal(s)",
                      d2.stderr_text())
        self.assertEqual(d2.metrics()[waiting], 0)

        # Now the other way round: held on both, Redis down, cleared on
        # d1 alone; d2 hears of it when Redis is back.
        redis.stop()
        self.wait_store((d1, d2), 0, timeout=15)
        out = eftest.run([d1.bin, "guard", "-c", d1.conf_path, "clear",
                          tg.USER]).stdout
        self.assertEqual(out, "cleared 1\nguard.store is down: the other "
                         "front ends clear when it is back\n")
        self.assertFalse(self.held(d1))
        self.assertTrue(self.held(d2))
        redis.start()
        self.wait_store((d1, d2), 1)
        self.assertTrue(wait_until(lambda: not self.held(d2), 5, 0.1),
                        "a clear made while Redis was down never reached "
                        "d2:\n" + self.guard_of(d2))

    def test_redis_that_never_answers(self):
        mute = Mute(self)
        cas, d1, d2 = self.fleet(mute.port)
        self.wait_store((d1, d2), 0)
        self.limits_alone(cas, d1, d2, "Spring-2024!")
        self.assertTrue(wait_until(
            lambda: d1.metrics().get(("easfront_store_timeouts_total", ()),
                                     0) >= 1, 10, 0.2))


if __name__ == "__main__":
    unittest.main()
