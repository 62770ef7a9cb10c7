"""Long polls: a Ping held by the CAS for its whole heartbeat comes back
intact, and the daemon keeps serving other connections meanwhile."""

import threading
import time
import unittest

import eftest
import standin_cas as sc
from eftest import assert_passthrough, eas_request, options_request

HEARTBEAT = 60


class LongPoll(eftest.EfTestCase):

    def test_ping_held_60s_while_others_served(self):
        cas = self.start_cas()
        # upstream_response and idle are far below the heartbeat: only
        # long_poll may govern a held Ping.
        d = self.start_daemon(cas, workers=1, timeouts={
            "upstream_response": 10, "idle": 5, "client_body": 5,
            "long_poll": HEARTBEAT + 60})
        ping = eas_request("Ping", body=sc.ping_request(HEARTBEAT))
        result = {}

        def do_ping():
            c = d.connect(timeout=HEARTBEAT + 30)
            try:
                t0 = time.monotonic()
                c.send(ping.raw)
                result["resp"] = c.read_response(timeout=HEARTBEAT + 30)
                result["took"] = time.monotonic() - t0
            except Exception as e:            # reported below
                result["error"] = e
            finally:
                c.close()

        t = threading.Thread(target=do_ping, daemon=True)
        t.start()
        self.assertTrue(cas.wait_for(lambda rs: [r for r in rs if r.header(
            "X-Test-Mark") == ping.mark and r.complete], 5),
            "the Ping never reached the CAS")
        served = 0
        slowest = 0.0
        while t.is_alive():
            for req in (eas_request("FolderSync"), options_request(),
                        eas_request("Sync", body=b"\x03\x01j\x00")):
                t0 = time.monotonic()
                r = d.roundtrip(req.raw, timeout=10)
                took = time.monotonic() - t0
                slowest = max(slowest, took)
                self.assertEqual(r.status, 200, "a request during the hold "
                                 "failed: %s" % r.status_line)
                self.assertLess(took, 2.0, "a request during the hold took "
                                "%.1f s" % took)
                served += 1
            t.join(4.0)
        self.assertNotIn("error", result, "the held Ping failed: %r"
                         % result.get("error"))
        resp = result["resp"]
        print("\nPing came back after %.1f s: %s; %d other requests served "
              "meanwhile, slowest %.2f s" % (result["took"], resp.status_line,
                                             served, slowest))
        self.assertEqual(resp.status, 200)
        self.assertGreaterEqual(result["took"], HEARTBEAT - 1)
        self.assertLess(result["took"], HEARTBEAT + 15)
        self.assertEqual(resp.header("Content-Type"), sc.WBXML_CT)
        self.assertEqual(resp.body, sc.ping_response(1))
        self.assertEqual(sc.wbxml_find_text(sc.wbxml_decode(resp.body),
                                            sc.PAGE_PING, sc.PING_STATUS), "1")
        assert_passthrough(self, resp, self.one_cas_request(cas, ping.mark))
        self.assertGreaterEqual(served, 30)


if __name__ == "__main__":
    unittest.main()
