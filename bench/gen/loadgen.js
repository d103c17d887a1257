#!/usr/bin/env node
// relayrouter benchmark load generator: one scenario per run, bounded in time.
//
// WAMP v2 by hand over `ws` (subprotocols wamp.2.json / wamp.2.msgpack) or
// over RawSocket (TCP). Anonymous sessions, one realm. The generator only
// makes load and counts; bench/run.py measures CPU and memory from /proc at
// the marks this process prints on stdout, one JSON object per line:
//   {"mark":"start"}  measured window begins (after the warm-up)
//   {"mark":"end"}    measured window ends
//   {"result":{...}}  the figures, last line
// Progress and problems go to stderr.
//
//   node gen/loadgen.js --scenario rpc_throughput --ser msgpack \
//        --url ws://127.0.0.1:8080/ws [--raw tcp://127.0.0.1:8081] [--realm realm1] \
//        [--warmup 2] [--duration 10] [--window N] [--payload N] [--subscribers N] \
//        [--sessions N] [--patterns N] [--sub-urls URL,URL...]
//
// --sub-urls: where subscribers (round-robin) and the callee connect, when not
// at --url (bench/cluster.py: the ends on different nodes of a cluster).
// --callees each: RPC with one callee at every --sub-urls URL, one roundrobin
// registration (default "one": a single callee at the first).
'use strict';
const net = require('net');
const WebSocket = require('ws');
const { Packr } = require('msgpackr');

// ------------------------------------------------------------------ options
const SCENARIOS = {
  //                          transport     window payload
  rpc_latency:              { raw: false, window: 1, payload: 100 },
  rpc_throughput:           { raw: false, window: 64, payload: 100 },
  rawsocket_rpc_throughput: { raw: true, window: 64, payload: 100 },
  pubsub_1to1:              { raw: false, window: 256, payload: 200 },
  pubsub_fanout:            { raw: false, window: 64, payload: 200 },
  pubsub_latency:           { raw: false, window: 1, payload: 200 },
  binary_stream:            { raw: false, window: 16, payload: 65536 },
  pattern_subscriptions:    { raw: false, window: 256, payload: 200 },
  idle_sessions:            { raw: false, window: 0, payload: 0 },
};

function parseOptions(argv) {
  const o = {
    scenario: 'rpc_latency', ser: 'json', url: 'ws://127.0.0.1:8080/ws', raw: '', realm: 'realm1',
    warmup: 2, duration: 10, window: 0, payload: 0, subscribers: 100, sessions: 5000,
    patterns: 10000, concurrency: 100, settle: 2, 'max-ops': 50000000, 'sub-urls': '', callees: 'one',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in o) || i + 1 >= argv.length) throw new Error(`bad option ${argv[i]}`);
    o[key] = typeof o[key] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  const defaults = SCENARIOS[o.scenario];
  if (!defaults) throw new Error(`unknown scenario ${o.scenario} (${Object.keys(SCENARIOS).join(', ')})`);
  o.window = o.window || defaults.window;
  o.payload = o.payload || defaults.payload;
  o.useRaw = defaults.raw;
  if (o.useRaw && !o.raw) throw new Error(`${o.scenario} needs --raw tcp://HOST:PORT`);
  o.subUrls = o['sub-urls'] ? o['sub-urls'].split(',') : [o.url];
  return o;
}
const opt = parseOptions(process.argv.slice(2));
const log = (...a) => process.stderr.write(`[loadgen ${opt.scenario}/${opt.ser}] ${a.join(' ')}\n`);
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));

// Every run ends by itself, whatever the router does.
const deadline = opt.warmup + opt.duration + 90 + (opt.scenario === 'idle_sessions' ? opt.sessions / 20 : 0);
setTimeout(() => { log(`gave up after ${deadline} s`); process.exit(3); }, deadline * 1000).unref();

// ------------------------------------------------------------------ WAMP codes
const T = {
  HELLO: 1, WELCOME: 2, ABORT: 3, GOODBYE: 6, ERROR: 8, PUBLISH: 16, SUBSCRIBE: 32, SUBSCRIBED: 33,
  EVENT: 36, CALL: 48, RESULT: 50, REGISTER: 64, REGISTERED: 65, INVOCATION: 68, YIELD: 70,
};
const ROLES = { caller: {}, callee: {}, publisher: {}, subscriber: {} };

