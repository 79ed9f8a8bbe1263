#!/usr/bin/env python3
"""ringway vs nginx `proxy_pass` (upstream keepalive), side by side.

Both proxies sit in front of the same static upstream (an nginx `return 200`
with a chat-completion-sized JSON body). The proxy under test is pinned to
cpu0; the upstream and wrk share cpu1. Targets are measured in interleaved
rounds (nginx, ringway, nginx, ringway, ...) so machine noise hits both
alike. Reported per target: requests/s, p50/p99 latency (wrk --latency) and
proxy CPU time per request (from /proc/PID/stat), then ringway/nginx ratios.

Writes results/engine-vs-nginx.{json,md}. Installs nginx-light and wrk from
Debian if missing. Usage: benches/compare/engine_vs_nginx.py [--rounds 5]
[--duration 10] [--connections 32]
"""
import argparse, json, os, platform, re, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path

from common import cpu_ticks, ensure_tools, median, nginx_bin, to_us, wait_port

ROOT = Path(__file__).resolve().parents[2]
BODY = '{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4","choices":[{"index":0,"message":{"role":"assistant","content":"1+1 equals 2."},"finish_reason":"stop"}],"usage":{"prompt_tokens":23,"completion_tokens":8,"total_tokens":31}}'




def start(cmd, cpu, **kw):
    return subprocess.Popen(["taskset", "-c", str(cpu), *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kw)





def run_wrk(port, duration, conns):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", f"http://127.0.0.1:{port}/v1/chat/completions"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {p: to_us(re.search(rf"\s{p}%\s+(\S+)", out).group(1)) for p in ("50", "99")}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "requests": total, "p50_us": lat["50"], "p99_us": lat["99"], "non_2xx": int(errors.group(1)) if errors else 0}



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    ensure_tools()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "ringway"], cwd=ROOT, check=True)
    tmp = Path(tempfile.mkdtemp(prefix="ringway-bench-"))
    up_port, ngx_port, rw_port = 18300, 18301, 18302
    (tmp / "upstream.conf").write_text(f"""worker_processes 1; daemon off; pid {tmp}/up.pid; error_log {tmp}/up.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 10000000;
  server {{ listen 127.0.0.1:{up_port} reuseport backlog=4096;
    location / {{ default_type application/json; return 200 '{BODY}'; }} }} }}
""")
    (tmp / "proxy.conf").write_text(f"""worker_processes 1; daemon off; pid {tmp}/px.pid; error_log {tmp}/px.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 10000000;
  upstream backend {{ server 127.0.0.1:{up_port}; keepalive 128; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{ngx_port} reuseport backlog=4096;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
    (tmp / "ringway.yaml").write_text(f"""gateway:
  listen: ["127.0.0.1:{rw_port}"]
  workers: 1
  admin: {{enabled: false}}
  metrics: {{enabled: false}}
  status: {{enabled: false}}
services:
  - name: static
    upstream:
      nodes: [{{host: 127.0.0.1, port: {up_port}, weight: 1}}]
      keepalive_pool: {{size: 128, requests: 10000000}}
    routes:
      - name: all
        uris: ["/*"]
""")
    procs = []
    try:
        procs.append(start([nginx_bin(), "-c", str(tmp / "upstream.conf")], 1))
        ngx = start([nginx_bin(), "-c", str(tmp / "proxy.conf")], 0)
        procs.append(ngx)
        rw = start([str(ROOT / "target/release/ringway"), "-c", str(tmp / "ringway.yaml")], 0)
        procs.append(rw)
        for p in (up_port, ngx_port, rw_port):
            wait_port(p)
        time.sleep(0.5)
        ngx_worker = int(subprocess.run(["pgrep", "-P", str(ngx.pid)], capture_output=True, text=True).stdout.split()[0])
        targets = {"nginx": (ngx_port, ngx_worker), "ringway": (rw_port, rw.pid)}
        # warm-up
        for name, (port, _) in targets.items():
            run_wrk(port, 2, args.connections)
        rounds = {name: [] for name in targets}
        hz = os.sysconf("SC_CLK_TCK")
        for r in range(args.rounds):
            for name, (port, pid) in targets.items():
                t0 = cpu_ticks(pid)
                res = run_wrk(port, args.duration, args.connections)
                res["cpu_us_per_req"] = (cpu_ticks(pid) - t0) / hz * 1e6 / max(res["requests"], 1)
                rounds[name].append(res)
                print(f"round {r + 1} {name:8s} {res['rps']:>10.0f} req/s  p50 {res['p50_us']:.0f}us  p99 {res['p99_us']:.0f}us  cpu {res['cpu_us_per_req']:.2f}us/req", flush=True)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    summary = {}
    for name, rs in rounds.items():
        summary[name] = {k: median([x[k] for x in rs]) for k in ("rps", "p50_us", "p99_us", "cpu_us_per_req")}
    ratio = {
        "rps": summary["ringway"]["rps"] / summary["nginx"]["rps"],
        "p50": summary["ringway"]["p50_us"] / summary["nginx"]["p50_us"],
        "p99": summary["ringway"]["p99_us"] / summary["nginx"]["p99_us"],
        "cpu_per_req": summary["ringway"]["cpu_us_per_req"] / summary["nginx"]["cpu_us_per_req"],
    }
    nginx_version = subprocess.run([nginx_bin(), "-v"], capture_output=True, text=True).stderr.strip()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.release()}",
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "nginx": nginx_version,
        "setup": f"proxy pinned to cpu0 (1 worker each); static upstream nginx + wrk on cpu1; wrk -t1 -c{args.connections} -d{args.duration}s; {args.rounds} interleaved rounds; medians",
    }
    out = {"meta": meta, "rounds": rounds, "median": summary, "ratio_ringway_over_nginx": ratio}
    res_dir = ROOT / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / "engine-vs-nginx.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [
        "# ringway vs nginx proxy_pass (plain HTTP, keep-alive upstream)",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['machine']} ({meta['cpu']})",
        f"- Peer: {meta['nginx']}",
        f"- Setup: {meta['setup']}",
        f"- Command: `benches/compare/engine_vs_nginx.py --rounds {args.rounds} --duration {args.duration} --connections {args.connections}`",
        "",
        "| target | req/s | p50 | p99 | proxy CPU per request |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in ("nginx", "ringway"):
        s = summary[name]
        md.append(f"| {name} | {s['rps']:.0f} | {s['p50_us']:.0f} µs | {s['p99_us']:.0f} µs | {s['cpu_us_per_req']:.2f} µs |")
    md += [
        "",
        f"**ringway / nginx**: requests/s × {ratio['rps']:.3f}, p50 × {ratio['p50']:.3f}, p99 × {ratio['p99']:.3f}, CPU per request × {ratio['cpu_per_req']:.3f}.",
        "",
        "Both cores are saturated in this setup (proxy on cpu0; wrk and the upstream on cpu1), so requests/s is bounded by both sides; CPU time per request of the proxy process is the cleaner per-core efficiency figure.",
        "",
    ]
    (res_dir / "engine-vs-nginx.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
