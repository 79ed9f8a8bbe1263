#!/usr/bin/env python3
"""ringway and nginx measured by a client that is not ours: wrk.

loadgen shares ringway's HTTP and SSE parsers, so this harness keeps the
numbers honest with an independent client. `wrk -t1` POSTs a small OpenAI
chat body (a Lua script) to:

  direct        the upstream itself (no proxy), the floor for added latency
  nginx         nginx `proxy_pass` with an upstream keepalive pool
  ringway-plain a ringway upstream route (plain proxying)
  ringway-ai    a ringway `ai-proxy-multi` route: two instances weighted 8:2
                on the same upstream, `options` merged into the body, the
                answer's usage read for token accounting

over two upstreams:

  static        nginx `return 200` with a fixed ~400-byte chat completion
  mock-llm      the project's mock-llm (zero TTFT, 16 tokens, JSON answer)

at two concurrencies: saturation (-c32 by default) and one connection (-c1).

The proxies are pinned to cpu0 (one worker each); the upstream and wrk share
cpu1. Every round runs every target once, and the order flips each round
(forward, then reverse) so drift and noise hit all targets alike. Reported:
req/s, p50/p99 (wrk --latency), proxy CPU time per request (/proc/PID/stat),
medians over rounds with the min-max spread, and ratios against nginx.

Writes results/outside-wrk.{json,md}. Installs nginx-light and wrk from
Debian if missing. Usage:
  benches/compare/outside_wrk.py [--rounds 5] [--duration 8] [--connections 32]
                                 [--no-build] [--upstreams static,mock-llm]
"""
import argparse, json, os, platform, re, shutil, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path

from common import cpu_ticks, ensure_tools, median, nginx_bin, to_us, wait_port

ROOT = Path(__file__).resolve().parents[2]
ANSWER = '{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"1+1 equals 2. Is there anything else you would like to know about arithmetic?"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":23,"completion_tokens":18,"total_tokens":41},"system_fingerprint":"fp_0123456789"}'
REQUEST = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What is 1+1?"}]}'
PORTS = {"static": 18310, "mock-llm": 18311, "nginx-static": 18312, "nginx-mock-llm": 18313, "ringway": 18314}




def start(cmd, cpu):
    return subprocess.Popen(["taskset", "-c", str(cpu), *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)





def run_wrk(url, script, duration, conns):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {p: to_us(re.search(rf"\s{p}%\s+(\S+)", out).group(1)) for p in ("50", "99")}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "requests": total, "p50_us": lat["50"], "p99_us": lat["99"],
            "non_2xx": int(bad.group(1)) if bad else 0, "socket_errors": errs.group(1).strip() if errs else ""}



def write_configs(tmp):
    (tmp / "post.lua").write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{REQUEST}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Authorization"] = "Bearer sk-bench"\n')
    (tmp / "static.conf").write_text(f"""worker_processes 1; daemon off; pid {tmp}/static.pid; error_log {tmp}/static.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 10000000;
  server {{ listen 127.0.0.1:{PORTS['static']} reuseport backlog=4096;
    location / {{ default_type application/json; return 200 '{ANSWER}'; }} }} }}
""")
    servers = "".join(f"""
  upstream {name} {{ server 127.0.0.1:{PORTS[name]}; keepalive 128; keepalive_requests 10000000; }}
  server {{ listen 127.0.0.1:{PORTS['nginx-' + name]} reuseport backlog=4096;
    location / {{ proxy_pass http://{name}; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}"""
                      for name in ("static", "mock-llm"))
    (tmp / "proxy.conf").write_text(f"""worker_processes 1; daemon off; pid {tmp}/proxy.pid; error_log {tmp}/proxy.err warn;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 10000000;{servers}
}}
""")
    services = []
    for name in ("static", "mock-llm"):
        port = PORTS[name]
        instances = "".join(f"""
              - name: {inst}
                provider: openai
                weight: {weight}
                auth: {{header: {{Authorization: "Bearer sk-bench"}}}}
                options: {{model: gpt-4o-mini}}
                override: {{endpoint: "http://127.0.0.1:{port}/v1/chat/completions"}}"""
                            for inst, weight in (("a", 8), ("b", 2)))
        services.append(f"""  - name: {name}-plain
    upstream:
      nodes: [{{host: 127.0.0.1, port: {port}, weight: 1}}]
      keepalive_pool: {{size: 128, requests: 10000000}}
    routes:
      - name: {name}-plain
        uris: ["/{name}/plain/*"]
  - name: {name}-ai
    routes:
      - name: {name}-ai
        uris: ["/{name}/ai/v1/chat/completions"]
        methods: [POST]
        plugins:
          ai-proxy-multi:
            fallback_strategy: [http_429, http_5xx]
            instances:{instances}
""")
    (tmp / "ringway.yaml").write_text(f"""gateway:
  listen: ["127.0.0.1:{PORTS['ringway']}"]
  workers: 1
  admin: {{enabled: false}}
  metrics: {{enabled: false}}
  status: {{enabled: false}}
services:
{''.join(services)}""")