// ------------------------------------------------------------------ serializers
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });
const CODECS = {
  json: {
    subprotocol: 'wamp.2.json', rawId: 1, binaryFrames: false,
    encode: (msg) => JSON.stringify(msg),
    decode: (buf) => JSON.parse(buf.toString('utf8')),
    // "[36," possibly with spaces: read the type without decoding the message.
    peekType(buf) {
      let i = 1;
      while (buf[i] === 0x20) i++;
      let n = 0;
      for (let c = buf[i]; c >= 0x30 && c <= 0x39; c = buf[++i]) n = n * 10 + c - 0x30;
      return n;
    },
    binary: (bytes) => '\u0000' + bytes.toString('base64'), // WAMP's binary-in-JSON convention
    binaryLength: (v) => (typeof v === 'string' && v.charCodeAt(0) === 0 ? Buffer.byteLength(v.slice(1), 'base64') : -1),
    id: (x) => x,
  },
  msgpack: {
    subprotocol: 'wamp.2.msgpack', rawId: 2, binaryFrames: true,
    encode: (msg) => Buffer.from(packr.pack(msg)), // pack() reuses its buffer: copy
    decode: (buf) => packr.unpack(buf),
    peekType(buf) {
      const head = buf[0];
      if (head >= 0x90 && head <= 0x9f) return buf[1];
      return head === 0xdc ? buf[3] : -1;
    },
    binary: (bytes) => bytes,
    binaryLength: (v) => (v instanceof Uint8Array ? v.length : -1),
    // msgpackr writes integers above 2^32 as float64; IDs must stay integers.
    id: (x) => (x > 0xffffffff ? BigInt(x) : x),
  },
};
const codec = CODECS[opt.ser];
if (!codec) throw new Error(`unknown serializer ${opt.ser}`);

// ------------------------------------------------------------------ transports
// Both give: send(bytesOrString), close(), and call this.onmessage(Buffer).
class WsTransport {
  constructor(url) { this.url = url; }
  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, [codec.subprotocol], {
        perMessageDeflate: false, skipUTF8Validation: true, maxPayload: 64 << 20, handshakeTimeout: 60000,
      });
      ws.binaryType = 'nodebuffer';
      ws.on('open', () => (ws.protocol === codec.subprotocol ? resolve(this)
        : reject(new Error(`router chose subprotocol '${ws.protocol}'`))));
      ws.on('error', reject);
      ws.on('message', (data) => this.onmessage(data));
      ws.on('close', () => { this.closed = true; });
      this.ws = ws;
    });
  }
  send(data) { this.ws.send(data, { binary: codec.binaryFrames }); }
  close() { try { this.ws.close(1000); } catch (e) { /* already gone */ } }
}

class RawSocketTransport {
  constructor(url) {
    const u = new URL(url);
    this.host = u.hostname; this.port = Number(u.port);
    this.chunks = []; this.buffered = 0; this.shaken = false;
  }
  open() {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: this.host, port: this.port, noDelay: true });
      this.sock = sock;
      this.resolveOpen = resolve; this.rejectOpen = reject;
      // Handshake: 0x7F, max length 2^24 (0xF) | serializer, two reserved zero octets.
      sock.on('connect', () => sock.write(Buffer.from([0x7f, 0xf0 | codec.rawId, 0, 0])));
      sock.on('data', (chunk) => this.onData(chunk));
      sock.on('error', reject);
      sock.on('close', () => { this.closed = true; });
    });
  }
  onData(chunk) {
    this.chunks.push(chunk); this.buffered += chunk.length;
    for (;;) {
      if (this.buffered < 4) return;
      const head = this.peek(4);
      if (!this.shaken) {
        this.take(4);
        if (head[0] !== 0x7f || (head[1] & 0x0f) !== codec.rawId) {
          this.rejectOpen(new Error(`RawSocket handshake refused: ${head.toString('hex')}`));
          this.sock.destroy();
          return;
        }
        this.shaken = true; this.resolveOpen(this);
        continue;
      }
      const length = head.readUIntBE(1, 3);
      if (this.buffered < 4 + length) return;
      const frame = this.take(4 + length).subarray(4);
      const kind = head[0] & 0x07;
      if (kind === 0) this.onmessage(frame);
      else if (kind === 1) this.sock.write(this.frame(frame, 2)); // PING -> PONG, same payload
    }
  }
  peek(n) { return this.chunks[0].length >= n ? this.chunks[0] : Buffer.concat(this.chunks); }
  take(n) {
    let all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    all = all.subarray(n);
    this.chunks = all.length ? [all] : []; this.buffered = all.length;
    return out;
  }
  frame(payload, kind = 0) {
    const out = Buffer.allocUnsafe(4 + payload.length);
    out.writeUInt32BE(payload.length, 0); out[0] = kind;
    payload.copy(out, 4);
    return out;
  }
  send(data) { this.sock.write(this.frame(typeof data === 'string' ? Buffer.from(data) : data)); }
  close() { this.sock.end(); }
}

