'use strict';
// The browser-safe ticket flow, as a web app would do it:
//   1. POST <http>/ticket with Authorization: Bearer <token> (a cross-origin
//      request: the browser sends a CORS preflight first);
//   2. join with authmethod "ticket" and the one-time ticket;
//   3. use the rights of the token's claims (subscribe to relay.session.<topic>,
//      publish refused: the token has scope "read" only);
//   4. the same ticket again is refused; a fresh one in the URL (?ticket=) works.
// Query string: http, token, realm. Sets window.results / window.error, then window.done.

(function () {
  const params = new URLSearchParams(location.search);
  const cfg = { http: params.get('http'), token: params.get('token'), realm: params.get('realm') || 'realm1' };
  const results = {};

  async function mint() {
    const response = await fetch(cfg.http + '/ticket', {
      method: 'POST',
      headers: { 'Authorization': 'Bearer ' + cfg.token, 'Content-Type': 'application/json' },
      body: JSON.stringify({ realm: cfg.realm }),
    });
    if (response.status !== 200) throw new Error('POST /ticket answered ' + response.status);
    return response.json();
  }

  function join(url, ticket) {
    return new Promise((resolve) => {
      const connection = new autobahn.Connection({
        url, realm: cfg.realm, authmethods: ['ticket'], max_retries: 0,
        onchallenge: () => ticket,
      });
      connection.onopen = (session, details) => resolve({ connection, session, details });
      connection.onclose = (reason, details) => { resolve({ closed: reason, details }); return true; };
      connection.open();
    });
  }

  async function run() {
    const minted = await mint();
    results.minted = { expires_in: minted.expires_in, realm: minted.realm, has_ticket: minted.ticket.startsWith('rrt_') };
    const first = await join(minted.url, minted.ticket);
    if (!first.session) throw new Error('join failed: ' + JSON.stringify(first.details));
    results.joined = { authid: first.details.authid, authrole: first.details.authrole, authmethod: first.details.authmethod };
    await first.session.subscribe('relay.session.lab42', () => {});
    results.subscribed = true;
    try {
      await first.session.publish('relay.session.lab42', [1], {}, { acknowledge: true });
      results.publish = 'allowed';
    } catch (e) {
      results.publish = e.error;
    }
    first.connection.close();
    const replay = await join(minted.url, minted.ticket);
    results.replay = replay.session ? 'joined' : (replay.details && replay.details.reason) || replay.closed;
    const fresh = await mint();
    const viaUrl = await join(fresh.ticket_url, 'not-needed');
    results.via_url = viaUrl.session ? viaUrl.details.authid : 'refused';
    if (viaUrl.connection) viaUrl.connection.close();
  }

  run().then(() => {
    window.results = results;
    document.getElementById('status').textContent = 'ok';
  }).catch((e) => {
    window.results = results;
    window.error = String(e && e.stack || e);
    document.getElementById('status').textContent = 'failed';
  }).finally(() => {
    document.getElementById('results').textContent = JSON.stringify(results, null, 2);
    window.done = true;
  });
})();