def targets_for(upstream):
    rw = PORTS["ringway"]
    return {
        "direct": f"http://127.0.0.1:{PORTS[upstream]}/v1/chat/completions",
        "nginx": f"http://127.0.0.1:{PORTS['nginx-' + upstream]}/v1/chat/completions",
        "ringway-plain": f"http://127.0.0.1:{rw}/{upstream}/plain/v1/chat/completions",
        "ringway-ai": f"http://127.0.0.1:{rw}/{upstream}/ai/v1/chat/completions",
    }


def summarise(rs):
    out = {}
    for k in ("rps", "p50_us", "p99_us", "cpu_us_per_req"):
        xs = [x[k] for x in rs if x.get(k) is not None]
        if xs:
            out[k] = {"median": median(xs), "min": min(xs), "max": max(xs)}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--upstreams", default="static,mock-llm")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    upstreams = args.upstreams.split(",")
    ensure_tools()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "ringway", "-p", "mock-llm"], cwd=ROOT, check=True)
    tmp = Path(tempfile.mkdtemp(prefix="ringway-outside-"))
    write_configs(tmp)
    procs = []
    try:
        procs.append(start([nginx_bin(), "-c", str(tmp / "static.conf")], 1))
        procs.append(start([str(ROOT / "target/release/mock-llm"), "--listen", f"127.0.0.1:{PORTS['mock-llm']}", "--tokens", "16", "--max-recorded", "0"], 1))
        ngx = start([nginx_bin(), "-c", str(tmp / "proxy.conf")], 0)
        procs.append(ngx)
        rw = start([str(ROOT / "target/release/ringway"), "-c", str(tmp / "ringway.yaml")], 0)
        procs.append(rw)
        for p in PORTS.values():
            wait_port(p)
        time.sleep(0.5)
        ngx_worker = int(subprocess.run(["pgrep", "-P", str(ngx.pid)], capture_output=True, text=True).stdout.split()[0])
        pid_of = {"direct": None, "nginx": ngx_worker, "ringway-plain": rw.pid, "ringway-ai": rw.pid}
        plan = []  # (upstream, concurrency, target, url)
        for up in upstreams:
            for conns in (args.connections, 1):
                for name, url in targets_for(up).items():
                    if name == "direct" and conns != 1:
                        continue  # the floor matters for added latency, at c=1
                    plan.append((up, conns, name, url))
        for up, conns, name, url in plan:  # warm-up, and a check that every target answers 200
            res = run_wrk(url, tmp / "post.lua", 1, conns)
            if res["non_2xx"] or res["requests"] == 0:
                raise SystemExit(f"{name} on {up}: {res['non_2xx']} non-2xx answers of {res['requests']}")
        hz = os.sysconf("SC_CLK_TCK")
        runs = {f"{up}|c{conns}|{name}": [] for up, conns, name, _ in plan}
        for r in range(args.rounds):
            order = plan if r % 2 == 0 else list(reversed(plan))
            for up, conns, name, url in order:
                pid = pid_of[name]
                t0 = cpu_ticks(pid) if pid else 0
                res = run_wrk(url, tmp / "post.lua", args.duration, conns)
                res["cpu_us_per_req"] = (cpu_ticks(pid) - t0) / hz * 1e6 / max(res["requests"], 1) if pid else None
                runs[f"{up}|c{conns}|{name}"].append(res)
                cpu = f"{res['cpu_us_per_req']:.2f}us/req" if pid else "-"
                print(f"round {r + 1} {up:8s} c{conns:<3d} {name:14s} {res['rps']:>9.0f} req/s  p50 {res['p50_us']:7.0f}us  p99 {res['p99_us']:7.0f}us  cpu {cpu}  non-2xx {res['non_2xx']}", flush=True)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    summary = {k: summarise(v) for k, v in runs.items()}
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.release()}",
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "nginx": subprocess.run([nginx_bin(), "-v"], capture_output=True, text=True).stderr.strip(),
        "wrk": (subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines() or ["?"])[0],
        "setup": f"proxies pinned to cpu0 (one worker each); upstream and wrk on cpu1; wrk -t1 -d{args.duration}s POSTing a chat body; {args.rounds} rounds, order flipped each round; medians (min-max)",
    }
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results/outside-wrk.json").write_text(json.dumps({"meta": meta, "runs": runs, "summary": summary}, indent=2) + "\n")
    md = render(meta, summary, upstreams, args)
    (ROOT / "results/outside-wrk.md").write_text(md)
    print(md)