// ------------------------------------------------------------------ sessions
let errors = 0;
let nextRequest = 1;

class Session {
  constructor(name, url = opt.url) {
    this.name = name;
    this.url = url;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.handlers = {}; // message type -> fn(decoded)
    this.fast = null; // fn(Buffer) -> true when it consumed the message undecoded
  }
  async join() {
    this.transport = opt.useRaw ? new RawSocketTransport(opt.raw) : new WsTransport(this.url);
    this.transport.onmessage = (buf) => this.onmessage(buf);
    await this.transport.open();
    const welcome = new Promise((resolve, reject) => { this.welcomed = { resolve, reject }; });
    this.send([T.HELLO, opt.realm, { roles: ROLES, authmethods: ['anonymous'] }]);
    this.id = await welcome;
    return this;
  }
  onmessage(buf) {
    if (this.fast !== null && this.fast(buf)) return;
    const msg = codec.decode(buf);
    const type = msg[0];
    const handler = this.handlers[type];
    if (handler) { handler(msg); return; }
    if (type === T.WELCOME) { this.welcomed.resolve(msg[1]); return; }
    if (type === T.ABORT) { this.welcomed.reject(new Error(`ABORT ${JSON.stringify(msg)}`)); return; }
    if (type === T.ERROR) {
      errors++;
      if (errors < 5) log(this.name, 'got ERROR', JSON.stringify(msg));
      this.settle(msg[2], null, new Error(String(msg[4])));
      return;
    }
    this.settle(msg[1], msg, null);
  }
  settle(request, msg, error) {
    const waiter = this.pending.get(request);
    if (!waiter) return;
    this.pending.delete(request);
    if (error) waiter.reject(error); else waiter.resolve(msg);
  }
  send(msg) { this.transport.send(codec.encode(msg)); }
  request(msg) {
    return new Promise((resolve, reject) => { this.pending.set(msg[1], { resolve, reject }); this.send(msg); });
  }
  async subscribe(topic, options = {}) { return (await this.request([T.SUBSCRIBE, nextRequest++, options, topic]))[2]; }
  async register(procedure, options = {}) {
    return (await this.request([T.REGISTER, nextRequest++, options, procedure]))[2];
  }
  close() { this.transport.close(); }
}

const unique = `${process.pid}_${Date.now()}`;

// The measured window: warm up, mark, run, mark. Returns counters at both marks.
async function window(counters) {
  await sleep(opt.warmup);
  emit({ mark: 'start' });
  const t0 = process.hrtime.bigint(); const c0 = counters();
  await sleep(opt.duration);
  const t1 = process.hrtime.bigint(); const c1 = counters();
  emit({ mark: 'end' });
  return { seconds: Number(t1 - t0) / 1e9, c0, c1 };
}

