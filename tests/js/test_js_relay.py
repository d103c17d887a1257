"""The remote-lab relay with real parts: twistd with a [relay] config, an experiment run
by `relayrouter host`, a practable-style page in headless Chromium, and live video
(ffmpeg -> relayrouter host --ts -> router -> the router's JSMpeg page) whose
glass-to-glass latency the test measures."""

import json
import os
import shutil
import statistics
import sys
import threading
import time
import urllib.request

import jwt as pyjwt
import pytest

from conftest import REPO_ROOT, STARTUP_TIMEOUT, WS_LINE, missing_tool

from tests.ports import free_port

SECRET = "relay-js-test-secret-0123456789abcdef-0123456789"
AUDIENCE = "https://relay.example.org/access"
CONFIG = """
[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"

[[realms]]
name = "lab"
[realms.auth.jwt]
algorithms = ["HS256"]
audience = "{audience}"
authrole = "relay"
[[realms.auth.jwt.keys]]
secret_env = "RELAY_SECRET"

[relay]
realm = "lab"
stats_interval = 0
"""


def practable_token(topic, scopes=("read", "write"), booking_id="bk-1", **extra) -> str:
    now = int(time.time())
    claims = {"topic": topic, "prefix": "session", "scopes": list(scopes), "booking_id": booking_id,
              "aud": [AUDIENCE], "iat": now, "nbf": now, "exp": now + 600, **extra}
    return pyjwt.encode(claims, SECRET, algorithm="HS256")


class RelayRouter:
    def __init__(self, child, http_url):
        self.child = child
        self.http_url = http_url

    def connections(self) -> list:
        request = urllib.request.Request(f"{self.http_url}/status", headers={
            "Authorization": practable_token("admin", scopes=("relay:stats",))})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def wait_for_connections(self, topic, count, seconds=STARTUP_TIMEOUT):
        deadline = time.time() + seconds
        while sum(1 for c in self.connections() if c["topic"] == topic) < count:
            if time.time() > deadline:
                raise AssertionError(f"{count} connections on {topic} did not come\n{self.child.describe()}")
            time.sleep(0.05)


@pytest.fixture
def relay_router(tmp_path, spawn):
    (tmp_path / "relay.toml").write_text(CONFIG.format(audience=AUDIENCE))
    env = dict(os.environ, RELAY_SECRET=SECRET)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; "
            "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "relayrouter", "--state-dir", str(tmp_path / "state"),
            "--config", str(tmp_path / "relay.toml")]
    child = spawn("router", argv, env=env, merge_stderr=True)
    ws_url = child.wait_for(lambda l: (m := WS_LINE.search(l)) and m.group(1), STARTUP_TIMEOUT,
                            "the router's listening line")
    yield RelayRouter(child, "http://" + ws_url.split("://", 1)[1].rsplit("/", 1)[0])


