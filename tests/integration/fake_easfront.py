#!/usr/bin/python3
"""A fake `easfront run -c FILE` for the harness self-test (test_standin.py,
class Harness): it serves the healthcheck over TLS on the config's listen
address and misbehaves as FAKE_EASFRONT_MODE says, so that the checks the
Daemon class makes at cleanup are shown to fail when they should.

Modes: ok, asan (sanitizer report on exit), fatal (a fatal log line),
rc3 (exit 3 on SIGTERM), ignore_term (ignores SIGTERM), exit_early (exits
1 s after start)."""

import os
import re
import signal
import socket
import ssl
import sys
import threading
import time


def main():
    mode = os.environ.get("FAKE_EASFRONT_MODE", "ok")

    # handlers first: SIGTERM may come as soon as the port accepts
    def term(signo, frame):
        if mode == "asan":
            sys.stderr.write("=" * 50 + "\n==1==ERROR: AddressSanitizer: "
                             "heap-use-after-free on address "
                             "0x602000000010\n")
        elif mode == "fatal":
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            sys.stderr.write("%s error cannot bind: Address in use\n" % now)
        sys.stderr.flush()
        os._exit(3 if mode == "rc3" else 0)

    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, term)
    conf = sys.argv[sys.argv.index("-c") + 1]
    with open(conf) as f:
        text = f.read()
    port = int(re.search(r'address: "127\.0\.0\.1:(\d+)"', text).group(1))
    cert = re.search(r'- cert: "([^"]+)"', text).group(1)
    key = re.search(r'  key: "([^"]+)"', text).group(1)
    pid_file = re.search(r'pid_file: "([^"]+)"', text).group(1)
    with open(pid_file, "w") as f:
        f.write("%d\n" % os.getpid())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    sys.stderr.write("%s info fake easfront serving (%s)\n" % (stamp, mode))
    sys.stderr.flush()

    def serve(s):
        try:
            t = ctx.wrap_socket(s, server_side=True)
            t.recv(65536)
            t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n"
                      b"Connection: close\r\n\r\n200 OK<br/>fake")
            t.close()
        except (OSError, ssl.SSLError):
            s.close()

    def accept():
        while True:
            try:
                s, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(s,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()

    if mode == "exit_early":
        time.sleep(1)
        os._exit(1)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
