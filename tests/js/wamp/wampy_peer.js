'use strict';
// wampy.js (npm `wampy`) as the Node half of the cross-client tests, with the
// same config and output shapes as peer.js (autobahn-js) and ../py_peer.py.
//
// mode "serve": register <prefix>.add2/.echo/.fail, subscribe <prefix>.topic,
//   print {"event": "ready"}, and end once `expect_events` events arrived.
// mode "drive": call the other side's procedures (result, echo, application
//   error, unknown procedure) and publish one event to <prefix>.topic.
//
// With MessagePack and CBOR, wampy sends JavaScript `undefined` for options
// nobody set (SUBSCRIBE {match: undefined, get_retained: undefined}): msgpackr
// encodes it as extension type 0, cbor-x as CBOR's `undefined`. Custom options
// (`_app_trace`, as an application passes one it may not have) carry it into
// HELLO, REGISTER, CALL, PUBLISH, YIELD and ERROR too. The script records every
// options/details key it sent as undefined (`sent_undefined`), so the test
// can tell that the router really saw them.
//
// config: {mode, url, serializer, prefix, expect_events, binary}

const { Wampy } = require('wampy');
const { JsonSerializer } = require('wampy/JsonSerializer.js');
const { MsgpackSerializer } = require('wampy/MsgpackSerializer.js');
const { CborSerializer } = require('wampy/CborSerializer.js');
const { emit, withTimeout, deferred, main } = require('./common');

// The WebSocket class wampy itself depends on (Node 20 has no global one).
const WebSocket = require(require.resolve('ws', { paths: [require.resolve('wampy')] }));

const SERIALIZERS = {
  json: () => new JsonSerializer(),
  msgpack: () => new MsgpackSerializer(),
  cbor: () => new CborSerializer(),
};

// Where each message's options/details dict sits (WAMP message type -> index).
const OPTIONS_AT = { 1: 2, 3: 1, 6: 1, 8: 3, 16: 2, 32: 2, 48: 2, 49: 2, 64: 2, 70: 2 };
const TYPE_NAMES = { 1: 'HELLO', 3: 'ABORT', 6: 'GOODBYE', 8: 'ERROR', 16: 'PUBLISH', 32: 'SUBSCRIBE',
  48: 'CALL', 49: 'CANCEL', 64: 'REGISTER', 70: 'YIELD' };

const EVENT_ARGS = ['from', 'wampy', 42];
const EVENT_KWARGS = { lang: 'wampy', list: [1, 2.5, null, true] };
const BLOB = Buffer.from([0, 1, 2, 0x7f, 0x80, 0xff]);

// Wrap the serializer so every undefined option on the wire is written down.
function recording(serializer, sentUndefined) {
  const encode = serializer.encode.bind(serializer);
  serializer.encode = (message) => {
    const at = OPTIONS_AT[message[0]];
    const options = at === undefined ? null : message[at];
    if (options && typeof options === 'object') {
      for (const [key, value] of Object.entries(options)) {
        if (value === undefined) sentUndefined.push(`${TYPE_NAMES[message[0]]}.${key}`);
      }
    }
    return encode(message);
  };
  return serializer;
}

async function connect(cfg) {
  const make = SERIALIZERS[cfg.serializer || 'json'];
  if (!make) throw new Error(`unknown serializer ${cfg.serializer}`);
  const sentUndefined = [];
  const closed = deferred();
  const wampy = new Wampy(cfg.url, {
    realm: cfg.realm || 'realm1',
    ws: WebSocket,
    serializer: recording(make(), sentUndefined),
    autoReconnect: false,
    helloCustomDetails: TRACE,
    onClose: () => closed.resolve(),
  });
  const welcome = await withTimeout(wampy.connect(), cfg.step_timeout_ms || 5000, 'wampy: join');
  return { wampy, welcome, sentUndefined, closed: closed.promise };
}

// A custom option an application passes along, here without a value.
const TRACE = { _app_trace: undefined };

