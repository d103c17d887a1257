'use strict';
// Raw relay fan-out: one writer, N raw readers on one topic, the seed's access flow.
// argv[2]: {"access": "http://host:port/session/TOPIC", "writer_token", "reader_token",
//           "readers", "size", "warmup", "seconds", "max_buffered"}
// Prints {"result": {...}} with frames/s and MB/s delivered to all readers together.
const WebSocket = require('ws');

const cfg = JSON.parse(process.argv[2]);
setTimeout(() => { process.stderr.write('FAIL: deadline\n'); process.exit(1); },
  (cfg.warmup + cfg.seconds + 60) * 1000).unref();

async function open(token) {
  const response = await fetch(cfg.access, { method: 'POST', headers: { Authorization: token } });
  const body = await response.json();
  if (response.status !== 200) throw new Error(`access: ${response.status} ${JSON.stringify(body)}`);
  const ws = new WebSocket(body.uri, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return ws;
}

async function main() {
  let counting = false;
  let frames = 0;
  let bytes = 0;
  let received = 0;  // by all readers, warm-up included: the writer's window
  const readers = [];
  for (let i = 0; i < cfg.readers; i++) {
    const ws = await open(cfg.reader_token);
    ws.on('message', (data) => { received += 1; if (counting) { frames += 1; bytes += data.length; } });
    readers.push(ws);
  }
  const writer = await open(cfg.writer_token);
  const payload = Buffer.alloc(cfg.size, 7);
  let sent = 0;
  let total = 0;
  let stop = false;
  // Closed loop: at most `window` frames per reader not yet received by it, so the
  // figure is what the relay delivers without dropping (slow-reader drops are counted apart).
  const window = cfg.window || 128;
  function pump() {
    while (!stop && writer.bufferedAmount < cfg.max_buffered
           && total * cfg.readers - received < window * cfg.readers) {
      writer.send(payload, { binary: true });
      total += 1;
      if (counting) sent += 1;
    }
    if (!stop) setImmediate(pump);
  }
  pump();
  await new Promise((r) => setTimeout(r, cfg.warmup * 1000));
  counting = true;
  const started = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, cfg.seconds * 1000));
  counting = false;
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  stop = true;
  const status = await (await fetch(cfg.access.replace(/\/session\/.*$/, '/status'),
    { headers: { Authorization: cfg.stats_token } })).json();
  const dropped = status.reduce((n, r) => n + r.relayrouter.dropped, 0);
  const queuedMax = status.reduce((n, r) => Math.max(n, r.relayrouter.queued.messages), 0);
  for (const ws of [...readers, writer]) ws.terminate();
  return { frames_per_s: frames / elapsed, mb_per_s: bytes / elapsed / 1e6,
           sent_per_s: sent / elapsed, readers: cfg.readers, size: cfg.size,
           dropped_total: dropped, queued_max: queuedMax };
}

main().then((result) => { process.stdout.write(JSON.stringify({ result }) + '\n'); process.exit(0); },
  (e) => { process.stderr.write('FAIL: ' + ((e && e.stack) || e) + '\n'); process.exit(1); });
