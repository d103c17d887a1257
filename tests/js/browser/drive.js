'use strict';
// Drives headless Chromium with playwright-core: opens the test page, waits
// for it to set window.done, prints {"result": {...}} with window.results,
// the page's console and errors. Exits 1 with "FAIL: ..." on stderr if the
// browser cannot be driven or the page does not finish in time.
//
// config: {page_url, chromium, screenshot?, timeout_ms?}

const { chromium } = require('playwright-core');

const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

function fail(message) {
  process.stderr.write('FAIL: ' + message + '\n');
  process.exit(1);
}

async function drive(cfg) {
  const timeout = cfg.timeout_ms || 20000;
  const browser = await chromium.launch({
    executablePath: cfg.chromium, args: CHROMIUM_ARGS, timeout,
  });
  try {
    const page = await browser.newPage();
    const consoleLines = [];
    const pageErrors = [];
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    await page.goto(cfg.page_url, { timeout, waitUntil: 'load' });
    try {
      await page.waitForFunction(() => window.done === true, null, { timeout });
    } catch (e) {
      throw new Error(`the page did not finish within ${timeout} ms; console: ${JSON.stringify(consoleLines)}; errors: ${JSON.stringify(pageErrors)}`);
    }
    const state = await page.evaluate(() => ({ results: window.results, error: window.error || null }));
    if (cfg.screenshot) await page.screenshot({ path: cfg.screenshot, fullPage: true });
    return {
      browser_version: browser.version(),
      results: state.results,
      error: state.error,
      console: consoleLines,
      page_errors: pageErrors,
    };
  } finally {
    await browser.close();
  }
}

let cfg;
try {
  cfg = JSON.parse(process.argv[2] || '{}');
} catch (e) {
  fail(`bad JSON config argument: ${e.message}`);
}
const budget = (cfg.timeout_ms || 20000) * 2;
setTimeout(() => fail(`drive.js did not finish within ${budget} ms`), budget).unref();
drive(cfg).then(
  (result) => { process.stdout.write(JSON.stringify({ result }) + '\n'); process.exit(0); },
  (e) => fail((e && e.stack) || String(e)),
);
