'use strict';
// Opens the router's /relay/video.html in headless Chromium and, once JSMpeg
// decodes frames, reads the frame number the test's video source painted into
// each frame (a 4x4 grid of black/white blocks = 16 bits) straight from the
// canvas, with the page's clock: {samples: [[frame, ms since epoch], ...]}.
//
// config: {page_url, chromium, seconds, timeout_ms?}
const { chromium } = require('playwright-core');

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required'];

async function main(cfg) {
  const timeout = cfg.timeout_ms || 30000;
  const browser = await chromium.launch({ executablePath: cfg.chromium, args: ARGS, timeout });
  try {
    const page = await browser.newPage();
    const consoleLines = [];
    const errors = [];
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(cfg.page_url, { timeout, waitUntil: 'load' });
    try {
      await page.waitForFunction(() => window.relayVideo && window.relayVideo.frames > 2, null, { timeout });
    } catch (e) {
      throw new Error(`no decoded frames within ${timeout} ms; state: ${JSON.stringify(
        await page.evaluate(() => window.relayVideo && { frames: window.relayVideo.frames,
          error: window.relayVideo.error, connects: window.relayVideo.connects }))}; console: ${
        JSON.stringify(consoleLines)}; errors: ${JSON.stringify(errors)}`);
    }
    const samples = await page.evaluate((seconds) => new Promise((resolve) => {
      const canvas = document.getElementById('video');
      const ctx = canvas.getContext('2d');
      const out = [];
      let last = -1;
      const end = Date.now() + seconds * 1000;
      function look() {
        const w = canvas.width;
        const h = canvas.height;
        const pixels = ctx.getImageData(0, 0, w, h).data;
        let value = 0;
        for (let bit = 0; bit < 16; bit++) {
          const x = Math.floor(((bit % 4) + 0.5) * w / 4);
          const y = Math.floor((Math.floor(bit / 4) + 0.5) * h / 4);
          if (pixels[(y * w + x) * 4] > 128) value |= 1 << bit;
        }
        if (value !== last) {
          out.push([value, Date.now()]);
          last = value;
        }
        if (Date.now() < end) setTimeout(look, 4); else resolve(out);
      }
      look();
    }), cfg.seconds);
    const state = await page.evaluate(() => ({ frames: window.relayVideo.frames,
      connects: window.relayVideo.connects, error: window.relayVideo.error }));
    return { samples, state, console: consoleLines, page_errors: errors };
  } finally {
    await browser.close();
  }
}

const cfg = JSON.parse(process.argv[2] || '{}');
setTimeout(() => { process.stderr.write('FAIL: timeout\n'); process.exit(1); },
  (cfg.timeout_ms || 30000) * 2 + cfg.seconds * 1000).unref();
main(cfg).then(
  (result) => { process.stdout.write(JSON.stringify({ result }) + '\n'); process.exit(0); },
  (e) => { process.stderr.write('FAIL: ' + ((e && e.stack) || String(e)) + '\n'); process.exit(1); },
);
