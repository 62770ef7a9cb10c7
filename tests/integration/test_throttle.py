"""Throttling in EAS terms (issue 15 item 1, DESIGN.md "Edge protection"):
token buckets per DeviceId, per user and per client address, answered by
easfront itself with 503 + X-MS-ASThrottle + Retry-After, the way Exchange
throttles (MS-ASHTTP 3.1.5.2.3); the CAS never sees the excess.

Each case runs the real daemon over TLS in front of the stand-in CAS and
counts what reached the CAS, not only what the phone got."""

import json
import time
import unittest

import eftest
import standin_cas as sc
from test_guard import GuardCase, RIGHT, USER, new_device

BOB = "bob@contoso.test"


def throttle(device=None, user=None, client=None, retry_after=1):
    t = {"retry_after": retry_after}
    for k, v in (("device", device), ("user", user), ("client", client)):
        if v is not None:
            t[k] = {"requests": v[0], "per": v[1]}
    return {"throttle": t}


class ThrottleCase(GuardCase):

    def assert_throttled(self, cas, req, resp, retry_after):
        """resp is easfront's own 503 in Exchange's terms, and req never
        reached the CAS."""
        self.assertEqual(resp.status, 503, resp.status_line)
        self.assertEqual(resp.header("X-MS-ASThrottle"), "CommandFrequency")
        self.assertEqual(resp.header("Retry-After"), str(retry_after))
        self.assertIsNone(resp.header("X-FEServer"),
                          "a CAS answer where easfront should answer")
        self.assertEqual(cas.find(req.mark), [],
                         "a throttled request reached the CAS")

    def reached(self, cas, device):
        return [r for r in cas.client_requests()
                if device in (r.target or "")]

    def reasons(self, d, device, n):
        return [r["reason"] for r in self.log_of(d, device, n)]


class DeviceBudget(ThrottleCase):

    def test_tight_loop(self):
        """A device in a tight loop: its first 5 requests (the burst)
        reach the CAS, the rest get the 503 but for a token the bucket
        gives back every 2 s; another device of the same user and another
        user pass throughout; after Retry-After (2 s, the time a token
        takes) it passes again."""
        cas, d = self.world(throttle(device=(5, 10), user=(1000, 60),
                                     retry_after=2),
                            passwords={USER: RIGHT, BOB: RIGHT})
        loop = self.phone(d)
        other = self.phone(d)
        bob = self.phone(d, user=BOB)
        statuses = []
        for i in range(30):
            req, resp = loop.request("Sync")
            statuses.append(resp.status)
            if resp.status == 503:
                self.assert_throttled(cas, req, resp, 2)
            # within their own burst: 3 requests each
            if i % 10 == 0:
                self.assertEqual(other.request("Sync")[1].status, 200)
                self.assertEqual(bob.request("Sync")[1].status, 200)
        self.assertEqual(statuses[:5], [200] * 5)
        # A loaded machine may take seconds over the loop: a token or two
        # may come back meanwhile, never more.
        self.assertGreaterEqual(statuses.count(503), 20, statuses)
        self.assertEqual(len(self.reached(cas, loop.device_id)),
                         statuses.count(200))
        recs = self.reasons(d, loop.device_id, 30)
        self.assertEqual(recs.count("throttled-device"),
                         statuses.count(503))
        time.sleep(2.1)
        self.assertEqual(loop.request("Sync")[1].status, 200)

    def test_off_without_device_id(self):
        """A request without a DeviceId (OPTIONS, Autodiscover) has no
        device bucket: it is never throttled as a device."""
        cas, d = self.world(throttle(device=(1, 60), user=(0, 60)))
        p = self.phone(d)
        for _ in range(5):
            req = eftest.http_request(
                "OPTIONS", "/Microsoft-Server-ActiveSync",
                [("Authorization", eftest.basic(USER, RIGHT)),
                 ("User-Agent", "Apple-iPhone9C1/1602.92")])
            self.assertEqual(p.send(req).status, 200)


