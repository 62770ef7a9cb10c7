"""Large bodies are streamed with bounded memory: 100 MiB up and down, with
the daemon's peak resident memory (VmHWM) growth printed and bounded, also
when one side stops reading for a while (back-pressure)."""

import hashlib
import json
import os
import time
import unittest

import eftest
import standin_cas as sc
from eftest import eas_request

MIB = 1 << 20
SIZE = 100 * MIB
# Peak memory growth allowed over the warmed-up idle daemon. A sanitizer
# build may need more: EFTEST_HWM_BOUND_MIB overrides.
BOUND_MIB = float(os.environ.get("EFTEST_HWM_BOUND_MIB", "24"))
TIMEOUTS = {"client_body": 30, "upstream_response": 60, "idle": 60}


class Bodies(eftest.EfTestCase):

    def daemon(self, cas):
        d = self.start_daemon(cas, timeouts=TIMEOUTS)
        # warm up both directions so fixed-size buffers count as idle
        for _ in range(2):
            r = d.roundtrip(eas_request("SendMail", body=os.urandom(MIB)).raw)
            self.assertEqual(r.status, 200)
            r = d.roundtrip(eas_request(
                "GetAttachment", AttachmentName="bytes-%d" % MIB).raw)
            self.assertEqual(len(r.body), MIB)
        time.sleep(0.2)
        return d, d.hwm_kib()

    def check_memory(self, d, idle_hwm, what):
        hwm = d.hwm_kib()
        growth = (hwm - idle_hwm) / 1024.0
        print("\n%s: VmHWM idle %.1f MiB, after %.1f MiB, growth %.1f MiB "
              "(bound %.0f MiB), VmRSS now %.1f MiB" % (
                  what, idle_hwm / 1024.0, hwm / 1024.0, growth, BOUND_MIB,
                  d.rss_kib() / 1024.0))
        self.assertLess(growth, BOUND_MIB, "%s is not streamed with bounded "
                        "memory" % what)

    def upload(self, d, cas, chunked=False, size=SIZE):
        c = d.connect(timeout=60)
        self.addCleanup(c.close)
        if chunked:
            req = eas_request("SendMail",
                              extra=[("Transfer-Encoding", "chunked")])
        else:
            req = eas_request("SendMail", content_length=size)
        c.send(req.head)
        t0 = time.monotonic()
        for i, piece in enumerate(sc.pattern_chunks(size)):
            if chunked:
                # chunks of 1, 17, 4093 bytes and the rest, one send per piece
                out = bytearray()
                off = 0
                for n in ((1, 17, 4093, len(piece)) if i % 2 else
                          (len(piece),)):
                    part = piece[off:off + n]
                    off += len(part)
                    if part:
                        out += b"%x\r\n" % len(part) + part + b"\r\n"
                c.send(bytes(out))
            else:
                c.send(piece)
        if chunked:
            c.send(b"0\r\n\r\n")
        r = c.read_response(timeout=60)
        took = time.monotonic() - t0
        print("\nupload of %d MiB took %.1f s" % (size // MIB, took))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Test-Body-Length"), str(size))
        self.assertEqual(r.header("X-Test-Body-Sha256"),
                         sc.pattern_sha256(size))
        rec = self.one_cas_request(cas, req.mark)
        self.assertTrue(rec.complete)
        return rec

    def download(self, d, pause_after=None, pause=0.0):
        c = d.connect(timeout=60)
        self.addCleanup(c.close)
        c.send(eas_request("GetAttachment",
                           AttachmentName="bytes-%d" % SIZE).raw)
        t0 = time.monotonic()
        r = c.read_head(timeout=30)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Length"), str(SIZE))
        h = hashlib.sha256()
        got = [0, False]

        def sink(data):
            h.update(data)
            got[0] += len(data)
            if pause_after is not None and not got[1] and \
                    got[0] >= pause_after:
                got[1] = True
                time.sleep(pause)
        c.read_body(r, timeout=120, sink=sink)
        print("\ndownload of %d MiB took %.1f s" % (
            SIZE // MIB, time.monotonic() - t0))
        self.assertEqual(got[0], SIZE)
        self.assertEqual(h.hexdigest(), sc.pattern_sha256(SIZE))

    def test_upload_100mib(self):
        cas = self.start_cas()
        d, idle = self.daemon(cas)
        self.upload(d, cas)
        self.check_memory(d, idle, "100 MiB upload")

    def test_upload_chunked_32mib(self):
        cas = self.start_cas()
        d, idle = self.daemon(cas)
        self.upload(d, cas, chunked=True, size=32 * MIB)
        self.check_memory(d, idle, "32 MiB chunked upload")

    def test_download_100mib(self):
        cas = self.start_cas()
        d, idle = self.daemon(cas)
        self.download(d)
        self.check_memory(d, idle, "100 MiB download")

    def test_download_slow_reader(self):
        cas = self.start_cas()
        d, idle = self.daemon(cas)
        self.download(d, pause_after=MIB, pause=3.0)
        self.check_memory(d, idle, "100 MiB download, client pausing 3 s")

    def test_download_client_stops_reading_is_cut(self):
        """A client that stops reading is cut once the daemon's writes to it
        have made no progress for client_body seconds (termination cD: the
        client's timeout, in the data phase), so
        a stalled phone does not hold a connection to its CAS for ever."""
        cas = self.start_cas()
        d = self.start_daemon(cas, timeouts={"client_body": 2,
                                             "upstream_response": 60,
                                             "idle": 60})
        c = d.connect(timeout=30)
        self.addCleanup(c.close)
        c.send(eas_request("GetAttachment",
                           AttachmentName="bytes-%d" % SIZE).raw)
        r = c.read_head(timeout=30)
        self.assertEqual(r.status, 200)
        time.sleep(6)  # read nothing: the daemon's writes back up
        t0 = time.monotonic()
        got = c.read_until_close(timeout=60)
        print("\nstalled client: %d bytes of %d before the cut" % (
            len(got), SIZE))
        self.assertLess(len(got), SIZE, "a stalled client was never cut")
        self.assertLess(time.monotonic() - t0, 30)
        terms = [json.loads(line).get("term")
                 for line in d.access_log_lines() if line.startswith("{")]
        self.assertIn("cD", terms)

    def test_upload_slow_cas(self):
        cas = self.start_cas(read_pause=3.0)
        d, idle = self.daemon(cas)
        self.upload(d, cas)
        self.check_memory(d, idle, "100 MiB upload, CAS pausing 3 s")

    def test_slow_upload_longer_than_upstream_response(self):
        """upstream_response counts from the end of the request: a client
        uploading for longer than that is not cut with a 504."""
        cas = self.start_cas()
        d = self.start_daemon(cas, timeouts={"upstream_response": 2,
                                             "client_body": 10})
        c = d.connect(timeout=30)
        self.addCleanup(c.close)
        size = 2 * MIB
        req = eas_request("SendMail", content_length=size)
        c.send(req.head)
        t0 = time.monotonic()
        for piece in sc.pattern_chunks(size, block=MIB // 8):
            c.send(piece)
            time.sleep(0.5)                           # 16 pieces: 8 s
        r = c.read_response(timeout=30)
        print("\nslow 2 MiB upload over %.1f s: %s" % (
            time.monotonic() - t0, r.status_line))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("X-Test-Body-Sha256"),
                         sc.pattern_sha256(size))

    def test_upload_is_streamed(self):
        """Body bytes reach the CAS before the client has sent them all."""
        cas = self.start_cas()
        d = self.start_daemon(cas, timeouts=TIMEOUTS)
        c = d.connect(timeout=30)
        self.addCleanup(c.close)
        req = eas_request("SendMail", content_length=10 * MIB)
        chunks = list(sc.pattern_chunks(10 * MIB))
        c.send(req.head)
        for piece in chunks[:32]:                     # 2 MiB
            c.send(piece)
        seen = cas.wait_for(lambda rs: [r for r in rs if r.header(
            "X-Test-Mark") == req.mark and r.body_len >= MIB], 5)
        got = cas.find(req.mark)
        self.assertTrue(seen, "after 2 MiB of a 10 MiB upload the CAS had %s "
                        "body bytes" % [r.body_len for r in got])
        for piece in chunks[32:]:
            c.send(piece)
        r = c.read_response(timeout=30)
        self.assertEqual(r.header("X-Test-Body-Sha256"),
                         sc.pattern_sha256(10 * MIB))


if __name__ == "__main__":
    unittest.main()
