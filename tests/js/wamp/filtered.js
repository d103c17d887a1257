'use strict';
// Filtered subscriptions from autobahn-js: SUBSCRIBE.Options._fields / _where
// are custom options, passed through as given. A plain and a filtered
// subscriber on one topic; a publisher sends three device messages; a bad
// _where must fail the subscribe with the precise error.
//
// config: {url, serializer}

const { autobahn, connect, leave, withTimeout, deferred, main } = require('./common');

const TOPIC = 'device-data';

function message(t, r) {
  return { metadata: { deviceid: 'd1', tenant: 't' }, attrs: { temperature: t, rain: r } };
}

main(async (cfg) => {
  const ms = cfg.step_timeout_ms || 5000;
  const sub = await connect(cfg, 'subscriber');
  const pub = await connect(cfg, 'publisher');
  const plain = [];
  const filtered = [];
  const allPlain = deferred();
  await sub.session.subscribe(TOPIC, (args) => {
    plain.push(args[0]);
    if (plain.length === 3) allPlain.resolve();
  });
  await sub.session.subscribe(TOPIC, (args) => filtered.push(args[0]),
    { _fields: 'attrs/temperature,metadata/deviceid', _where: 'attrs.temperature=gte:20;attrs.rain=lt:5;' });
  let badError = null;
  try {
    await sub.session.subscribe(TOPIC, () => {}, { _where: 'attrs.temperature=between:1,2;' });
  } catch (e) {
    badError = { error: e.error, args: e.args };
  }
  for (const [t, r] of [[25, 1], [10, 1], [30, 9]]) {
    await pub.session.publish(TOPIC, [message(t, r)], {}, { acknowledge: true });
  }
  await withTimeout(allPlain.promise, ms, 'plain subscriber gets all three events');
  // The router sends in order on one connection: the filtered event for the
  // first message was sent before the plain one for the third.
  await leave(pub, 'publisher', cfg);
  await leave(sub, 'subscriber', cfg);
  return { plain, filtered, bad: badError };
});