class UserAndClientBudgets(ThrottleCase):

    def test_user_budget_across_devices(self):
        """The user's bucket is shared by every device of the user: the
        4th request of three devices is refused throttled-user, while
        another user passes."""
        cas, d = self.world(throttle(device=(100, 60), user=(3, 60)),
                            passwords={USER: RIGHT, BOB: RIGHT})
        phones = [self.phone(d) for _ in range(3)]
        got = [p.request("Sync")[1].status for p in phones]
        self.assertEqual(got, [200, 200, 200])
        req, resp = phones[0].request("Sync")
        self.assert_throttled(cas, req, resp, 1)
        self.assertEqual(self.reasons(d, phones[0].device_id, 2)[-1],
                         "throttled-user")
        self.assertEqual(self.phone(d, user=BOB).request("Sync")[1].status,
                         200)

    def test_client_budget_off_by_default(self):
        """Without guard.throttle.client, many users behind one address
        (every test client is 127.0.0.1) are not limited together; with
        it, they are."""
        users = {"u%d@contoso.test" % i: RIGHT for i in range(6)}
        cas, d = self.world(throttle(device=(100, 60), user=(100, 60)),
                            passwords=users)
        for u in users:
            self.assertEqual(self.phone(d, user=u).request("Sync")[1].status,
                             200)
        cas2, d2 = self.world(throttle(device=(100, 60), user=(100, 60),
                                       client=(4, 60)),
                              passwords=users)
        got = []
        for u in users:
            p = self.phone(d2, user=u)
            req, resp = p.request("Sync")
            got.append(resp.status)
            if resp.status == 503:
                self.assert_throttled(cas2, req, resp, 1)
                self.assertEqual(self.reasons(d2, p.device_id, 1)[-1],
                                 "throttled-client")
        self.assertEqual(got, [200] * 4 + [503] * 2)


class CasThrottlePassesThrough(ThrottleCase):

    def test_cas_503_byte_for_byte(self):
        """The CAS's own 503 + X-MS-ASThrottle still reaches the phone
        as the CAS wrote it, with the throttle on."""
        cas, d = self.world(throttle(device=(100, 60)),
                            passwords={"throttled@contoso.test": RIGHT})
        p = self.phone(d, user="throttled@contoso.test")
        req, resp = p.request("Sync")
        self.assertEqual(resp.status, 503)
        self.assertEqual(resp.header("X-FEServer"), cas.fe)
        self.assertIsNotNone(resp.header("X-MS-ASThrottle"))
        self.assertEqual(len(cas.find(req.mark)), 1)


class LongPolls(ThrottleCase):

    def held_ping(self, d, device_id, heartbeat=60):
        """A Ping of device_id held by the CAS over a new connection:
        (connection, request)."""
        conn = d.connect()
        self.addCleanup(conn.close)
        req = eftest.http_request(
            "POST", eftest.eas_target("Ping", user=USER,
                                      device_id=device_id),
            [("Authorization", eftest.basic(USER, RIGHT)),
             ("MS-ASProtocolVersion", "14.1"),
             ("Content-Type", "application/vnd.ms-sync.wbxml")],
            sc.ping_request(heartbeat))
        conn.send(req.raw)
        return conn, req

    def test_third_ping_ends_the_oldest(self):
        """long_polls_per_device 2: a device's third held Ping ends its
        first: the CAS sees that Ping's connection closed, its client gets
        200 with Ping Status 1 (re-issue) from easfront; the second and
        third stay held; another device's Pings are untouched."""
        cas, d = self.world(throttle(device=(100, 60)))
        dev, other = new_device(), new_device()
        conns = []
        for i in range(2):
            conns.append(self.held_ping(d, dev))
            self.assertTrue(cas.wait_for(
                lambda rs, i=i: len([r for r in rs if dev in r.target])
                >= i + 1), "Ping %d did not reach the CAS" % (i + 1))
        bystander = self.held_ping(d, other)
        first = cas.wait_for(lambda rs: [r for r in rs
                                         if r.header("X-Test-Mark")
                                         == conns[0][1].mark])[0]
        conns.append(self.held_ping(d, dev))
        resp = conns[0][0].read_response(timeout=10)
        self.assertEqual(resp.status, 200)
        self.assertIsNone(resp.header("X-FEServer"), "not easfront's")
        self.assertEqual(sc.wbxml_find_text(sc.wbxml_decode(bytes(resp.body)),
                                            sc.PAGE_PING, sc.PING_STATUS),
                         "1")
        self.assertTrue(eftest.wait_until(
            lambda: first.conn_id in cas.closed, 5),
            "the CAS connection of the superseded Ping stayed open")
        # the others are still held: nothing came back on them
        for conn, _ in conns[1:] + [bystander]:
            with self.assertRaises(Exception):
                conn.read_head(timeout=0.5)
        self.assertTrue(eftest.wait_until(
            lambda: [r for r in d.records()
                     if r.get("reason") == "superseded-long-poll"], 5))


