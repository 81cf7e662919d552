#!/usr/bin/env python3
"""Load test of the coordinator under hostile uploads: many concurrent unauthenticated
50 MB `PUT /v1/blobs/{hash}` (raw sockets: the head declares the whole length, then the
body is streamed as fast as the coordinator takes it, until it answers or closes), while
an honest client asks for a job's status every 100 ms. Python 3 standard library only.

What it records (JSON, under the run's label in benches/results/hostile-load.json, so
that a `before` and an `after` run sit side by side):
- how each upload ended: `401` (answered), `closed` (connection closed or reset without
  an answer), `timeout` (no answer and no close within --answer-timeout), `other:<code>`,
  `connect-error`; and how many body bytes the coordinator took before that;
- the honest client's status latency (p50, p99, max, ms) and its failed requests;
- the coordinator's memory: VmRSS sampled every 20 ms (max), VmHWM before and after
  (VmHWM is the peak since the process started: start a fresh coordinator for a clean
  number);
- the run's duration.

Attach to a running coordinator:

    python3 benches/hostile_load.py --url http://127.0.0.1:8700 --token TOKEN \\
        --pid "$(pgrep -f 'tessera coordinator' | head -1)" [--job JOB_ID] --label after

or let it start one (`tessera coordinator` with the farm tests' flags, in a temporary
folder, on a fresh namespace of the local broker) and stop it afterwards:

    python3 benches/hostile_load.py --start --label after

Without --job the status request is `GET /v1/jobs`. docs/HARDENING.md describes the run
and its results.
"""

import argparse
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 256 * 1024