// ------------------------------------------------------------------ RPC
async function rpc() {
  const procedure = `bench.rpc.${unique}`;
  const arg = 'a'.repeat(opt.payload);
  const each = opt.callees === 'each';
  const callees = [];
  for (const url of each ? opt.subUrls : [opt.subUrls[0]]) {
    const callee = await new Session('callee', url).join();
    callee.handlers[T.INVOCATION] = (msg) => callee.send([T.YIELD, codec.id(msg[1]), {}, msg[4] || []]);
    await callee.register(procedure, each ? { invoke: 'roundrobin' } : {});
    callees.push(callee);
  }
  const caller = await new Session('caller').join();
  if (callees.length > 1 || opt.subUrls[0] !== opt.url) {
    await reachable(caller, procedure);
    if (each) await sleep(1); // every node's callee in the caller node's directory
  }

  const latencyMode = opt.window === 1;
  const samples = [];
  let sent = 0, answered = 0, measuring = false, stopping = false, checked = 0, sentAt = 0n;
  const call = () => {
    sent++;
    if (latencyMode) sentAt = process.hrtime.bigint();
    caller.send([T.CALL, nextRequest++, {}, procedure, [arg]]);
  };
  caller.fast = (buf) => {
    if (codec.peekType(buf) !== T.RESULT) return false;
    answered++;
    if (latencyMode && measuring) samples.push(Number(process.hrtime.bigint() - sentAt) / 1000);
    if ((answered & 4095) === 1) { // check the payload survived, now and then
      const msg = codec.decode(buf); checked++;
      if (!msg[3] || msg[3][0] !== arg) { errors++; log('RESULT payload differs from the argument'); }
    }
    if (!stopping && sent < opt['max-ops']) call();
    return true;
  };
  for (let i = 0; i < opt.window; i++) call();
  const w = await window(() => { measuring = true; return answered; });
  stopping = true; measuring = false;
  await sleep(0.3);
  caller.close(); for (const callee of callees) callee.close();
  const out = { calls_per_s: Math.round((w.c1 - w.c0) / w.seconds), seconds: w.seconds, checked };
  if (latencyMode) Object.assign(out, percentiles(samples));
  return out;
}

// A callee on another node: its registration reaches the caller's node a
// little later. Call until one answers.
async function reachable(caller, procedure) {
  const t0 = Date.now();
  for (;;) {
    try {
      await caller.request([T.CALL, nextRequest++, {}, procedure, ['probe']]);
      errors = 0; // the refusals while the registration travelled are not errors of the run
      return;
    } catch (e) {
      if (Date.now() - t0 > 10000) throw new Error(`the callee on ${opt.subUrls[0]} is not reachable: ${e.message}`);
      await sleep(0.1);
    }
  }
}

function percentiles(samples) {
  samples.sort((a, b) => a - b);
  const at = (q) => (samples.length ? Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]) : null);
  return { p50_us: at(0.5), p90_us: at(0.9), p99_us: at(0.99), samples: samples.length };
}

// ------------------------------------------------------------------ pub/sub
async function pubsub({ subscribers, binary, patterns, latency }) {
  const topic = `bench.pat.data.t${unique}`;
  if (patterns) await holdPatterns(patterns);
  const urls = opt.subUrls;
  const receivers = await Promise.all(Array.from({ length: subscribers },
    (_, i) => new Session(`sub${i}`, urls[i % urls.length]).join()));
  const publisher = await new Session('pub').join();
  const size = opt.payload;
  const payload = binary ? codec.binary(Buffer.alloc(size, 0x5a)) : 'e'.repeat(size);

  let delivered = 0, published = 0, stopping = false, checked = 0;
  // Latency (window 1): from writing the PUBLISH to reading each of its EVENTs.
  let measuring = false, sentAt = 0n;
  const samples = [];
  // End-to-end window without acknowledgements: at most `window` publications
  // whose events have not all arrived yet.
  const pump = () => {
    while (!stopping && published < opt['max-ops'] && published - Math.floor(delivered / subscribers) < opt.window) {
      published++;
      if (latency) sentAt = process.hrtime.bigint();
      publisher.send([T.PUBLISH, nextRequest++, {}, topic, [payload]]);
    }
  };
  const onEvent = (buf) => {
    if (codec.peekType(buf) !== T.EVENT) return false;
    if (latency && measuring) samples.push(Number(process.hrtime.bigint() - sentAt) / 1000);
    if ((delivered & 4095) === 0) checkEvent(buf);
    delivered++;
    pump();
    return true;
  };
  const checkEvent = (buf) => {
    const msg = codec.decode(buf); checked++;
    const value = msg[4] && msg[4][0];
    const length = binary ? codec.binaryLength(value) : (typeof value === 'string' ? value.length : -1);
    if (length !== size) { errors++; log(`EVENT payload of ${length} bytes, expected ${size}`); }
  };
  for (const s of receivers) await s.subscribe(topic);
  if (urls.length > 1 || urls[0] !== opt.url) await interestEverywhere(publisher, receivers, topic);
  for (const s of receivers) s.fast = onEvent;
  pump();
  const w = await window(() => { measuring = true; return { delivered, published }; });
  measuring = false;
  stopping = true;
  await sleep(0.5);
  publisher.close(); receivers.forEach((s) => s.close());
  const events = (w.c1.delivered - w.c0.delivered) / w.seconds;
  const out = {
    events_per_s: Math.round(events), publishes_per_s: Math.round((w.c1.published - w.c0.published) / w.seconds),
    seconds: w.seconds, checked, delivered: w.c1.delivered - w.c0.delivered,
  };
  if (binary) out.mb_per_s = Math.round(events * size / 1e4) / 100;
  if (patterns) out.patterns = patterns;
  if (latency) Object.assign(out, percentiles(samples));
  return out;
}

