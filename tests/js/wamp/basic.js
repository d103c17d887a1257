'use strict';
// Two autobahn-js sessions, A and B, exercise the Basic Profile against the
// router: join, subscribe/publish (publisher excluded by default), register/
// call with args and kwargs, an application error from the callee, and
// wamp.error.no_such_procedure. Prints what it saw; pytest asserts on it.
//
// config: {url | host+port, transport: "websocket"|"rawsocket", serializer}

const { autobahn, connect, leave, callError, withTimeout, deferred, main } = require('./common');

const TOPIC = 'com.example.js.topic';

async function pubsub(a, b, ms) {
  const seenByA = [];
  const seenByB = deferred();
  const selfEvent = deferred();
  await b.subscribe(TOPIC, (args, kwargs, details) => seenByB.resolve({ args, kwargs }));
  await a.subscribe(TOPIC, (args, kwargs) => {
    seenByA.push({ args, kwargs });
    if (kwargs && kwargs.self) selfEvent.resolve();
  });
  const ack = await a.publish(TOPIC, [1, 'two', { three: 3 }], { k: 'v', n: [1, 2.5, null] },
    { acknowledge: true });
  const toB = await withTimeout(seenByB.promise, ms, 'B receives the event published by A');
  // A sees its own second publish (exclude_me: false). The router handles A's
  // messages in order, so had the first event reached A it would come first.
  await a.publish(TOPIC, ['again'], { self: true }, { exclude_me: false });
  await withTimeout(selfEvent.promise, ms, 'A receives its own event with exclude_me: false');
  return { ack_publication: ack && typeof ack.id, to_b: toB, seen_by_a: seenByA };
}

async function binaryPayload(a, b, ms) {
  const got = deferred();
  await b.subscribe(TOPIC + '.bin', (args) => got.resolve(args[0]));
  const sent = Buffer.from([0, 1, 2, 253, 254, 255]);
  await a.publish(TOPIC + '.bin', [sent], {}, { acknowledge: true });
  return { sent, received: await withTimeout(got.promise, ms, 'binary event') };
}

async function rpc(a, b, ms) {
  await b.register('com.example.js.add2', (args) => args[0] + args[1]);
  await b.register('com.example.js.echo', (args, kwargs) => new autobahn.Result(args, kwargs));
  await b.register('com.example.js.fail', (args) => {
    throw new autobahn.Error('com.example.error', ['it failed', args[0]], { code: 42, why: 'asked to' });
  });
  const reg = await b.register('com.example.js.gone', () => 'here');
  const call = (p, args, kwargs) => withTimeout(a.call(p, args, kwargs), ms, `call ${p}`);
  const out = {};
  out.add2 = await call('com.example.js.add2', [2, 3]);
  const echo = await call('com.example.js.echo', [1, 'x', [true, null]], { y: { z: 1.5 } });
  out.echo = { args: echo.args, kwargs: echo.kwargs };
  out.app_error = await callError(a, 'com.example.js.fail', [7], {}, ms);
  out.no_such_procedure = await callError(a, 'com.example.js.nothing', [], {}, ms);
  out.before_unregister = await call('com.example.js.gone', []);
  await b.unregister(reg);
  out.after_unregister = await callError(a, 'com.example.js.gone', [], {}, ms);
  return out;
}

main(async (cfg) => {
  const ms = cfg.step_timeout_ms || 5000;
  const a = await connect(cfg, 'A');
  const b = await connect(cfg, 'B');
  const result = {
    protocol: a.connection.transport.info.protocol,
    session_ids: [a.session.id, b.session.id],
    pubsub: await pubsub(a.session, b.session, ms),
    rpc: await rpc(a.session, b.session, ms),
  };
  if (cfg.binary) result.binary = await binaryPayload(a.session, b.session, ms);
  result.leave_a = await leave(a, 'A', cfg);
  result.leave_b = await leave(b, 'B', cfg);
  return result;
});
