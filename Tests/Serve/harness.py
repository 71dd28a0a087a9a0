"""Starts `spikerun serve` on a free loopback port and talks to it (stdlib only).

Every wait is bounded; a server that does not come up or does not stop fails the test run.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("SPIKERUN", os.path.join(ROOT, ".build/release/spikerun"))
MODEL = os.path.join(ROOT, "models/SmolLM2-135M-Instruct.Q4_1.gguf")
ALIAS = "SmolLM2-135M-Instruct.Q4_1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `spikerun serve` process on 127.0.0.1."""

    def __init__(self, *args, key=None, port=None, ready_timeout=120):
        self.port = port or free_port()
        self.key = key
        cmd = [BINARY, "serve", "-m", MODEL, "--host", "127.0.0.1", "--port", str(self.port), *args]
        if key:
            cmd += ["--api-key", key]
        self.log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"spikerun-serve-{self.port}.log"), "w+")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready(ready_timeout)

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"spikerun serve exited with {self.proc.returncode}: {self.output()}")
            try:
                status, body, _ = self.request("GET", "/health", auth=False, timeout=2)
                if status == 200 and json.loads(body) == {"status": "ok"}:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"spikerun serve did not become healthy in {timeout}s: {self.output()}")

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-2000:]

    def request(self, method, path, body=None, auth=True, headers=None, timeout=120):
        """(status, body bytes, headers) of one request; body: bytes, str or a JSON value."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if auth and self.key:
            h["Authorization"] = f"Bearer {self.key}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, r.read(), dict(r.getheaders())
        finally:
            conn.close()

    def metrics(self):
        status, body, _ = self.request("GET", "/metrics")
        assert status == 200, (status, body)
        out = {}
        for line in body.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
        return out

    def wait_metric(self, name, predicate, timeout=15):
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.metrics().get(name)
            if value is not None and predicate(value):
                return value
            time.sleep(0.1)
        raise AssertionError(f"{name} = {value} after {timeout}s")

    def rss_bytes(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
        return int(m.group(1)) * 1024

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
