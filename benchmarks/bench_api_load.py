"""Latency of the case page and the study API under 20 concurrent clients while a study is being
analysed, for 1 and 4 web processes (`fetalcns serve --workers N`), the upload → verdict latency of
both studies, and the peak RSS of the server and the worker (with their child processes: web
workers, the preparing pool); prints JSON.

For each process count it starts a real server on a fresh PostgreSQL database (the bundled model,
the in-process worker, or `fetalcns worker` processes with ``--broker-url``), signs in, uploads a
small study and waits for its verdict (the case that is read), then uploads a large study and,
while that one is being analysed, runs ``--clients`` concurrent clients that each alternate
``GET /cases/{id}`` (the HTML case page, session cookie) and ``GET /api/v1/studies/{id}`` (bearer
token) for ``--seconds``. Every answer must be 200; p50/p95 are over all of them. The clients speak
raw HTTP/1.1 on kept-alive connections, so that the load generator takes little of the CPU it
measures. Before the load, one client reads each page ``--cpu-requests`` times in turn with
nothing being analysed, and the server's CPU seconds (all its processes, from /proc) give the CPU
cost of one read.

    .venv/bin/python benchmarks/bench_api_load.py [--processes 1 4] [--clients 20] [--seconds 20]
        [--broker-url redis://127.0.0.1:6379/0] [--cpu-requests 200] [--server-log FILE]

Not a test: numbers depend on the machine; run it on an otherwise idle one to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import httpx  # noqa: E402

PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
PASSWORD = "bench-password-long-enough"
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _new_database() -> tuple[str, str]:
    import psycopg

    name = f"fetalcns_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants (Linux /proc):
    the server's share of the machine during the load."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
        cpu[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(cpu.get(p, 0.0) for p in tree)


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p95_ms": round(_percentile(values, 0.95) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def _study(seed: int, n_images: int, height: int, width: int) -> list[tuple[str, bytes]]:
    from pydicom.uid import generate_uid
    from web_support import dicom_bytes, ultrasound_pixels

    uid = generate_uid()
    return [
        (
            f"b{seed}-{i}.dcm",
            dicom_bytes(ultrasound_pixels(seed * 1000 + i, height, width), f"BENCH-{seed}", None, uid),
        )
        for i in range(n_images)
    ]


def _peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident memory) of one process, in MiB; 0 when it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            found += [child, *_descendants(child)]
    return found


def _rss_tree(pid: int) -> dict[str, Any]:
    """Peak RSS of a process and of each process under it (the preparing pool, web workers)."""
    children = {child: _peak_rss_mib(child) for child in _descendants(pid)}
    return {
        "process_mib": _peak_rss_mib(pid),
        "children_mib": sorted(children.values(), reverse=True),
        "total_mib": round(_peak_rss_mib(pid) + sum(children.values()), 1),
    }


def _status(base: str, token: str, study_id: int) -> str:
    response = httpx.get(f"{base}/api/v1/studies/{study_id}", headers={"Authorization": f"Bearer {token}"})
    return str(response.json()["status"])


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response on a kept-alive connection: (status, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    body = b""
    while True:  # chunked
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]


def _requests(host: str, cookie: str, token: str, case_id: int) -> tuple[tuple[str, bytes], ...]:
    """The two reads, as raw HTTP/1.1 requests: the case page (session cookie) and the study
    API (bearer token)."""
    return (
        ("case_page", f"GET /cases/{case_id} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode()),
        (
            "study_api",
            f"GET /api/v1/studies/{case_id} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode(),
        ),
    )


async def _cpu_per_request(
    base: str, cookie: str, token: str, case_id: int, pids: list[int], n: int
) -> dict[str, float]:
    """Server CPU (all its processes, from /proc) per request of each kind, one client at a
    time with nothing being analysed: the cost of a read, free of queueing."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    cost: dict[str, float] = {}
    try:
        for kind, request in _requests(host, cookie, token, case_id):
            for _ in range(10):  # warm: prepared statements, template cache
                writer.write(request)
                await _read_response(reader)
            before = sum(_tree_cpu_s(pid) for pid in pids)
            for _ in range(n):
                writer.write(request)
                status, _body = await _read_response(reader)
                assert status == 200, (kind, status)
            cost[kind] = round((sum(_tree_cpu_s(pid) for pid in pids) - before) / n * 1000, 2)
    finally:
        writer.close()
    return cost