// An application error thrown by a procedure: wampy sends its fields as ERROR.
class AppError extends Error {
  constructor(error, argsList, argsDict) {
    super(error);
    this.error = error;
    this.details = { ...TRACE };
    this.argsList = argsList;
    this.argsDict = argsDict;
  }
}

async function serve(cfg, peer) {
  const w = peer.wampy;
  const events = [];
  const allEvents = deferred();
  const want = cfg.expect_events || 1;
  await w.register(cfg.prefix + '.add2', ({ argsList }) => [argsList[0] + argsList[1]], TRACE);
  await w.register(cfg.prefix + '.echo', ({ argsList, argsDict }) => ({ argsList, argsDict, options: TRACE }));
  await w.register(cfg.prefix + '.fail', ({ argsList }) => {
    throw new AppError('com.example.error', ['it failed', argsList[0]], { code: 42, why: 'asked to' });
  });
  await w.subscribe(cfg.prefix + '.topic', ({ argsList, argsDict }) => {
    const event = { args: argsList, kwargs: argsDict };
    events.push(event);
    emit({ event: 'received', ...event });
    if (events.length >= want) allEvents.resolve();
  }, TRACE);
  emit({ event: 'ready', session: w.getSessionId() });
  await withTimeout(allEvents.promise, cfg.serve_timeout_ms || 15000, `${want} event(s) on ${cfg.prefix}.topic`);
  return { events, ...(await leave(peer, cfg)) };
}

async function callError(w, procedure, payload, ms) {
  try {
    const res = await withTimeout(w.call(procedure, payload, TRACE), ms, `call ${procedure}`);
    throw new Error(`call ${procedure} should have failed but returned ${JSON.stringify(res)}`);
  } catch (e) {
    if (e.name !== 'CallError') throw e;
    return { error: e.errorUri, args: e.argsList || [], kwargs: e.argsDict || {} };
  }
}

async function drive(cfg, peer) {
  const w = peer.wampy;
  const ms = cfg.step_timeout_ms || 5000;
  const call = (name, payload) => withTimeout(w.call(cfg.prefix + name, payload, TRACE), ms,
    `call ${cfg.prefix}${name}`);
  const out = {};
  out.add2 = (await call('.add2', [2, 3])).argsList[0];
  const echoKwargs = { nested: { a: [1, 'b'] } };
  if (cfg.binary) echoKwargs.blob = BLOB;
  const echo = await call('.echo', { argsList: ['x', 1.5, null], argsDict: echoKwargs });
  out.echo = { args: echo.argsList, kwargs: echo.argsDict };
  out.app_error = await callError(w, cfg.prefix + '.fail', [7], ms);
  out.no_such_procedure = await callError(w, cfg.prefix + '.nothing', [], ms);
  const kwargs = Object.assign({}, EVENT_KWARGS, cfg.binary ? { blob: BLOB } : {});
  const ack = await withTimeout(w.publish(cfg.prefix + '.topic', { argsList: EVENT_ARGS, argsDict: kwargs }, TRACE),
    ms, `publish to ${cfg.prefix}.topic`);
  out.published = Boolean(ack && ack.publicationId);
  return { ...out, ...(await leave(peer, cfg)) };
}

// Leave with GOODBYE; report what was sent as undefined on the way.
async function leave(peer, cfg) {
  await withTimeout(peer.wampy.disconnect(), cfg.step_timeout_ms || 5000, 'wampy: leave');
  await withTimeout(peer.closed, cfg.step_timeout_ms || 5000, 'wampy: connection closed');
  return { sent_undefined: [...new Set(peer.sentUndefined)].sort() };
}

main(async (cfg) => {
  const peer = await connect(cfg);
  if (cfg.mode === 'serve') return serve(cfg, peer);
  if (cfg.mode === 'drive') return drive(cfg, peer);
  throw new Error(`unknown mode ${cfg.mode}`);
});
