'use strict';
// The relayrouter web console: logs in over WAMP (autobahn-js) to the router
// that serves this page and shows what it reads through the meta API and the
// router's procedures. Everything shown is built with textContent: authids,
// URIs and reasons come from other clients.

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const REFRESH_MS = Number(params.get('refresh_ms') || 2000);
  const RATE_MS = 1000;
  const RATE_POINTS = 60;

  // What the page shows, also for tests and the curious (window.consoleState).
  const state = {
    loggedIn: false, authid: null, authrole: null, realm: null, error: null,
    access: null, reach: null, // what relayrouter.console.access said: "view" | "operate", "router" | "realm"
    realms: [], sessions: [], subscriptions: [], registrations: [], denylist: [],
    mailboxes: null, pairs: null, nodes: null, rates: [],
  };
  window.consoleState = state;
  // The logged-in session's calls, for tests and the curious: nothing the session may not do anyway.
  window.consoleCall = (procedure, args, kwargs) => call(procedure, args, kwargs);

  let connection = null;
  let session = null;
  let timers = [];

  // ------------------------------------------------------------- login

  const wsPath = params.get('ws') || 'ws';
  $('url').value = params.get('url') ||
    `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/${wsPath}`;
  if (params.get('realm')) $('realm').value = params.get('realm');

  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    login();
  });
  $('logout').addEventListener('click', () => { if (connection) connection.close(); });

  function login() {
    $('login-error').textContent = '';
    const method = $('method').value;
    const secret = $('secret').value;
    const authid = $('authid').value || undefined;
    let opened = false;
    let refused = null; // the console's refusal: shown instead of the close reason
    connection = new autobahn.Connection({
      url: $('url').value,
      realm: $('realm').value,
      authmethods: [method],
      authid,
      onchallenge: () => secret,
      max_retries: 0,
      retry_if_unreachable: false,
      use_es6_promises: true,
    });
    connection.onopen = (s, details) => {
      session = s;
      $('secret').value = '';
      // The router says whether this session may use the console, and how far.
      call('relayrouter.console.access').then((access) => {
        opened = true;
        enter(details, access);
      }, (error) => {
        refused = (error.args && error.args[0]) || error.error || String(error);
        connection.close('wamp.close.normal', 'not a console user');
      });
    };
    connection.onclose = (reason, details) => {
      stop();
      const why = (details && (details.message || details.reason)) || reason;
      state.loggedIn = false;
      session = null;
      $('main').hidden = true;
      $('logout').hidden = true;
      $('login').hidden = false;
      $('status').textContent = 'not logged in';
      if (refused) {
        state.error = refused;
        $('login-error').textContent = `login refused: ${refused}`;
      } else if (!opened || reason !== 'closed') {
        state.error = String(why);
        $('login-error').textContent = opened ? `disconnected: ${why}` : `login failed: ${why}`;
      }
      return true; // no reconnecting: log in again
    };
    connection.open();
  }

  function enter(details, access) {
    state.loggedIn = true;
    state.authid = details.authid;
    state.authrole = details.authrole;
    state.realm = $('realm').value;
    state.access = access.access;
    state.reach = access.reach;
    const mode = access.access === 'operate' ? '' : ', read-only';
    $('status').textContent = `${details.authid} (${details.authrole}${mode}) in realm ${state.realm}`;
    // Viewers change nothing; a tenant realm's console has no deny list (it is router-wide).
    $('deny-form').hidden = !canEdit();
    $('denylist-panel').hidden = access.reach !== 'router';
    $('denylist-mode').textContent = canEdit() ? '' : '(read-only)';
    $('login').hidden = true;
    $('main').hidden = false;
    $('logout').hidden = false;
    $('session-realm').textContent = `in realm ${state.realm}`;
    start();
  }

  function canEdit() { return state.access === 'operate' && state.reach === 'router'; }

  // ----------------------------------------------------------- refresh

  function start() {
    const refreshSessions = () => {
      call('relayrouter.console.overview').then(showRealms, report);
      return call('relayrouter.console.sessions').then(showSessions, report);
    };
    const subscribe = (topic, fn) => session.subscribe(topic, fn).catch(report);
    subscribe('wamp.session.on_join', refreshSessions);
    subscribe('wamp.session.on_leave', refreshSessions);
    for (const t of ['wamp.subscription.on_create', 'wamp.subscription.on_delete',
      'wamp.registration.on_create', 'wamp.registration.on_delete']) {
      subscribe(t, () => refreshRouting());
    }
    const everything = () => {
      refreshSessions();
      refreshRouting();
      refreshDenylist();
      refreshExtras();
    };
    everything();
    rates();
    timers.push(setInterval(everything, REFRESH_MS));
    timers.push(setInterval(rates, RATE_MS));
  }

  function stop() {
    timers.forEach(clearInterval);
    timers = [];
  }

  function call(procedure, args, kwargs) {
    if (!session) return Promise.reject(new Error('not logged in'));
    return session.call(procedure, args || [], kwargs || {}).then(unwrap);
  }

  function unwrap(result) {
    if (result instanceof autobahn.Result) {
      return result.args && result.args.length ? result.args[0] : result.kwargs;
    }
    return result;
  }

  function report(error) {
    const text = error && (error.error ? `${error.error}: ${(error.args || []).join(' ')}` : String(error));
    state.error = text;
    console.warn('console:', text);
  }

  // ------------------------------------------------------------ panels

  function rates() {
    call('relayrouter.console.overview').then((o) => {
      showRealms(o);
      // The router measures the rate over a window of whole refresh periods: a
      // difference between two polls would count every other refresh and zig-zag.
      if (o.rate && o.rate.in !== null) {
        state.rates.push({ in: o.rate.in, out: o.rate.out });
        if (state.rates.length > RATE_POINTS) state.rates.shift();
        drawRates();
      }
    }, report);
  }

  function showRealms(overview) {
    state.realms = overview.realms;
    fill('realms', overview.realms, (r) => [r.name, num(r.sessions)]);
  }

  function showSessions(result) {
    state.sessions = result.sessions;
    const rows = result.sessions.slice().sort((a, b) => String(a.since).localeCompare(String(b.since)));
    fill('sessions', rows, (s) => [
      String(s.session), s.authid, s.authrole, `${s.transport}/${s.serializer}`, s.peer,
      s.since ? s.since.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '', bytes(s.rx_bytes), bytes(s.tx_bytes),
      canEdit() && s.authid && s.authid !== state.authid ? button('deny', () => deny('authid', s.authid)) : '',
    ], (tr, s) => { tr.dataset.session = s.session; tr.dataset.authid = s.authid; });
  }

  async function refreshRouting() {
    try {
      state.subscriptions = await routing('subscription', 'count_subscribers');
      state.registrations = await routing('registration', 'count_callees');
      fill('subscriptions', state.subscriptions, (x) => [x.uri, x.match, num(x.count)]);
      fill('registrations', state.registrations, (x) => [x.uri, x.match, num(x.count)]);
    } catch (e) { report(e); }
  }

  async function routing(kind, counter) {
    const ids = await call(`wamp.${kind}.list`);
    const all = [...(ids.exact || []), ...(ids.prefix || []), ...(ids.wildcard || [])];
    const entries = await Promise.all(all.map(async (id) => {
      const [info, count] = await Promise.all([call(`wamp.${kind}.get`, [id]), call(`wamp.${kind}.${counter}`, [id])]);
      return info ? { id, uri: info.uri, match: info.match, count } : null;
    }));
    return entries.filter((e) => e && !e.uri.startsWith('wamp.')).sort((a, b) => a.uri.localeCompare(b.uri));
  }

  function refreshDenylist() {
    if (state.reach !== 'router') return;
    call('relayrouter.denylist.list').then((r) => {
      state.denylist = r.entries;
      fill('denylist', r.entries, (e) => [
        e.claim, e.value, e.expires_at ? new Date(e.expires_at * 1000).toISOString() : '', e.reason || '',
        canEdit() ? button('remove', () => call('relayrouter.denylist.remove', [], { claim: e.claim, value: e.value })
          .then(refreshDenylist, report)) : '',
      ], (tr, e) => { tr.dataset.claim = e.claim; tr.dataset.value = e.value; });
    }, report);
  }

  $('deny-form').addEventListener('submit', (e) => {
    e.preventDefault();
    deny($('deny-claim').value, $('deny-value').value, Number($('deny-ttl').value), $('deny-reason').value);
  });

  function deny(claim, value, ttl, reason) {
    $('deny-error').textContent = '';
    const fields = { claim, value, ttl: ttl || 3600 };
    if (reason) fields.reason = reason;
    call('relayrouter.denylist.add', [], fields).then(() => {
      $('deny-value').value = '';
      refreshDenylist();
    }, (error) => {
      $('deny-error').textContent = (error.args && error.args[0]) || error.error || String(error);
      report(error);
    });
  }

  function refreshExtras() {
    optional('relayrouter.cluster.nodes', 'cluster-panel', (r) => {
      state.nodes = r.nodes;
      fill('cluster', r.nodes, (n) => [n.self ? `${n.name} (this node)` : n.name, n.version || '',
        (n.addresses || []).join(', '), num(n.sessions), n.load == null ? '' : n.load.toFixed(2),
        n.up_since || '', n.last_heard]);
    });
    optional('relayrouter.mailbox.stats', 'mailboxes-panel', (r) => {
      const boxes = Array.isArray(r) ? r : (r.mailboxes || []);
      state.mailboxes = boxes;
      fill('mailboxes', boxes, (m) => [m.mailbox, num(m.depth), bytes(m.bytes),
        m.oldest_age == null ? '' : m.oldest_age.toFixed(1)]);
    });
    optional('relayrouter.pairs.list', 'pairs-panel', (r) => {
      const pairs = Array.isArray(r) ? r : (r.pairs || []);
      state.pairs = pairs;
      const peer = (d) => (d ? (d.authid || 'present') : '—');
      fill('pairs', pairs, (p) => [`${p.subscriber}/${p.box}`, `gateway: ${peer(p.gateway)}, manager: ${peer(p.manager)}`]);
    });
  }

  // A panel for a feature the realm may not have: hidden when the procedure is not there.
  function optional(procedure, panel, show) {
    call(procedure).then((r) => { $(panel).hidden = false; show(r); }, (error) => {
      $(panel).hidden = true;
      if (error.error !== 'wamp.error.no_such_procedure') report(error);
    });
  }

  // ------------------------------------------------------------- chart

  function drawRates() {
    const canvas = $('rates');
    const ctx = canvas.getContext('2d');
    const w = canvas.width;
    const h = canvas.height;
    const pad = 28;
    ctx.clearRect(0, 0, w, h);
    const top = Math.max(10, ...state.rates.map((p) => Math.max(p.in, p.out))) * 1.1;
    ctx.strokeStyle = '#e4e7eb';
    ctx.fillStyle = '#52606d';
    ctx.font = '11px system-ui, sans-serif';
    for (let i = 0; i <= 2; i++) {
      const y = pad / 2 + (h - pad) * (1 - i / 2);
      ctx.beginPath(); ctx.moveTo(pad * 2, y); ctx.lineTo(w, y); ctx.stroke();
      ctx.fillText(Math.round(top * i / 2).toLocaleString(), 2, y + 4);
    }
    for (const [key, colour] of [['in', '#2563eb'], ['out', '#d97706']]) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2;
      ctx.beginPath();
      state.rates.forEach((p, i) => {
        const x = pad * 2 + (w - pad * 2) * (i / (RATE_POINTS - 1));
        const y = pad / 2 + (h - pad) * (1 - p[key] / top);
        if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      });
      ctx.stroke();
    }
    const last = state.rates[state.rates.length - 1];
    $('rate-now').textContent = last ? `now: ${Math.round(last.in)} in, ${Math.round(last.out)} out per second` : '';
  }

  // ----------------------------------------------------------- helpers

  function fill(tableId, items, cells, decorate) {
    const body = $(tableId).tBodies[0];
    const rows = items.map((item) => {
      const tr = document.createElement('tr');
      for (const cell of cells(item)) {
        const td = document.createElement('td');
        if (cell instanceof Node) td.appendChild(cell);
        else td.textContent = cell == null ? '' : String(cell);
        if (typeof cell === 'string' && /^[\d,.]+( [KMG]?B)?$/.test(cell)) td.className = 'num';
        tr.appendChild(td);
      }
      if (decorate) decorate(tr, item);
      return tr;
    });
    body.replaceChildren(...rows);
  }

  function button(text, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = text;
    b.addEventListener('click', onClick);
    return b;
  }

  function num(n) { return n == null ? '' : Number(n).toLocaleString('en'); }

  function bytes(n) {
    if (n == null) return '';
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }
})();
