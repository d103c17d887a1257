'use strict';
// The Node half of the Advanced Profile cross-client tests (test_js_advanced.py);
// its Python twin is ../py_adv_peer.py, started first, whose session details
// arrive in cfg.py (or cfg.peers). Every mode ends by publishing <base>.done,
// which ends the Python peer, and prints what it saw as its result.
//
// mode "pattern":   prefix/wildcard subscriptions get Python's events with
//                   details.topic; calls resolve exact > longest prefix > wildcard
//                   across a Python and a JS callee.
// mode "blackwhite": publishes with eligible/exclude (session, authid, authrole),
//                   exclude_me and disclose_me to two Python subscribers and itself.
// mode "shared":    a JS roundrobin callee shares a procedure with the Python one;
//                   a JS caller alternates between them, then one leaves.
// mode "rpc":       progressive results, the three cancel modes and the call
//                   timeout, JS caller against the Python callee.
//
// config: {mode, url, serializer, base, py | peers, leaver, step_timeout_ms}

const { autobahn, emit, connect, leave, callError, withTimeout, deferred, main } = require('./common');

const MSG = { ERROR: 8, CALL: 48, CANCEL: 49, RESULT: 50 };

// Collects events in order; wait(pred) resolves once a collected event passes pred.
function collector() {
  const events = [];
  let waiters = [];
  return {
    events,
    push(ev) {
      events.push(ev);
      waiters = waiters.filter((w) => !(w.pred(ev) && (w.resolve(ev), true)));
    },
    wait(pred, ms, what) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      const d = deferred();
      waiters.push({ pred, resolve: d.resolve });
      return withTimeout(d.promise, ms, what);
    },
  };
}

async function done(s, cfg) {
  await withTimeout(s.publish(cfg.base + '.done', [], {}, { acknowledge: true }), cfg.ms, 'publish done');
}

// ------------------------------------------------------------------ pattern

async function pattern(cfg, peer) {
  const s = peer.session;
  const base = cfg.base;
  const byPrefix = collector();
  const byWildcard = collector();
  const seen = (box) => (args, kwargs, details) => box.push({ arg: args[0], topic: details.topic });
  await s.subscribe(base + '.sensor', seen(byPrefix), { match: 'prefix' });
  await s.subscribe(base + '..temp', seen(byWildcard), { match: 'wildcard' });
  const jsInvoked = [];
  const report = (args, kwargs, details) => {
    jsInvoked.push(details.procedure);
    return { by: 'js', procedure: details.procedure };
  };
  await s.register(base + '.rpc', report, { match: 'prefix' });
  await s.register(base + '.w.a', report, { match: 'prefix' });

  // Python publishes once we are subscribed; the last topic reaches both
  // subscriptions, and one publisher's events arrive in order, so once both
  // have seen it nothing more is coming.
  const topics = ['.sensor.humidity', '.other.temp', '.unmatched.x', '.sensor.temp'].map((t) => base + t);
  const published = await withTimeout(s.call(base + '.ctl.publish', [topics]), cfg.ms, 'ctl.publish');
  const last = (ev) => ev.arg === base + '.sensor.temp';
  await byPrefix.wait(last, cfg.ms, 'prefix subscription gets the last event');
  await byWildcard.wait(last, cfg.ms, 'wildcard subscription gets the last event');

  const calls = {};
  for (const p of ['.proc.a.b', '.rpc.exact', '.rpc.other', '.rpc.exact.more', '.w.a.z', '.w.b.z']) {
    calls[p] = await withTimeout(s.call(base + p, ['x']), cfg.ms, `call ${base + p}`);
  }
  calls['.nothing.at.all'] = await callError(s, base + '.nothing.at.all', [], {}, cfg.ms);
  await done(s, cfg);
  return {
    published, prefix: byPrefix.events, wildcard: byWildcard.events,
    calls, js_invoked: jsInvoked, leave: await leave(peer, 'pattern', cfg),
  };
}