class Route(ThrottleCase):

    def test_route_shows_budgets(self):
        """`easfront route` (asking the running easfront) names the
        budgets a request would spend a token of."""
        cas, d = self.world(throttle(device=(5, 2), user=(1000, 60)))
        out = eftest.run([d.bin, "route", "-c", d.conf_path, USER,
                          "--device-id", "PHONE1"]).stdout
        self.assertIn("guard:    throttle: device 5 per 2 s, user 1000 per "
                      "60 s, client off; an empty bucket gets 503 "
                      "(Retry-After 1); counted by this front end "
                      "alone\n", out)
        out = eftest.run([d.bin, "route", "-c", d.conf_path, USER]).stdout
        self.assertIn("device none (the request has no device)", out)


class Metrics(ThrottleCase):

    def test_answers_counted(self):
        """easfront_guard_answers_total counts the throttle's answers by
        reason, and the throttled keys show."""
        cas, d = self.world(throttle(device=(2, 60)))
        p = self.phone(d)
        for _ in range(5):
            p.request("Sync")
        m = d.metrics()
        self.assertEqual(m[("easfront_guard_answers_total",
                            (("reason", "throttled-device"),))], 3)
        # each scrape counts a sixteenth of the table anew
        self.assertTrue(eftest.wait_until(
            lambda: d.metrics()[("easfront_guard_throttled_keys", ())] >= 1,
            5), "the throttled device is not counted")
        self.assertEqual(d.guard_status()["throttle"], True)


class OperatorLift(ThrottleCase):

    def guard_clear(self, d, *args):
        return eftest.run([d.bin, "guard", "-c", d.conf_path, "clear"] +
                          list(args)).stdout

    def test_clear_fills_buckets_again(self):
        """`easfront guard clear --device-id ID` fills a throttled
        device's bucket again, `guard clear USER` the user's, `guard
        clear` everyone's: each passes at once, long before Retry-After,
        while the buckets not named stay as they were; a clear whose query
        is misspelt is refused, not taken for everyone."""
        cas, d = self.world(throttle(device=(2, 600), user=(4, 600),
                                     retry_after=300),
                            passwords={USER: RIGHT, BOB: RIGHT})
        loop, bob = self.phone(d), self.phone(d, user=BOB)
        for p in (loop, bob):
            self.assertEqual([p.request("Sync")[1].status
                              for _ in range(3)], [200, 200, 503])

        # `easfront route` says which bucket is empty, and for how long
        route = [d.bin, "route", "-c", d.conf_path, USER, "--device-id",
                 loop.device_id]
        self.assertRegex(eftest.run(route).stdout,
                         r"device 2 per 600 s \(empty now: (299|300) s to "
                         r"its next token\), user 4 per 600 s, client off")
        out = self.guard_clear(d, "--device-id", loop.device_id)
        self.assertEqual(out, "cleared 0\nrefilled 1 throttle bucket(s)\n")
        self.assertIn("device 2 per 600 s, user 4 per 600 s, client off",
                      eftest.run(route).stdout)
        self.assertEqual(loop.request("Sync")[1].status, 200)
        self.assertEqual(bob.request("Sync")[1].status, 503)
        # alice's 4th token; her 5th is refused by her user's bucket
        second = self.phone(d)
        self.assertEqual(second.request("Sync")[1].status, 200)
        req, resp = second.request("Sync")
        self.assert_throttled(cas, req, resp, 300)
        self.assertEqual(self.reasons(d, second.device_id, 2)[-1],
                         "throttled-user")
        self.assertIn("refilled 1 throttle bucket(s)\n",
                      self.guard_clear(d, USER))
        self.assertEqual(second.request("Sync")[1].status, 200)
        self.assertEqual(bob.request("Sync")[1].status, 503)

        for bad in ("?usr=" + USER, "?user=" + USER + "&devce=x",
                    "?device=", "?device=a%20b"):
            code, text = d.admin("POST", "/guard/clear" + bad)
            self.assertEqual(code, 400, (bad, text))
        self.assertEqual(bob.request("Sync")[1].status, 503)
        code, text = d.admin("POST", "/guard/clear")
        self.assertEqual(code, 200, text)
        self.assertGreaterEqual(json.loads(text)["refilled"], 1, text)
        self.assertEqual(bob.request("Sync")[1].status, 200)
        log = d.stderr_text()
        self.assertIn("guard: cleared device %s by the operator (0 user(s), "
                      "1 throttle bucket(s) refilled)" % loop.device_id, log)
        self.assertIn("guard: cleared everyone by the operator", log)


if __name__ == "__main__":
    unittest.main()
