'use strict';
// Shared helpers for the Node test scripts run by pytest (tests/js/test_js_*.py).
//
// Each script takes one JSON argument (its configuration), prints JSON lines on
// stdout ({"event": ...} while it runs, {"result": ...} once at the end) and
// exits 0; on any failure it prints "FAIL: <message>" on stderr and exits 1.
// Every wait is bounded: a watchdog ends the script if it outlives its budget.

const autobahn = require('autobahn');

const SERIALIZERS = {
  json: () => new autobahn.serializer.JSONSerializer(),
  msgpack: () => new autobahn.serializer.MsgpackSerializer(),
  cbor: () => new autobahn.serializer.CBORSerializer(),
};

function emit(obj) {
  process.stdout.write(JSON.stringify(obj, jsonSafe) + '\n');
}

// Buffers (binary WAMP payloads) are printed as {"$bytes": "<hex>"} so the
// pytest side can compare them with Python bytes. BigInts (msgpackr decodes
// 64-bit integers, WAMP IDs above 2^32 included, to BigInt) print as numbers.
function jsonSafe(key, value) {
  if (typeof value === 'bigint') {
    return Number.isSafeInteger(Number(value)) ? Number(value) : String(value);
  }
  if (value && value.type === 'Buffer' && Array.isArray(value.data)) {
    return { $bytes: Buffer.from(value.data).toString('hex') };
  }
  if (value instanceof Uint8Array) {
    return { $bytes: Buffer.from(value).toString('hex') };
  }
  return value;
}

function fail(message) {
  process.stderr.write('FAIL: ' + message + '\n');
  process.exit(1);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

function transportFor(cfg) {
  if (cfg.transport === 'rawsocket') {
    // autobahn-js speaks RawSocket only from Node and only with JSON.
    return { type: 'rawsocket', host: cfg.host || '127.0.0.1', port: cfg.port };
  }
  const make = SERIALIZERS[cfg.serializer || 'json'];
  if (!make) fail(`unknown serializer ${cfg.serializer}`);
  return { type: 'websocket', url: cfg.url, serializers: [make()] };
}

// Join cfg.realm; resolves to {session, connection, closed} where `closed`
// resolves with {reason, details} when the connection ends after the join.
function connect(cfg, label) {
  const joined = deferred();
  const closed = deferred();
  let opened = false;
  const connection = new autobahn.Connection({
    transports: [transportFor(cfg)],
    realm: cfg.realm || 'realm1',
    max_retries: 0,
    retry_if_unreachable: false,
    // autobahn-js 22.11.1 delivers progressive call results with
    // deferred.notify(), which only when.js deferreds have: a caller that wants
    // progress sets cfg.when_promises (its calls then return when.js promises).
    use_es6_promises: !cfg.when_promises,
  });
  connection.onopen = (session) => {
    opened = true;
    joined.resolve({ session, connection, closed: closed.promise });
  };
  connection.onclose = (reason, details) => {
    if (opened) {
      closed.resolve({ reason, details: { reason: details.reason, message: details.message } });
    } else {
      joined.reject(new Error(`${label}: connection ended before the join: ${reason} ${JSON.stringify(details)}`));
    }
    return true; // never retry: a test connection that drops is a failure
  };
  connection.open();
  return withTimeout(joined.promise, cfg.step_timeout_ms || 5000, `${label}: join ${cfg.realm || 'realm1'}`);
}

// Leave with GOODBYE and wait for the router's answer and the close.
async function leave(peer, label, cfg) {
  peer.connection.close();
  return withTimeout(peer.closed, cfg.step_timeout_ms || 5000, `${label}: leave`);
}

// Run a call that must fail; resolve to the WAMP error it carried.
async function callError(session, procedure, args, kwargs, ms) {
  try {
    const res = await withTimeout(session.call(procedure, args, kwargs), ms || 5000, `call ${procedure}`);
    throw new Error(`call ${procedure} should have failed but returned ${JSON.stringify(res)}`);
  } catch (e) {
    if (e instanceof autobahn.Error) {
      return { error: e.error, args: e.args, kwargs: e.kwargs };
    }
    throw e;
  }
}

// Read one line of stdin as a JSON command (used by long-running peers).
function nextStdinLine() {
  const got = deferred();
  let buf = '';
  const onData = (chunk) => {
    buf += chunk;
    const nl = buf.indexOf('\n');
    if (nl >= 0) {
      process.stdin.off('data', onData);
      process.stdin.pause();
      got.resolve(buf.slice(0, nl));
    }
  };
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', onData);
  process.stdin.once('end', () => got.reject(new Error('stdin closed')));
  process.stdin.resume();
  return got.promise;
}

// Entry point: parse the JSON config, arm the watchdog, run, print the result.
function main(run) {
  let cfg;
  try {
    cfg = JSON.parse(process.argv[2] || '{}');
  } catch (e) {
    fail(`bad JSON config argument: ${e.message}`);
  }
  const budget = cfg.total_timeout_ms || 20000;
  setTimeout(() => fail(`script did not finish within ${budget} ms`), budget).unref();
  process.on('unhandledRejection', (e) => fail(`unhandled rejection: ${e && e.stack || e}`));
  run(cfg).then(
    (result) => { emit({ result }); process.exit(0); },
    (e) => fail(e instanceof autobahn.Error
      ? `WAMP error ${e.error} ${JSON.stringify(e.args)} ${JSON.stringify(e.kwargs)}`
      : (e && e.stack) || String(e)),
  );
}

module.exports = {
  autobahn, emit, fail, withTimeout, deferred, connect, leave, callError, nextStdinLine, main,
};