// --------------------------------------------------------------- blackwhite

async function blackwhite(cfg, peer) {
  const s = peer.session;
  const topic = cfg.base + '.bw';
  const { a, b } = cfg.peers;
  const me = s.id;
  const mine = collector();
  await s.subscribe(topic, (args, kwargs, details) => mine.push({
    args, publisher: details.publisher === undefined ? null : details.publisher,
    publisher_authrole: details.publisher_authrole === undefined ? null : details.publisher_authrole,
  }));
  // the meta API tells us our own authid (autobahn-js does not keep it from WELCOME)
  const self = await withTimeout(s.call('wamp.session.get', [me]), cfg.ms, 'wamp.session.get');
  const publications = [
    [1, { eligible: [a.session] }],
    [2, { exclude: [a.session] }],
    [3, { exclude_authid: [b.authid] }],
    [4, { eligible_authrole: ['anonymous'], exclude: [b.session], exclude_me: false }],
    [5, { eligible: [a.session, me], exclude_me: false, disclose_me: true }],
    [6, { eligible_authrole: ['nobody'], exclude_me: false }],
    [7, { eligible: [a.session, b.session, me], exclude_authid: [a.authid], exclude_me: false }],
    [8, { exclude_authrole: ['anonymous'], exclude_me: false }],
    [9, { eligible_authid: [b.authid, self.authid], exclude_me: false, disclose_me: true }],
    ['end', { exclude_me: false }],
  ];
  const acks = [];
  for (const [arg, options] of publications) {
    const ack = await withTimeout(s.publish(topic, [arg], {}, Object.assign({ acknowledge: true }, options)),
      cfg.ms, `publish ${arg}`);
    acks.push(typeof (ack && ack.id));
  }
  await mine.wait((ev) => ev.args[0] === 'end', cfg.ms, 'own end marker');
  return { me, authid: self.authid, acks, events: mine.events, leave: await leave(peer, 'blackwhite', cfg) };
}

// ------------------------------------------------------------------- shared

async function shared(cfg, peer) {
  const caller = peer.session;
  const procedure = cfg.base + '.shared';
  const leaves = collector();
  await caller.subscribe('wamp.session.on_leave', (args) => leaves.push(args[0]));
  const callee = await connect(cfg, 'js callee');
  let jsCalls = 0;
  await callee.session.register(procedure, () => { jsCalls += 1; return 'js'; }, { invoke: 'roundrobin' });
  const call = () => withTimeout(caller.call(procedure), cfg.ms, `call ${procedure}`);

  const before = [];
  for (let i = 0; i < 6; i++) before.push(await call());

  // a third callee asking for another policy is refused
  const third = await connect(cfg, 'third callee');
  const refused = {};
  for (const invoke of ['random', 'single']) {
    try {
      await withTimeout(third.session.register(procedure, () => 'third', { invoke }), cfg.ms, `register ${invoke}`);
      refused[invoke] = 'registered';
    } catch (e) {
      if (!(e instanceof autobahn.Error)) throw e;
      refused[invoke] = { error: e.error, args: e.args };
    }
  }
  await leave(third, 'third callee', cfg);

  let callee_leave;
  if (cfg.leaver === 'js') {
    callee_leave = await leave(callee, 'js callee', cfg);
  } else {
    // the Python callee leaves when it gets <base>.done; the router publishes
    // wamp.session.on_leave after removing its registrations
    await done(caller, cfg);
    await leaves.wait((id) => id === cfg.py.session, cfg.ms, 'wamp.session.on_leave of the Python callee');
  }
  const after = [];
  for (let i = 0; i < 4; i++) after.push(await call());
  if (cfg.leaver === 'js') {
    await done(caller, cfg);
  } else {
    callee_leave = await leave(callee, 'js callee', cfg);
  }
  return { before, after, refused, js_calls: jsCalls, callee_leave, leave: await leave(peer, 'shared', cfg) };
}

