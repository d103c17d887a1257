'use strict';
// The Node half of the cross-client tests (its Python twin is ../py_peer.py;
// both take the same config and print the same shapes).
//
// mode "serve": register <prefix>.add2/.echo/.fail, subscribe <prefix>.topic,
//   print {"event": "ready"}, and end once `expect_events` events arrived.
// mode "drive": call the other side's procedures (result, echo, application
//   error, unknown procedure) and publish one event to <prefix>.topic.
//
// config: {mode, url, serializer, prefix, expect_events, binary}

const { autobahn, emit, connect, leave, callError, withTimeout, deferred, main } = require('./common');

const EVENT_ARGS = ['from', 'node', 42];
const EVENT_KWARGS = { lang: 'js', list: [1, 2.5, null, true] };
const BLOB = Buffer.from([0, 1, 2, 0x7f, 0x80, 0xff]);

async function serve(cfg, peer) {
  const s = peer.session;
  const events = [];
  const allEvents = deferred();
  const want = cfg.expect_events || 1;
  await s.register(cfg.prefix + '.add2', (args) => args[0] + args[1]);
  await s.register(cfg.prefix + '.echo', (args, kwargs) => new autobahn.Result(args, kwargs));
  await s.register(cfg.prefix + '.fail', (args) => {
    throw new autobahn.Error('com.example.error', ['it failed', args[0]], { code: 42, why: 'asked to' });
  });
  await s.subscribe(cfg.prefix + '.topic', (args, kwargs) => {
    events.push({ args, kwargs });
    emit({ event: 'received', args, kwargs });
    if (events.length >= want) allEvents.resolve();
  });
  emit({ event: 'ready', session: s.id });
  await withTimeout(allEvents.promise, cfg.serve_timeout_ms || 15000, `${want} event(s) on ${cfg.prefix}.topic`);
  return { events, leave: await leave(peer, 'serve', cfg) };
}

async function drive(cfg, peer) {
  const s = peer.session;
  const ms = cfg.step_timeout_ms || 5000;
  const call = (name, args, kwargs) => withTimeout(s.call(cfg.prefix + name, args, kwargs), ms, `call ${cfg.prefix}${name}`);
  const out = {};
  out.add2 = await call('.add2', [2, 3]);
  const echoKwargs = { nested: { a: [1, 'b'] } };
  if (cfg.binary) echoKwargs.blob = BLOB;
  const echo = await call('.echo', ['x', 1.5, null], echoKwargs);
  out.echo = { args: echo.args, kwargs: echo.kwargs };
  out.app_error = await callError(s, cfg.prefix + '.fail', [7], {}, ms);
  out.no_such_procedure = await callError(s, cfg.prefix + '.nothing', [], {}, ms);
  const kwargs = Object.assign({}, EVENT_KWARGS, cfg.binary ? { blob: BLOB } : {});
  const ack = await withTimeout(s.publish(cfg.prefix + '.topic', EVENT_ARGS, kwargs, { acknowledge: true }),
    ms, `publish to ${cfg.prefix}.topic`);
  out.published = Boolean(ack && ack.id);
  out.leave = await leave(peer, 'drive', cfg);
  return out;
}

main(async (cfg) => {
  const peer = await connect(cfg, cfg.mode);
  if (cfg.mode === 'serve') return serve(cfg, peer);
  if (cfg.mode === 'drive') return drive(cfg, peer);
  throw new Error(`unknown mode ${cfg.mode}`);
});
