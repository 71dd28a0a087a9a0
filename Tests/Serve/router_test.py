"""Scale-out behind an existing router: nginx (Debian's) in front of 2 `spikerun serve` replicas.

Shows that requests spread over both replicas, and that killing one replica mid-run loses no
request: nginx retries a request whose replica died before answering (`proxy_next_upstream
error ... non_idempotent`) on the other one. Loopback only; every wait bounded.
Run: python3 Tests/Serve/router_test.py
"""
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ALIAS, Server, free_port  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_conf(tmp, port, upstreams):
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in upstreams)
    temps = "\n".join(f"    {k}_temp_path {tmp}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$status $upstream_addr $upstream_status';
    access_log {tmp}/access.log upstream;
{temps}
    upstream spikerun {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://spikerun;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"""


def post(port, body, timeout=180):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def main():
    failures = []
    tmp = tempfile.mkdtemp(prefix="spikerun-router-")
    a = b = router = None
    try:
        a = Server("--parallel", "2", "-c", "256")
        b = Server("--parallel", "2", "-c", "256")
        port = free_port()
        with open(f"{tmp}/nginx.conf", "w") as f:
            f.write(nginx_conf(tmp, port, [a.port, b.port]))
        router = subprocess.Popen([NGINX, "-p", tmp, "-c", f"{tmp}/nginx.conf"], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                if post(port, {"prompt": "Hi", "max_tokens": 1}, timeout=30)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or router.poll() is not None:
                raise RuntimeError("nginx did not come up: " + (router.stderr.read().decode() if router.poll() is not None else ""))
            time.sleep(0.2)

        def run(n, max_tokens, on_progress=None):
            out = []
            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                jobs = [pool.submit(post, port, {"model": ALIAS, "prompt": f"Count to {i + 3}:",
                                                 "max_tokens": max_tokens, "temperature": 0}) for i in range(n)]
                for i, j in enumerate(jobs):
                    try:
                        status, body = j.result(timeout=300)
                    except Exception as e:  # noqa: BLE001 - reported
                        status, body = -1, str(e).encode()
                    out.append((status, body))
                    if on_progress:
                        on_progress(i)
            return out

        # Phase 1: both replicas up; round-robin spreads the requests.
        results = run(12, 8)
        bad = [(s, body[:200]) for s, body in results if s != 200]
        if bad:
            failures.append(f"phase 1: {len(bad)} failed: {bad[:3]}")
        with open(f"{tmp}/access.log") as f:
            lines = f.read().splitlines()
        used = {p for line in lines for p in re.findall(r"127\.0\.0\.1:(\d+)", line)}
        if used != {str(a.port), str(b.port)}:
            failures.append(f"phase 1: requests went to ports {sorted(used)}, expected both {a.port} and {b.port}")
        done_before = len(lines)

        # Phase 2: kill replica A (SIGKILL) while requests are in flight on both.
        killed = []

        def kill_a(i):
            if i == 1 and not killed:
                a.proc.send_signal(signal.SIGKILL)
                killed.append(time.monotonic())
        results = run(16, 24, on_progress=kill_a)
        if not killed:
            failures.append("phase 2: replica A was not killed")
        bad = [(s, body[:200]) for s, body in results if s != 200]
        if bad:
            failures.append(f"phase 2: {len(bad)} of 16 requests failed after the kill: {bad[:3]}")
        for s, body in results:
            if s == 200 and json.loads(body)["usage"]["completion_tokens"] < 1:
                failures.append("phase 2: an empty completion")
        with open(f"{tmp}/access.log") as f:
            phase2 = f.read().splitlines()[done_before:]
        retried = [line for line in phase2 if "," in line]
        if not retried:
            failures.append("phase 2: no request was retried: the kill did not hit the run")
        print(f"router: phase 1 spread over {sorted(used)}; phase 2: {len(phase2)} requests, "
              f"{len(retried)} retried on the surviving replica after the kill", file=sys.stderr)
    finally:
        if router and router.poll() is None:
            router.send_signal(signal.SIGQUIT)
            try:
                router.wait(10)
            except subprocess.TimeoutExpired:
                router.kill()
        for s in (a, b):
            if s:
                s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("router: FAIL " + f, file=sys.stderr)
    print("router: ok" if not failures else f"router: {len(failures)} failures", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