// ---------------------------------------------------------------------- rpc

// Records the WAMP messages the session sends and receives. autobahn-js 22.11.1
// rejects a call canceled with skip/killnowait locally at once (Error
// "Cancelled") and forgets it, so the router's ERROR for it, which the spec
// requires, would look like a reply to an unknown request: the client would
// fail the connection as a protocol violation. The tap keeps that ERROR (it is
// what the test asserts on) and does not pass it to the session.
function tapWire(session) {
  const wire = [];
  const send = session._send_wamp;
  session._send_wamp = (msg) => { wire.push(['out', msg]); return send(msg); };
  const receive = session._socket.onmessage;
  session._socket.onmessage = (msg) => {
    const late = msg[0] === MSG.ERROR && msg[1] === MSG.CALL && !(msg[2] in session._call_reqs);
    wire.push([late ? 'in-after-local-cancel' : 'in', msg]);
    if (!late) receive(msg);
  };
  return wire;
}

async function rejection(promise, ms, what) {
  try {
    const res = await withTimeout(promise, ms, what);
    throw new Error(`${what} should have failed but returned ${JSON.stringify(res)}`);
  } catch (e) {
    if (e instanceof autobahn.Error) return { error: e.error, args: e.args, kwargs: e.kwargs };
    throw e;
  }
}

async function rpc(cfg, peer) {
  const s = peer.session;
  const base = cfg.base;
  const wire = tapWire(s);
  const out = {};

  // progressive results: when.js promise, progress as the third then() handler
  const progress = [];
  const p = s.call(base + '.progress', [3], {}, { receive_progress: true });
  p.then(null, null, (r) => progress.push(r instanceof autobahn.Result ? { args: r.args, kwargs: r.kwargs } : r));
  out.progress = { final: await withTimeout(p, cfg.ms, 'progressive call'), progress };

  const ping = (tag) => withTimeout(s.call(base + '.ping', [tag]), cfg.ms, `ping ${tag}`);
  const lastCallRequest = () => wire.filter(([dir, m]) => dir === 'out' && m[0] === MSG.CALL).pop()[1][1];

  // kill: the router interrupts the callee and the caller gets the callee's error
  const kill = s.call(base + '.stuck', ['kill']);
  kill.cancel({ mode: 'kill' });
  out.kill = await rejection(kill, cfg.ms, 'call canceled with kill');
  out.kill.request = lastCallRequest();
  await ping('after kill');

  // skip and killnowait: the caller gets wamp.error.canceled at once; the
  // ping after each shows (in the callee's log) whether an INTERRUPT came first
  for (const mode of ['skip', 'killnowait']) {
    const c = s.call(base + '.stuck', [mode]);
    const request = lastCallRequest();
    c.cancel({ mode });
    out[mode] = { local: await rejection(c, cfg.ms, `call canceled with ${mode}`), request };
    await ping('after ' + mode);
  }

  // timeout (ms): the router cancels the call; the caller hears within the bound
  const started = Date.now();
  out.timeout = await rejection(s.call(base + '.stuck', ['timeout'], {}, { timeout: cfg.call_timeout_ms }),
    cfg.ms, 'call with timeout');
  out.timeout.elapsed_ms = Date.now() - started;
  await ping('after timeout');

  await done(s, cfg);
  out.wire = wire.filter(([, m]) => [MSG.ERROR, MSG.CANCEL].includes(m[0]));
  out.leave = await leave(peer, 'rpc', cfg);
  return out;
}

main(async (cfg) => {
  cfg.ms = cfg.step_timeout_ms || 5000;
  const peer = await connect(cfg, cfg.mode);
  emit({ event: 'joined', session: peer.session.id });
  const mode = { pattern, blackwhite, shared, rpc }[cfg.mode];
  if (!mode) throw new Error(`unknown mode ${cfg.mode}`);
  return mode(cfg, peer);
});