// Subscribers on other nodes: their interest reaches the publisher's node
// through NATS a little later. Publish probes until every receiver has had
// one, then let the stragglers arrive before the run counts anything.
async function interestEverywhere(publisher, receivers, topic) {
  const seen = new Set();
  receivers.forEach((s) => { s.fast = (buf) => (codec.peekType(buf) === T.EVENT ? (seen.add(s), true) : false); });
  const t0 = Date.now();
  while (seen.size < receivers.length) {
    if (Date.now() - t0 > 30000) throw new Error(`only ${seen.size}/${receivers.length} subscribers reachable`);
    publisher.send([T.PUBLISH, nextRequest++, {}, topic, ['probe']]);
    await sleep(0.05);
  }
  await sleep(0.5);
}

// A session holding `count` prefix and wildcard subscriptions that share the
// benchmark topic's leading components but never match it.
async function holdPatterns(count) {
  const holder = await new Session('patterns').join();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      if (i % 2) await holder.subscribe(`bench.pat.p${i}`, { match: 'prefix' });
      else await holder.subscribe(`bench..data.w${i}`, { match: 'wildcard' });
    }
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: 128 }, worker));
  log(`${count} pattern subscriptions in ${Date.now() - t0} ms`);
  return holder;
}

// ------------------------------------------------------------------ idle sessions
async function idle() {
  const total = opt.sessions;
  const held = [];
  let next = 0, failed = 0;
  await sleep(opt.settle);
  emit({ mark: 'start' });
  await sleep(0.2);
  const t0 = process.hrtime.bigint();
  const worker = async () => {
    while (next < total) {
      const i = next++;
      try {
        const s = await new Session(`idle${i}`).join();
        await s.subscribe(`bench.idle.${unique}.s${i}`);
        held.push(s);
      } catch (e) {
        failed++; errors++;
        if (failed < 4) log('session failed:', e.message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opt.concurrency, total) }, worker));
  const establish = Number(process.hrtime.bigint() - t0) / 1e9;
  await sleep(opt.settle);
  emit({ mark: 'end' });
  await sleep(0.2);
  held.forEach((s) => s.close());
  await sleep(0.5);
  return { sessions: held.length, failed, establish_s: Math.round(establish * 100) / 100,
    sessions_per_s: Math.round(held.length / establish) };
}

// ------------------------------------------------------------------ main
async function main() {
  log(`url=${opt.useRaw ? opt.raw : opt.url} window=${opt.window} payload=${opt.payload}`);
  switch (opt.scenario) {
    case 'rpc_latency': case 'rpc_throughput': case 'rawsocket_rpc_throughput': return rpc();
    case 'pubsub_1to1': return pubsub({ subscribers: 1 });
    case 'pubsub_fanout': return pubsub({ subscribers: opt.subscribers });
    case 'pubsub_latency': return pubsub({ subscribers: opt.subscribers, latency: true });
    case 'binary_stream': return pubsub({ subscribers: 1, binary: true });
    case 'pattern_subscriptions': return pubsub({ subscribers: 1, patterns: opt.patterns });
    case 'idle_sessions': return idle();
  }
  throw new Error(`no such scenario ${opt.scenario}`);
}

main().then((figures) => {
  emit({ result: Object.assign({ scenario: opt.scenario, ser: opt.ser, window: opt.window, payload: opt.payload, errors }, figures) });
  process.exit(errors ? 2 : 0);
}, (e) => {
  log('failed:', (e && e.stack) || e);
  emit({ result: { scenario: opt.scenario, ser: opt.ser, error: String((e && e.message) || e) } });
  process.exit(1);
});
