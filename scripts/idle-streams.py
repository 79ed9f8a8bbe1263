#!/usr/bin/env python3
"""Memory per idle open SSE stream, for one or more ringway builds side by side.

Each build runs with one worker in front of a mock-llm instance whose first
token never comes (the stream stays open after its head and role chunk).
N streams are opened through it in batches, each batch established end to
end (the mock counts it open) before the next; the gateway's RSS before and
with the streams open, divided by the streams the mock saw, is the figure.
Builds are measured one after another in rounds (A B A B ...), so drift on
a shared machine hits each alike.

    scripts/idle-streams.py [-n 4000] [--rounds 2] target/release/ringway /tmp/ringway-old

Used for the step table in results/idle-stream-memory.md; `loadgen suite`
runs the same measurement (10,000 streams, or what the open-file limit
allows) for results/README.md.
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOCK_PORT = 18909
GW_PORT = 19082

CONFIG = """gateway:
  listen: ["127.0.0.1:{gw}"]
  workers: 1
  admin: {{enabled: false}}
  metrics: {{enabled: false}}
services:
  - name: bench
    routes:
      - name: idle
        uris: [/idle/v1/chat/completions]
        plugins:
          ai-proxy-multi:
            timeout: 600000
            instances:
              - name: slow
                provider: openai-compatible
                weight: 1
                auth: {{header: {{Authorization: "Bearer k"}}}}
                override: {{endpoint: "http://127.0.0.1:{mock}/v1/chat/completions"}}
"""


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_streams_at_mock():
    with urllib.request.urlopen(f"http://127.0.0.1:{MOCK_PORT}/_stats") as r:
        s = json.load(r)
    inst = s["instances"][0] if "instances" in s else s
    return inst["open_streams"]


def wait_port(port, deadline=10.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def measure(binary, n, config_path):
    body = json.dumps({
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": " ".join(["word"] * 16)}],
    })
    req = (
        "POST /idle/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    gw = subprocess.Popen([binary, "-c", config_path],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    try:
        wait_port(GW_PORT)
        # A few streams first, so per-thread allocator and ring setup is in
        # the "before" figure.
        for _ in range(50):
            s = socket.create_connection(("127.0.0.1", GW_PORT))
            s.sendall(req)
            socks.append(s)
        time.sleep(0.5)
        before = rss_kib(gw.pid)
        base = open_streams_at_mock()
        while len(socks) < n + 50:
            for _ in range(min(250, n + 50 - len(socks))):
                s = socket.create_connection(("127.0.0.1", GW_PORT))
                s.sendall(req)
                socks.append(s)
            end = time.time() + 10
            while open_streams_at_mock() < base + len(socks) - 50 and time.time() < end:
                time.sleep(0.01)
        time.sleep(0.3)
        during = rss_kib(gw.pid)
        opened = open_streams_at_mock() - base
        return opened, before, during
    finally:
        for s in socks:
            s.close()
        gw.terminate()
        gw.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("-n", type=int, default=4000, help="streams per build")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.n + 512 > hard:
        sys.exit(f"open-file limit {hard} is too low for {args.n} streams")
    mock_bin = os.path.join(ROOT, "target/release/mock-llm")
    mock = subprocess.Popen(
        [mock_bin, "--listen", f"127.0.0.1:{MOCK_PORT}", "--name", "slow",
         "--ttft-ms", "600000", "--tokens", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(MOCK_PORT)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(CONFIG.format(gw=GW_PORT, mock=MOCK_PORT))
            config_path = f.name
        print(f"{'build':40} {'streams':>8} {'RSS before':>11} {'RSS during':>11} {'KiB/stream':>11}")
        for _ in range(args.rounds):
            for b in args.binaries:
                opened, before, during = measure(b, args.n, config_path)
                per = (during - before) / max(opened, 1)
                print(f"{b:40} {opened:8} {before:9} K {during:9} K {per:11.2f}")
                # Let the mock see the streams close before the next build.
                end = time.time() + 10
                while open_streams_at_mock() > 0 and time.time() < end:
                    time.sleep(0.05)
        os.unlink(config_path)
    finally:
        mock.terminate()
        mock.wait()


if __name__ == "__main__":
    main()