def percentile(values, q):
    """The q-th percentile (0..100) by nearest rank; None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]


def memory_kib(pid, field):
    """A /proc/PID/status field in KiB (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def read_answer(sock, deadline):
    """Read until an HTTP head arrives, the connection ends, or `deadline`: the outcome."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            return "timeout"
        except OSError:
            data = b""
        if not data:
            break
        raw += data
    parts = raw.split(b"\r\n", 1)[0].split()
    if len(parts) >= 2 and parts[1].isdigit():
        code = parts[1].decode()
        return code if code == "401" else f"other:{code}"
    return "closed"


def upload(host, port, index, size, gate, answer_timeout, sustain, results):
    """One stranger: uploads one after another, each on a new connection, for `sustain`
    seconds from the start of the flood (at least one)."""
    gate.wait()
    t0 = time.monotonic()
    results[index] = []
    while True:
        results[index].append(upload_once(host, port, size, answer_timeout))
        if time.monotonic() - t0 >= sustain:
            return


def upload_once(host, port, size, answer_timeout):
    """One upload: head, then zeros until `size` bytes or the server stops."""
    path = f"/v1/blobs/{secrets.token_hex(32)}"
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
    ).encode()
    chunk = bytes(CHUNK)
    sent = 0
    started = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=10)
    except OSError:
        return {"outcome": "connect-error", "sent": 0, "seconds": 0.0}
    try:
        sock.settimeout(answer_timeout)
        sock.sendall(head)
        while sent < size:
            n = sock.send(chunk[: min(CHUNK, size - sent)])
            if n == 0:
                break
            sent += n
    except OSError:
        pass  # the server closed or reset: what it answered (if anything) is read below
    outcome = read_answer(sock, time.monotonic() + answer_timeout)
    sock.close()
    return {
        "outcome": outcome,
        "sent": sent,
        "seconds": time.monotonic() - started,
    }


def poll_status(host, port, token, path, interval, stop, latencies, failures):
    """The honest client: one status request every `interval` s on a fresh connection."""
    next_at = time.monotonic()
    while not stop.is_set():
        started = time.monotonic()
        try:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                latencies.append((time.monotonic() - started) * 1000.0)
            else:
                failures.append(f"{resp.status}")
        except OSError as e:
            failures.append(type(e).__name__)
        next_at += interval
        stop.wait(max(0.0, next_at - time.monotonic()))


def sample_memory(pid, stop, peak, kill_above_kib, killed):
    """VmRSS every 20 ms into peak[0]; SIGKILL the coordinator past kill_above_kib."""
    while not stop.is_set():
        rss = memory_kib(pid, "VmRSS")
        peak[0] = max(peak[0], rss)
        if kill_above_kib and rss > kill_above_kib and not killed[0]:
            killed[0] = True
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        stop.wait(0.02)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_coordinator(args):
    """`tessera coordinator` as the farm tests start it; (process, url, token, folder, ns)."""
    folder = tempfile.mkdtemp(prefix="hostile-load-")
    port = free_port()
    token = "hostile-load-" + secrets.token_hex(8)
    namespace = "t" + secrets.token_hex(8)
    cmd = [
        args.tessera, "coordinator",
        "--amqp", args.amqp,
        "--listen", f"127.0.0.1:{port}",
        "--data", os.path.join(folder, "data"),
        "--api-token", f"studio={token}",
        "--namespace", namespace,
        "--challenge-window", "0",
        "--admin-token", "hostile-load-admin-" + secrets.token_hex(8),
    ] + args.coordinator_flag
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env["TESSERA_LOG"] = "warn,tessera_coordinator=info"
    log = open(os.path.join(folder, "coordinator.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                log.close()
                sys.exit(f"the coordinator exited ({proc.returncode}); see {log.name}")
            if time.monotonic() > deadline:
                proc.kill()
                sys.exit(f"the coordinator is not listening after 20 s; see {log.name}")
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", token, folder, namespace


def delete_queues(namespace):
    """Best effort: remove the queues a started coordinator declared."""
    if not shutil.which("rabbitmqctl"):
        return
    out = subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name"],
        capture_output=True, text=True,
    ).stdout
    for q in (line.strip() for line in out.splitlines()):
        if q.startswith(namespace + "."):
            subprocess.run(["rabbitmqctl", "delete_queue", q], capture_output=True)


def git_commit():
    try:
        return subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="the coordinator, http://HOST:PORT (or --start)")
    p.add_argument("--token", help="a client API token of that coordinator")
    p.add_argument("--pid", type=int, help="the coordinator's process id")
    p.add_argument("--job", help="a job id to ask the status of (default: GET /v1/jobs)")
    p.add_argument("--start", action="store_true", help="start a coordinator for the run")
    p.add_argument("--tessera", default=os.path.join(ROOT, "target/release/tessera"))
    p.add_argument("--amqp", default=os.environ.get(
        "TESSERA_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2f"))
    p.add_argument("--coordinator-flag", action="append", default=[],
                   help="an extra flag for a started coordinator (repeat)")
    p.add_argument("--uploads", type=int, default=100)
    p.add_argument("--size", type=int, default=50_000_000, help="declared body bytes")
    p.add_argument("--interval", type=float, default=0.1, help="status request period, s")
    p.add_argument("--sustain", type=float, default=10.0,
                   help="each stranger uploads again and again for this long, s")
    p.add_argument("--answer-timeout", type=float, default=60.0,
                   help="how long an upload waits for an answer or a close, s")
    p.add_argument("--kill-above-mib", type=int, default=0,
                   help="SIGKILL the coordinator past this RSS (a started one only)")
    p.add_argument("--label", default="run", help="the run's key in the output")
    p.add_argument("--note", default="", help="free text kept with the run")
    p.add_argument("--out", default=os.path.join(ROOT, "benches/results/hostile-load.json"))
    args = p.parse_args()

    started_proc = None
    if args.start:
        started_proc, url, token, folder, namespace = start_coordinator(args)
        pid = started_proc.pid
    else:
        if not (args.url and args.token and args.pid):
            p.error("give --url, --token and --pid, or --start")
        url, token, pid = args.url, args.token, args.pid
        if args.kill_above_mib:
            p.error("--kill-above-mib only applies to a coordinator started with --start")
    hostport = url.split("://", 1)[-1].rstrip("/")
    host, port = hostport.rsplit(":", 1)
    port = int(port)
    status_path = f"/v1/jobs/{args.job}" if args.job else "/v1/jobs"

    rss_start = memory_kib(pid, "VmRSS")
    hwm_start = memory_kib(pid, "VmHWM")
    stop = threading.Event()
    peak, killed = [rss_start], [False]
    latencies, failures = [], []
    sampler = threading.Thread(
        target=sample_memory,
        args=(pid, stop, peak, args.kill_above_mib * 1024, killed),
        daemon=True,
    )
    poller = threading.Thread(
        target=poll_status,
        args=(host, port, token, status_path, args.interval, stop, latencies, failures),
        daemon=True,
    )
    results = [None] * args.uploads
    gate = threading.Barrier(args.uploads + 1)
    uploads = [
        threading.Thread(
            target=upload,
            args=(host, port, i, args.size, gate, args.answer_timeout, args.sustain, results),
            daemon=True,
        )
        for i in range(args.uploads)
    ]
    sampler.start()
    poller.start()
    time.sleep(0.5)  # a few status requests before the flood: the quiet latency
    quiet = len(latencies)
    for t in uploads:
        t.start()
    t0 = time.monotonic()
    gate.wait()
    for t in uploads:
        t.join()
    duration = time.monotonic() - t0
    time.sleep(0.5)
    stop.set()
    poller.join()
    sampler.join()
    hwm_end = memory_kib(pid, "VmHWM")
    alive = memory_kib(pid, "VmRSS") > 0

    results = [r for attempts in results for r in attempts]
    outcomes = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    sent = [r["sent"] for r in results]
    seconds = [r["seconds"] for r in results]
    flood_latencies = latencies[quiet:]
    mib = lambda kib: round(kib / 1024.0, 1)  # noqa: E731
    ms = lambda v: None if v is None else round(v, 1)  # noqa: E731
    run = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "checkout_commit": git_commit(),
        "note": args.note,
        "coordinator": {"url": url, "pid": pid, "started_by_bench": bool(args.start),
                        "alive_after": alive, "killed_by_bench": killed[0]},
        "uploads": {
            "count": args.uploads,
            "sustain_s": args.sustain,
            "attempts": len(results),
            "declared_bytes_each": args.size,
            "outcomes": outcomes,
            "body_bytes_taken_total": sum(sent),
            "body_bytes_taken_max": max(sent) if sent else 0,
            "seconds_p50": ms(percentile(seconds, 50)),
            "seconds_max": ms(max(seconds) if seconds else None),
        },
        "status": {
            "path": status_path,
            "interval_s": args.interval,
            "requests_ok": len(latencies),
            "failures": len(failures),
            "failure_kinds": sorted(set(failures)),
            "quiet_latency_ms_p50": ms(percentile(latencies[:quiet], 50)),
            "latency_ms_p50": ms(percentile(flood_latencies, 50)),
            "latency_ms_p99": ms(percentile(flood_latencies, 99)),
            "latency_ms_max": ms(max(flood_latencies) if flood_latencies else None),
        },
        "memory_mib": {
            "rss_start": mib(rss_start),
            "rss_sampled_max": mib(peak[0]),
            "hwm_start": mib(hwm_start),
            "hwm_end": mib(hwm_end),
        },
        "duration_s": round(duration, 2),
    }

    if started_proc is not None:
        if started_proc.poll() is None:
            started_proc.send_signal(signal.SIGTERM)
            try:
                started_proc.wait(10)
            except subprocess.TimeoutExpired:
                started_proc.kill()
                started_proc.wait()
        delete_queues(namespace)
        shutil.rmtree(folder, ignore_errors=True)

    try:
        with open(args.out) as f:
            report = json.load(f)
    except (OSError, ValueError):
        report = {}
    report.setdefault("runs", {})[args.label] = run
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    json.dump({args.label: run}, sys.stdout, indent=2, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
