// Drives the admin endpoint's status page in headless Chromium for
// test_status_page.py and prints one JSON report on standard output:
// console errors, page errors, every request (to catch another origin),
// the /status answers in order, what the page shows (each element's
// data-f path and text, each chart's data-sum), and the page's width at a
// phone's size. Screenshots go to OUTDIR.
//
//   node page_check.js URL OUTDIR        (EF_NODE_DIR: where npm put
//                                         playwright-core)
'use strict';
const path = require('path');
const { chromium } = require(path.join(process.env.EF_NODE_DIR,
                                       'node_modules', 'playwright-core'));

const [url, outdir] = process.argv.slice(2);
const RENDERS = 2;          // the first drawing and one refresh
const WAIT_MS = 20000;

async function shown(page) {
  return page.evaluate(function () {
    const f = Array.from(document.querySelectorAll('[data-f]'),
                         e => ({ path: e.dataset.f, text: e.textContent }));
    const sums = Array.from(document.querySelectorAll('[data-sum]'),
                            e => ({ path: e.dataset.sum, text: e.textContent }));
    return { seq: Number(document.body.dataset.seq || 0), fields: f, sums };
  });
}

async function main() {
  const report = { console: [], pageerrors: [], requests: [], statuses: [] };
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', chromiumSandbox: false,
    args: ['--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    page.on('console', m => {
      if (m.type() === 'error' || m.type() === 'warning')
        report.console.push(m.type() + ': ' + m.text());
    });
    page.on('pageerror', e => report.pageerrors.push(String(e)));
    page.on('request', r => report.requests.push(r.url()));
    page.on('requestfailed', r => report.console.push('failed: ' + r.url()));
    const bodies = [];
    page.on('response', r => {
      if (new URL(r.url()).pathname === '/status')
        bodies.push(r.text().catch(() => ''));
    });
    const resp = await page.goto(url, { waitUntil: 'load' });
    report.csp = resp.headers()['content-security-policy'] || '';
    await page.waitForFunction(n => Number(document.body.dataset.seq || 0) >= n,
                               RENDERS, { timeout: WAIT_MS });
    // The drawing and the answer it drew: the n-th drawing is the n-th
    // answer, since the page fetches one at a time.
    report.shown = await shown(page);
    report.statuses = await Promise.all(bodies);
    await page.screenshot({ path: path.join(outdir, 'status-1280x800.png') });
    await page.screenshot({ path: path.join(outdir, 'status-1280-full.png'),
                            fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    report.phone_width = await page.evaluate(
      () => document.documentElement.scrollWidth);
    await page.screenshot({ path: path.join(outdir, 'status-390x844.png') });
    await page.screenshot({ path: path.join(outdir, 'status-390-full.png'),
                            fullPage: true });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch(e => {
  process.stderr.write(String(e && e.stack || e) + '\n');
  process.exit(1);
});
