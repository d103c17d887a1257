"""Back-to-back HTTP requests from threads, one keep-alive connection each: requests/s, p50, p99."""

import http.client
import threading
import time

from bench.mediator_proxy import percentile


def load(port: int, make_request, seconds: float, clients: int, ok=(200,)) -> dict:
    """``make_request()`` -> (method, path, body or None, headers); counts answers not in ``ok`` as errors."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop_at = time.monotonic() + seconds

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            method, path, body, headers = make_request()
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status not in ok:
                errors[i] += 1
            latencies[i].append(time.perf_counter() - started)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    every = [x for per in latencies for x in per]
    return {"rps": len(every) / elapsed, "p50": percentile(every, 50) * 1000, "p99": percentile(every, 99) * 1000,
            "errors": sum(errors), "requests": len(every)}
