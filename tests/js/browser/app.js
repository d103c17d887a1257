'use strict';
// Runs in headless Chromium (driven by drive.js) with the autobahn-browser
// bundle. Configuration comes from the query string:
//   url         the router's WebSocket URL
//   serializer  json | msgpack | cbor
//   peer        URI prefix of a peer serving <peer>.add2 and <peer>.topic
//               (Node or Python, started by the pytest test)
// When done it sets window.results (or window.error) and window.done = true.

(function () {
  const params = new URLSearchParams(location.search);
  const cfg = {
    url: params.get('url'),
    serializer: params.get('serializer') || 'json',
    realm: params.get('realm') || 'realm1',
    peer: params.get('peer'),
    stepMs: Number(params.get('step_ms') || 5000),
  };
  const TOPIC = 'com.example.browser.topic';
  // self.origin is "null" for a page opened from a file: what Chromium sends as Origin.
  const results = { serializers_available: Object.keys(autobahn.serializer), page_origin: self.origin };

  function withTimeout(promise, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out after ' + cfg.stepMs + ' ms: ' + what)), cfg.stepMs);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  function deferred() {
    let resolve;
    const promise = new Promise((res) => { resolve = res; });
    return { promise, resolve };
  }

  function makeSerializer(name) {
    const ctor = { json: 'JSONSerializer', msgpack: 'MsgpackSerializer', cbor: 'CBORSerializer' }[name];
    if (!ctor || !autobahn.serializer[ctor]) {
      throw new Error('serializer ' + name + ' is not in this autobahn-browser bundle');
    }
    return new autobahn.serializer[ctor]();
  }

  function join() {
    const joined = deferred();
    const closed = deferred();
    let opened = false;
    const connection = new autobahn.Connection({
      transports: [{ type: 'websocket', url: cfg.url, serializers: [makeSerializer(cfg.serializer)] }],
      realm: cfg.realm,
      max_retries: 0,
      retry_if_unreachable: false,
      use_es6_promises: true,
    });
    connection.onopen = (session) => { opened = true; joined.resolve(session); };
    connection.onclose = (reason, details) => {
      if (opened) closed.resolve({ reason, details: { reason: details.reason } });
      else joined.resolve(Promise.reject(new Error('connection ended before the join: ' + reason)));
      return true;
    };
    connection.open();
    return withTimeout(joined.promise, 'join').then((session) => ({ session, connection, closed: closed.promise }));
  }

  async function callError(session, procedure, args) {
    try {
      const res = await withTimeout(session.call(procedure, args), 'call ' + procedure);
      throw new Error('call ' + procedure + ' should have failed but returned ' + JSON.stringify(res));
    } catch (e) {
      if (e instanceof autobahn.Error) return { error: e.error, args: e.args, kwargs: e.kwargs };
      throw e;
    }
  }

  async function pubsub(session) {
    const seen = [];
    const ownEvent = deferred();
    await withTimeout(session.subscribe(TOPIC, (args, kwargs) => {
      seen.push({ args, kwargs });
      if (kwargs && kwargs.self) ownEvent.resolve();
    }), 'subscribe');
    // Excluded by default: the router must not send this one back to us ...
    await withTimeout(session.publish(TOPIC, ['excluded'], {}, { acknowledge: true }), 'publish');
    // ... and must send this one; events to one session keep their order.
    await withTimeout(session.publish(TOPIC, [1, 'two', { three: 3 }], { k: 'v', self: true },
      { exclude_me: false, acknowledge: true }), 'publish exclude_me: false');
    await withTimeout(ownEvent.promise, 'own event with exclude_me: false');
    return { seen };
  }

  async function rpc(session) {
    await session.register('com.example.browser.add2', (args) => args[0] + args[1]);
    await session.register('com.example.browser.echo', (args, kwargs) => new autobahn.Result(args, kwargs));
    await session.register('com.example.browser.fail', (args) => {
      throw new autobahn.Error('com.example.error', ['it failed', args[0]], { code: 42 });
    });
    const echo = await withTimeout(session.call('com.example.browser.echo', ['a', 2], { b: [true, null] }), 'echo');
    return {
      add2: await withTimeout(session.call('com.example.browser.add2', [2, 3]), 'call add2'),
      echo: { args: echo.args, kwargs: echo.kwargs },
      app_error: await callError(session, 'com.example.browser.fail', [7]),
      no_such_procedure: await callError(session, 'com.example.browser.nothing', []),
    };
  }

  async function withPeer(session) {
    if (!cfg.peer) return null;
    const sum = await withTimeout(session.call(cfg.peer + '.add2', [20, 22]), 'call ' + cfg.peer + '.add2');
    const ack = await withTimeout(session.publish(cfg.peer + '.topic', ['from', 'browser', 42],
      { lang: 'browser' }, { acknowledge: true }), 'publish to ' + cfg.peer + '.topic');
    return { add2: sum, published: Boolean(ack && ack.id) };
  }

  async function run() {
    const { session, connection, closed } = await join();
    results.joined = { session: session.id, protocol: connection.transport.info.protocol };
    results.pubsub = await pubsub(session);
    results.rpc = await rpc(session);
    results.peer = await withPeer(session);
    connection.close();
    results.leave = await withTimeout(closed, 'leave');
  }

  function show(status, cls) {
    const el = document.getElementById('status');
    el.textContent = status;
    el.className = cls;
    document.getElementById('results').textContent = JSON.stringify(window.results || window.error, null, 2);
  }

  run().then(
    () => { window.results = results; show('passed', 'ok'); window.done = true; },
    (e) => { window.error = String((e && e.stack) || e); window.results = results; show('failed', 'failed'); window.done = true; },
  );
})();