def host(spawn, router, topic, *source):
    env = dict(os.environ, RELAYROUTER_TOKEN=practable_token(topic, booking_id=f"{topic}-host"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return spawn(f"relayrouter host {source[0]}",
                 [sys.executable, "-m", "relayrouter.cli", "host", "--session",
                  f"{router.http_url}/session/{topic}", *source],
                 env=env, merge_stderr=True)


RIG = """
import json, sys
for line in sys.stdin:
    command = json.loads(line)
    print(json.dumps({"echo": command}), flush=True)
    print(json.dumps({"speed": command.get("to")}), flush=True)
"""


def test_practable_page_and_experiment_in_chromium(relay_router, spawn, node_script, chromium_bin,
                                                  static_server, tmp_path):
    rig = tmp_path / "rig.py"
    rig.write_text(RIG)
    host(spawn, relay_router, "pend00", "--command", f"{sys.executable} -u {rig}")
    relay_router.wait_for_connections("pend00", 1)
    token = practable_token("pend00", booking_id="student-1")
    page = (f"{static_server}/relay/page.html?access={relay_router.http_url}/session/pend00"
            f"&token={token}")
    out = node_script("browser/drive.js", {"page_url": page, "chromium": chromium_bin}).result()
    assert out["error"] is None, out
    assert out["page_errors"] == []
    res = out["results"]
    assert res["status"] == 200 and "/session/pend00?code=" in res["uri"]
    assert res["frames"] == [{"text": '{"echo": {"set": "speed", "to": 42}}'}, {"text": '{"speed": 42}'}]


# ------------------------------------------------------------------ video

WIDTH, HEIGHT, FPS = 320, 240, 25


def frame_bytes(number: int) -> bytes:
    """A gray frame showing ``number`` as 16 black/white blocks (bit i at column i%4, row i//4)."""
    rows = []
    for block_row in range(4):
        row = b"".join((b"\xff" if number >> (block_row * 4 + col) & 1 else b"\x00") * (WIDTH // 4)
                       for col in range(4))
        rows.append(row * (HEIGHT // 4))
    return b"".join(rows)


class Camera(threading.Thread):
    """Feeds ffmpeg numbered frames in real time and remembers when each left."""

    def __init__(self, ffmpeg) -> None:
        super().__init__(daemon=True)
        self.ffmpeg = ffmpeg
        self.sent_at: dict[int, float] = {}
        self.running = True

    def run(self) -> None:
        start = time.time()
        number = 0
        while self.running:
            due = start + number / FPS
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            data = frame_bytes(number % 65536)
            try:
                self.ffmpeg.stdin.write(data)
                self.ffmpeg.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            self.sent_at[number % 65536] = time.time() * 1000
            number += 1


def test_live_video_plays_in_chromium_and_latency_is_measured(relay_router, spawn, node_script,
                                                             chromium_bin, record_property):
    import subprocess

    ffmpeg_bin = shutil.which("ffmpeg")
    if ffmpeg_bin is None:
        missing_tool("ffmpeg is not installed (Debian: apt-get install -y ffmpeg)")
    ts_port = free_port()
    video_host = host(spawn, relay_router, "video0", "--ts", f"tcp:{ts_port}:interface=127.0.0.1")
    video_host.wait_for(lambda l: "Video ingest listening" in l, STARTUP_TIMEOUT, "the ingest listener")
    relay_router.wait_for_connections("video0", 1)
    ffmpeg = subprocess.Popen(
        [ffmpeg_bin, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray",
         "-video_size", f"{WIDTH}x{HEIGHT}", "-framerate", str(FPS), "-i", "pipe:0", "-an",
         "-c:v", "mpeg1video", "-q:v", "3", "-bf", "0", "-g", "10", "-f", "mpegts", "-muxdelay", "0.001",
         "-flush_packets", "1", f"http://127.0.0.1:{ts_port}/ts/video0"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    camera = Camera(ffmpeg)
    camera.start()
    try:
        token = practable_token("video0", scopes=("read",), booking_id="viewer-1")
        page = f"{relay_router.http_url}/relay/video.html#access=/session/video0&token={token}&gl=0"
        out = node_script("relay/video_drive.js", {"page_url": page, "chromium": chromium_bin,
                                                   "seconds": 4}).result(timeout=120)
    finally:
        camera.running = False
        camera.join(5)
        ffmpeg.stdin.close()
        ffmpeg.terminate()
        ffmpeg.wait(10)
    assert out["page_errors"] == [], out
    samples = [(n, t) for n, t in out["samples"] if n in camera.sent_at]
    # The canvas changes: many distinct frames, in order.
    numbers = [n for n, _ in samples]
    assert len(set(numbers)) >= 20, out
    assert numbers == sorted(numbers), numbers
    latencies = [t - camera.sent_at[n] for n, t in samples]
    median = statistics.median(latencies)
    record_property("glass_to_glass_ms_median", round(median))
    print(f"\nglass-to-glass latency over {len(latencies)} frames: median {median:.0f} ms, "
          f"min {min(latencies):.0f} ms, max {max(latencies):.0f} ms")
    assert 0 < median < 3000, latencies
