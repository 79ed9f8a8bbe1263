"""Helpers the side-by-side comparisons share: the Debian tools they
install, waiting for a port, a process's CPU time, wrk's units, medians."""
import os, re, shutil, socket, subprocess, time
from pathlib import Path


def ensure_tools():
    """Installs nginx-light and wrk from Debian if either is missing."""
    missing = [p for p, b in (("nginx-light", "nginx"), ("wrk", "wrk")) if not shutil.which(b) and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def nginx_bin():
    return shutil.which("nginx") or "/usr/sbin/nginx"


def wait_port(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def cpu_ticks(pid):
    """utime + stime of `pid`, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def to_us(v):
    """A wrk duration (`84.00us`, `1.2ms`, `1s`) in microseconds."""
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1_000_000}[m.group(2)]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
