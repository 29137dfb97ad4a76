// The harness itself, on pages of its own served here (no shop needed): Chromium starts,
// screenshots are written, axe runs and tells a good page from a bad one. A failure here is
// the harness's, not the storefront's.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { after, before } from 'node:test';

import { checkA11y, closeBrowser, newPage, scenario, screenshot, waitForText } from '../lib/shop.mjs';

const GOOD = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Harness</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><header><a href="/">micromart</a></header><main><h1>Harness page</h1>
<form role="search"><label for="q">Search products</label><input id="q" name="q">
<button>Search</button></form><p role="status" id="s">Pending</p></main>
<script>setTimeout(() => { document.getElementById('s').textContent = 'Confirmed'; }, 300);</script>
</body></html>`;
// An image without alternative text and a field without a label: critical violations.
const BAD = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Bad</title></head>
<body><main><h1>Bad page</h1><img src="/x.png"><input name="unlabelled"></main></body></html>`;

let server;
let base;
before(async () => {
  server = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    // The bad page with a strict policy, as the storefront may send (no inline scripts): axe
    // must still get in.
    res.setHeader(
      'content-security-policy',
      req.url === '/bad' ? "default-src 'self'" : "default-src 'self'; script-src 'self' 'unsafe-inline'",
    );
    res.end(req.url === '/bad' ? BAD : GOOD);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(async () => {
  await closeBrowser();
  await new Promise((resolve) => server.close(resolve));
});

scenario('harness: Chromium starts, screenshots at both widths, polling waits', async () => {
  for (const width of ['phone', 'desktop']) {
    const page = await newPage(width);
    await page.goto(base);
    await waitForText(page.getByRole('status'), /Confirmed/);
    const file = await screenshot(page, 'harness');
    assert.ok(fs.statSync(file).size > 1000, `${file} is a real PNG`);
    assert.ok(file.endsWith(`harness-${width}.png`));
    const viewport = await page.evaluate(() => [window.innerWidth, window.devicePixelRatio]);
    assert.deepEqual(viewport, width === 'phone' ? [390, 2] : [1280, 1]);
  }
});

scenario('harness: axe passes a good page and fails a bad one', async () => {
  const page = await newPage('desktop');
  await page.goto(base);
  await checkA11y(page, 'harness-good');
  await page.goto(`${base}/bad`);
  await assert.rejects(checkA11y(page, 'harness-bad'), /image-alt|label/);
});
