#!/usr/bin/python3
"""Soak test of `finch serve`: DURATION seconds of mixed valid, corrupt, oversized, bomb,
wrong-type and slow requests from THREADS client threads (Python standard library only).

  serve_soak.py --finch build/finch --model M --image PHOTO [--duration 600] [--threads 8]

Starts the server itself on a free loopback port (small limits so the bad cases are cheap),
checks every valid answer equals the first one (the same image always gets the same top-5),
counts answers by status, and fails when the server dies, answers 5xx, or a valid request
is answered wrongly. Prints a JSON summary with the server's RSS at start and end.
"""
import argparse
import http.client
import json
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--finch", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--threads", type=int, default=8)
    a = p.parse_args()
    server = subprocess.Popen([a.finch, "serve", "--model", a.model, "--port", "0", "--threads", "1",
                               "--max-body-mb", "2", "--max-pixels", "4000000", "--timeout-ms", "2000",
                               "--http-threads", "16"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port = None
    for line in server.stdout:
        m = re.search(r"listening on http://127.0.0.1:(\d+)/", line)
        if m:
            port = int(m.group(1))
            break
    if port is None:
        sys.exit("the server did not start")
    photo = open(a.image, "rb").read()
    bomb = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x75\x30\0\0\x75\x30\x08\x02\0\0\0"
    cases = {
        "valid": (photo, "image/jpeg", {200}),
        "corrupt": (photo[: len(photo) // 3], "image/jpeg", {422}),
        "garbage": (bytes(random.Random(0).randrange(256) for _ in range(5000)), "image/png", {422}),
        "empty": (b"", "image/png", {422}),
        "bomb": (bomb, "image/png", {422}),
        "oversized": (b"x" * (3 << 20), "image/png", {413}),
        "wrong_type": (b"hello", "text/plain", {415}),
    }
    statuses, wrong, errors = Counter(), Counter(), Counter()
    reference = {}
    lock = threading.Lock()
    start_rss = rss_mib(server.pid)
    deadline = time.time() + a.duration

    def slow_client():
        # Sends half a request and stalls: the server's read timeout must cut it off.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
        time.sleep(3)
        s.close()

    def worker(seed):
        rng = random.Random(seed)
        names = list(cases)
        while time.time() < deadline:
            if rng.random() < 0.02:
                slow_client()
                with lock:
                    statuses["slow_client"] += 1
                continue
            name = rng.choice(names) if rng.random() < 0.5 else "valid"
            body, ctype, expected = cases[name]
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("POST", "/v1/predict?topk=5", body=body, headers={"Content-Type": ctype})
                r = c.getresponse()
                data = r.read()
                c.close()
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    errors[type(e).__name__ + ":" + name] += 1
                continue
            with lock:
                statuses[f"{name}:{r.status}"] += 1
                if r.status not in expected:
                    wrong[f"{name}:{r.status}"] += 1
                elif name == "valid":
                    top = [c["class"] for c in json.loads(data)["topk"]]
                    reference.setdefault("top", top)
                    if top != reference["top"]:
                        wrong["valid:different answer"] += 1

    samples = []

    def sampler():  # RSS every 10 s: growth that continues to the end would be a leak
        while time.time() < deadline:
            samples.append(round(rss_mib(server.pid), 1))
            time.sleep(10)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(a.threads)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alive = server.poll() is None
    end_rss = rss_mib(server.pid) if alive else None
    server.terminate()
    code = server.wait(timeout=30)
    summary = {"duration_s": a.duration, "threads": a.threads, "alive_at_end": alive,
               "exit_code": code, "statuses": dict(statuses), "wrong": dict(wrong),
               "client_errors": dict(errors), "rss_mib_start": round(start_rss, 1),
               "rss_mib_end": round(end_rss, 1) if end_rss else None, "rss_mib_every_10s": samples}
    print(json.dumps(summary, indent=1))
    five_xx = sum(n for k, n in statuses.items() if k.split(":")[-1].startswith("5"))
    if not alive or code != 0 or wrong or five_xx:
        sys.exit("soak FAILED")
    print("soak: ok")


if __name__ == "__main__":
    main()