async def _client(base: str, cookie: str, token: str, case_id: int, until: float, out: dict) -> None:
    """A closed-loop client on one kept-alive connection, alternating the case page (session
    cookie) and the study API (bearer token). Raw HTTP/1.1 on asyncio streams: httpx cost about
    2.5 ms of CPU per request, taken from the two cores the server is measured on."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    requests = _requests(host, cookie, token, case_id)
    try:
        while time.monotonic() < until:
            for kind, request in requests:
                started = time.perf_counter()
                writer.write(request)
                status, body = await _read_response(reader)
                elapsed = time.perf_counter() - started
                if status != 200:
                    out["errors"].append(f"{kind} {status}: {body[:160].decode('utf-8', 'replace')}")
                else:
                    out[kind].append(elapsed)
    finally:
        writer.close()


def run_one(processes: int, args: argparse.Namespace) -> dict[str, Any]:
    from web_support import multipart

    db_name, db_url = _new_database()
    tmp = Path(tempfile.mkdtemp(prefix="bench-load-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETALCNS_")}
    env.update(
        PYTHONPATH=str(REPO),
        FETALCNS_DATA_DIR=str(tmp / "var"),
        FETALCNS_DATABASE_URL=db_url,
        FETALCNS_MODEL_DIR=str(args.model_dir),
        FETALCNS_SECRET_KEY="bench-secret",
        FETALCNS_INFERENCE_DEVICE="cpu",
        FETALCNS_WORKER_POLL_S="0.5",
    )
    if args.broker_url:
        env.update(FETALCNS_BROKER_URL=args.broker_url, FETALCNS_BROKER_QUEUE=f"bench-{secrets.token_hex(4)}")
    python = [sys.executable, "-m", "app.cli"]
    started: list[subprocess.Popen[bytes]] = []
    server_log: Any = open(args.server_log, "ab") if args.server_log else subprocess.DEVNULL  # noqa: SIM115
    try:
        subprocess.run([*python, "db", "upgrade"], env=env, check=True, capture_output=True)
        create = subprocess.run(
            [*python, "users", "create", "bench", "--password-stdin"],
            env=env,
            input=PASSWORD.encode(),
            capture_output=True,
            check=True,
        )
        assert create.returncode == 0
        port = _free_port()
        started.append(
            subprocess.Popen(
                [*python, "serve", "--port", str(port), "--workers", str(processes)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=server_log,
            )
        )
        if args.broker_url:
            started.append(
                subprocess.Popen(
                    [*(["nice", "-n", str(args.worker_nice)] if args.worker_nice else []), *python, "worker"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.3)

        token = httpx.post(
            f"{base}/api/v1/auth/token", data={"username": "bench", "password": PASSWORD}
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        browser = httpx.Client(base_url=base, follow_redirects=False, timeout=60)
        csrf = _CSRF.search(browser.get("/login").text).group(1)  # type: ignore[union-attr]
        signed_in = browser.post(
            "/login", data={"username": "bench", "password": PASSWORD, "csrf_token": csrf, "next": "/"}
        )
        assert signed_in.status_code == 303, signed_in.status_code

        latency: dict[str, float] = {}
        t0 = time.perf_counter()
        case = httpx.post(
            f"{base}/api/v1/studies", files=multipart(_study(1, 4, 240, 320)), headers=auth, timeout=120
        ).json()["study_id"]
        while _status(base, token, case) not in ("done", "failed"):
            time.sleep(0.02)
        latency["small_study_4_images_s"] = round(time.perf_counter() - t0, 3)
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
        pids = [p.pid for p in started]
        cpu_ms = asyncio.run(_cpu_per_request(base, cookie, token, case, pids, args.cpu_requests))
        t_busy = time.perf_counter()
        busy = httpx.post(
            f"{base}/api/v1/studies",
            files=multipart(_study(2, args.busy_images, 480, 640)),
            headers=auth,
            timeout=300,
        ).json()["study_id"]
        while _status(base, token, busy) == "queued":
            time.sleep(0.1)

        out: dict[str, list[Any]] = {"case_page": [], "study_api": [], "errors": []}
        load_before = os.getloadavg()[0]
        server_cpu_before = sum(_tree_cpu_s(p.pid) for p in started)
        client_cpu_before = time.process_time()
        until = time.monotonic() + args.seconds

        async def load() -> None:
            await asyncio.gather(
                *(_client(base, cookie, token, case, until, out) for _ in range(args.clients))
            )

        asyncio.run(load())
        client_cpu_s = time.process_time() - client_cpu_before
        server_cpu_s = sum(_tree_cpu_s(p.pid) for p in started) - server_cpu_before
        load_after = os.getloadavg()[0]
        still_analysing = _status(base, token, busy) == "running"
        while _status(base, token, busy) not in ("done", "failed"):
            time.sleep(0.05)
        latency[f"busy_study_{args.busy_images}_images_under_load_s"] = round(time.perf_counter() - t_busy, 3)
        browser.close()
        rss = {"server": _rss_tree(started[0].pid)}
        if args.broker_url:
            rss["worker"] = _rss_tree(started[1].pid)
        return {
            "processes": processes,
            "upload_to_verdict": latency,
            "peak_rss": rss,
            "clients": args.clients,
            "seconds": args.seconds,
            "analysis_running_throughout": still_analysing,
            "errors": len(out["errors"]),
            "error_answers": dict(Counter(out["errors"]).most_common(5)),
            # The machine's 1-minute load average before and after the load, and the CPU seconds
            # the server processes (with the analysis) and this load generator used during it.
            "load_avg_1m_before": round(load_before, 2),
            "load_avg_1m_after": round(load_after, 2),
            "server_cpu_s": round(server_cpu_s, 1),
            "client_cpu_s": round(client_cpu_s, 1),
            "server_cpu_ms_per_request_one_client": cpu_ms,
            "requests_per_s": round((len(out["case_page"]) + len(out["study_api"])) / args.seconds, 1),
            "case_page": _summary(out["case_page"]),
            "study_api": _summary(out["study_api"]),
        }
    finally:
        for process in started:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        _drop_database(db_name)
        if args.server_log:
            server_log.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--busy-images", type=int, default=120, help="images of the study analysed meanwhile")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "fetal-cns-demo")
    parser.add_argument(
        "--broker-url", default=None, help="analyse in a `fetalcns worker` through this broker"
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=0,
        help="with --broker-url: run the worker this much below the server",
    )
    parser.add_argument(
        "--cpu-requests", type=int, default=200, help="sequential requests of each kind for the CPU cost"
    )
    parser.add_argument("--server-log", type=Path, default=None, help="append the server's log to this file")
    args = parser.parse_args()
    before = os.getloadavg()
    results = [run_one(n, args) for n in args.processes]
    load = os.getloadavg()
    print(
        json.dumps(
            {
                "cpus": os.cpu_count(),
                "load_avg_1_5_15_before": [round(v, 2) for v in before],
                "load_avg_1_5_15_after": [round(v, 2) for v in load],
                "runs": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