def fmt(s, k, unit, digits=0):
    v = s.get(k)
    if not v:
        return "-"
    return f"{v['median']:.{digits}f}{unit} ({v['min']:.{digits}f}-{v['max']:.{digits}f})"


def render(meta, summary, upstreams, args):
    md = ["# ringway vs nginx, measured by wrk", "",
          f"- Date: {meta['date']}, commit {meta['commit']}",
          f"- Machine: {meta['machine']} ({meta['cpu']})",
          f"- Peers: {meta['nginx']}; {meta['wrk']}",
          f"- Setup: {meta['setup']}",
          f"- Command: `benches/compare/outside_wrk.py --rounds {args.rounds} --duration {args.duration} --connections {args.connections}`",
          ""]
    for up in upstreams:
        for conns in (args.connections, 1):
            md += [f"## {up} upstream, {conns} connection{'s' if conns > 1 else ''}", "",
                   "| target | req/s | p50 | p99 | proxy CPU per request | req/s ÷ nginx | CPU ÷ nginx |",
                   "|---|---:|---:|---:|---:|---:|---:|"]
            base = summary.get(f"{up}|c{conns}|nginx", {})
            for name in ("direct", "nginx", "ringway-plain", "ringway-ai"):
                s = summary.get(f"{up}|c{conns}|{name}")
                if not s:
                    continue
                rps_ratio = s["rps"]["median"] / base["rps"]["median"] if base else float("nan")
                cpu_ratio = (s["cpu_us_per_req"]["median"] / base["cpu_us_per_req"]["median"]) if "cpu_us_per_req" in s and base else None
                md.append(f"| {name} | {fmt(s, 'rps', '')} | {fmt(s, 'p50_us', ' µs')} | {fmt(s, 'p99_us', ' µs')} | {fmt(s, 'cpu_us_per_req', ' µs', 2)} | "
                          f"{rps_ratio:.3f} | {'-' if cpu_ratio is None else f'{cpu_ratio:.3f}'} |")
            if conns == 1 and f"{up}|c1|direct" in summary:
                floor = summary[f"{up}|c1|direct"]
                added = []
                for name in ("nginx", "ringway-plain", "ringway-ai"):
                    s = summary.get(f"{up}|c1|{name}")
                    if s:
                        added.append(f"{name} +{s['p50_us']['median'] - floor['p50_us']['median']:.0f} / +{s['p99_us']['median'] - floor['p99_us']['median']:.0f} µs")
                md += ["", "Added latency over the direct path (p50 / p99 medians): " + "; ".join(added) + "."]
            md.append("")
    md += ["Requests/s at saturation is bounded by both cores (the proxy on cpu0; wrk and the upstream on cpu1); proxy CPU per request is the cleaner per-core figure. "
           "The spread in parentheses is min-max over rounds; these VMs stall for milliseconds at random, which shows most in p99.", ""]
    return "\n".join(md)


if __name__ == "__main__":
    sys.exit(main())
