'use strict';
// Drives the router's web console (/console) in headless Chromium with
// playwright-core, in a fresh profile: logs in with a ticket, then reports
// on stdout, as JSON lines, when the watched authid's session appears, goes
// and comes back (the pytest test makes those happen), denies that authid
// from the deny-list form and waits for its session to end; then saves a
// screenshot and prints {"result": ...}. Exits 1 with "FAIL: ..." otherwise.
//
//
// With mode "refused": logs in and reports the page's login error (a session
// that is no console user). With mode "viewer": logs in as a read-only
// console user, waits for the watched session, checks that the page offers
// no deny-list change and that the router refuses one, and reports. With
// mode "cluster": logs in and waits until the Cluster table lists cfg.nodes
// nodes, then reports its rows as shown.
//
// config: {console_url, chromium, user_data_dir, screenshot, realm, authid,
//          ticket, watch, mode?, timeout_ms?}

const { chromium } = require('playwright-core');

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

function fail(message) {
  process.stderr.write('FAIL: ' + message + '\n');
  process.exit(1);
}

async function drive(cfg) {
  const timeout = cfg.timeout_ms || 30000;
  const context = await chromium.launchPersistentContext(cfg.user_data_dir, {
    executablePath: cfg.chromium, args: CHROMIUM_ARGS, headless: true, timeout,
    viewport: { width: 1280, height: 1000 },
  });
  const consoleLines = [];
  const pageErrors = [];
  try {
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const step = async (what, fn) => {
      try {
        return await fn();
      } catch (e) {
        throw new Error(`${what}: ${e.message}; console: ${JSON.stringify(consoleLines)}; errors: ${JSON.stringify(pageErrors)}`);
      }
    };
    const row = (authid) => `#sessions tbody tr[data-authid="${authid}"]`;

    await page.goto(cfg.console_url, { timeout, waitUntil: 'load' });
    const landed = page.url();
    await page.fill('#realm', cfg.realm);
    await page.selectOption('#method', 'ticket');
    await page.fill('#authid', cfg.authid);
    await page.fill('#secret', cfg.ticket);
    await page.click('#login-button');
    if (cfg.mode === 'refused') {
      await step('the login is refused', () => page.waitForFunction(
        () => document.getElementById('login-error').textContent !== '', null, { timeout }));
      return {
        login_error: await page.textContent('#login-error'),
        login_visible: await page.isVisible('#login'),
        main_visible: await page.isVisible('#main'),
        state: await page.evaluate(() => window.consoleState), page_errors: pageErrors,
      };
    }
    await step('log in', () => page.waitForSelector(row(cfg.authid), { timeout }));
    await step('the login form goes away', () => page.waitForSelector('#login', { state: 'hidden', timeout }));
    emit({ event: 'logged_in', url: landed });
    if (cfg.mode === 'viewer') return await viewer(page, cfg, step, row, timeout, pageErrors);
    if (cfg.mode === 'cluster') return await cluster(page, cfg, step, timeout, pageErrors);

    await step('the device appears', () => page.waitForSelector(row(cfg.watch), { timeout }));
    await step('its subscription is listed', () => page.waitForFunction(
      () => window.consoleState.subscriptions.some((s) => s.uri === 'com.example.console.readings'), null, { timeout }));
    emit({ event: 'seen', subscriptions: await page.evaluate(() => window.consoleState.subscriptions),
      registrations: await page.evaluate(() => window.consoleState.registrations) });

    await step('the device goes', () => page.waitForSelector(row(cfg.watch), { state: 'detached', timeout }));
    emit({ event: 'gone' });

    await step('the device comes back', () => page.waitForSelector(row(cfg.watch), { timeout }));
    const seenAgain = await page.evaluate((w) => window.consoleState.sessions.find((s) => s.authid === w), cfg.watch);
    emit({ event: 'seen_again', session: seenAgain });

    await page.selectOption('#deny-claim', 'authid');
    await page.fill('#deny-value', cfg.watch);
    await page.fill('#deny-reason', 'console test');
    await page.click('#deny-add');
    await step('the entry is listed', () => page.waitForSelector(
      `#denylist tbody tr[data-claim="authid"][data-value="${cfg.watch}"]`, { timeout }));
    await step('the denied session ends', () => page.waitForSelector(row(cfg.watch), { state: 'detached', timeout }));
    await step('the realm count follows', () => page.waitForFunction(
      () => window.consoleState.realms.length === 1 && window.consoleState.realms[0].sessions === 1, null, { timeout }));
    await step('the rate chart has points', () => page.waitForFunction(
      () => window.consoleState.rates.length >= 2, null, { timeout }));
    await page.screenshot({ path: cfg.screenshot, fullPage: true });
    const state = await page.evaluate(() => window.consoleState);
    return {
      browser_version: context.browser() ? context.browser().version() : null,
      state, console: consoleLines, page_errors: pageErrors,
      rate_text: await page.textContent('#rate-now'),
    };
  } finally {
    await context.close();
  }
}

async function viewer(page, cfg, step, row, timeout, pageErrors) {
  await step('the watched session is listed', () => page.waitForSelector(row(cfg.watch), { timeout }));
  await step('the deny list is read', () => page.waitForFunction(
    () => window.consoleState.denylist.length > 0, null, { timeout }));
  const tried = await page.evaluate((w) => window.consoleCall('relayrouter.denylist.add', [],
    { claim: 'authid', value: w, ttl: 60 }).then(() => null, (e) => ({ error: e.error, args: e.args })), cfg.watch);
  await page.screenshot({ path: cfg.screenshot, fullPage: true });
  return {
    state: await page.evaluate(() => window.consoleState),
    status: await page.textContent('#status'),
    deny_form_visible: await page.isVisible('#deny-form'),
    denylist_visible: await page.isVisible('#denylist'),
    buttons: await page.$$eval('#sessions button, #denylist button', (bs) => bs.map((b) => b.textContent)),
    add_refused: tried, page_errors: pageErrors,
  };
}

async function cluster(page, cfg, step, timeout, pageErrors) {
  await step('the Cluster table lists every node', () => page.waitForFunction(
    (n) => document.querySelectorAll('#cluster tbody tr').length === n, cfg.nodes, { timeout }));
  await page.screenshot({ path: cfg.screenshot, fullPage: true });
  return {
    rows: await page.$$eval('#cluster tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent))),
    panel_visible: await page.isVisible('#cluster-panel'),
    state: await page.evaluate(() => window.consoleState), page_errors: pageErrors,
  };
}

let cfg;
try {
  cfg = JSON.parse(process.argv[2] || '{}');
} catch (e) {
  fail(`bad JSON config argument: ${e.message}`);
}
const budget = (cfg.timeout_ms || 30000) * 6;
setTimeout(() => fail(`console_drive.js did not finish within ${budget} ms`), budget).unref();
drive(cfg).then(
  (result) => { emit({ result }); process.exit(0); },
  (e) => fail((e && e.stack) || String(e)),
);
