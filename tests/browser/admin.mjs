// Drives the operator page in headless Chromium as an operator would: sign in, read the
// activity charts, the recent failures, the projectors, the event tail and the webhook deliveries, retry a delivery, start a rebuild of
// `posts` and watch it finish. tests/api/admin_page.rs runs it against a live server and checks
// what it reports against the server's own state.
//
//   BASE_URL=http://127.0.0.1:8080 ADMIN_EMAIL=... ADMIN_PASSWORD=... node tests/browser/admin.mjs
//
// Prints one JSON line with what it saw; exits non-zero (with a screenshot path) on failure.
import { chromium } from 'playwright-core';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.env.BASE_URL;
const email = process.env.ADMIN_EMAIL;
const password = process.env.ADMIN_PASSWORD;
const timeout = Number(process.env.STEP_TIMEOUT_MS || 20000);
if (!base || !email || !password) {
  console.error('BASE_URL, ADMIN_EMAIL and ADMIN_PASSWORD are required');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  // The machine's network is closed: without these, Chromium keeps dialling out and failing.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
page.setDefaultTimeout(timeout);
const consoleErrors = [];
page.on('console', (message) => {
  if (message.type() === 'error') consoleErrors.push(message.text());
});
page.on('pageerror', (error) => consoleErrors.push(String(error)));

try {
  await page.goto(`${base}/admin`);

  // A wrong password is refused on the page, and the console stays hidden.
  await page.fill('#email', email);
  await page.fill('#password', 'not the password');
  await page.click('#sign-in-button');
  await page.waitForFunction(() => document.querySelector('#sign-in-error').textContent.length > 0);
  const refusal = await page.textContent('#sign-in-error');
  const consoleHiddenAfterRefusal = await page.isHidden('#console');

  await page.fill('#password', password);
  await page.click('#sign-in-button');
  await page.waitForSelector('#console', { state: 'visible' });
  const whoami = await page.textContent('#whoami-email');

  // The activity charts (SVG drawn by charts.js) and the failures with their ids.
  // Attached, not "visible": a flat line (no lag at all) has a bounding box of zero height,
  // which Playwright counts as invisible though its stroke is drawn.
  await page.waitForSelector('#chart-events svg.chart polyline', { state: 'attached' });
  await page.waitForSelector('#chart-lag svg.chart polyline', { state: 'attached' });
  const charts = await page.$$eval('#charts figure', (figures) => figures.map((figure) => {
    const lines = [...figure.querySelectorAll('svg.chart polyline')];
    return {
      id: figure.id,
      series: [...new Set(lines.map((line) => line.dataset.series))],
      points: lines.reduce((sum, line) => sum + line.points.numberOfItems, 0),
    };
  }));
  await page.waitForSelector('#failures tbody tr[data-kind="webhook"]');
  const failures = await page.$$eval('#failures tbody tr', (rows) => rows.map((row) => ({
    kind: row.dataset.kind,
    id: row.dataset.id,
    status: row.cells[2].textContent,
    requestId: row.querySelector('.request-id code')?.textContent ?? null,
    traceId: row.querySelector('.trace-id code')?.textContent ?? null,
  })));

  await page.waitForSelector('#projector-posts');
  const projectors = await page.$$eval('#projectors tbody tr', (rows) => rows.map((row) => ({
    name: row.cells[0].textContent,
    status: row.cells[1].textContent,
    lag: row.cells[2].textContent,
  })));

  await page.waitForSelector('#events tbody tr');
  const eventTypes = await page.$$eval('#events tbody tr', (rows) => rows.map((row) => row.cells[2].textContent));

  await page.waitForSelector('.endpoint .deliveries tbody tr');
  const delivery = await page.$eval('.endpoint .deliveries tbody tr', (row) => ({
    id: row.dataset.deliveryId,
    status: row.cells[2].textContent,
    attempts: Number(row.cells[3].textContent),
  }));
  await page.click(`button.retry[data-delivery="${delivery.id}"]`);
  await page.waitForSelector(`button.retry[data-delivery="${delivery.id}"]:text("queued")`)
    .catch(async () => {
      // The list refreshes every few seconds and may replace the button before we look; the
      // retry's effect is what the Rust side checks.
    });

  // The rebuild: the button disables itself, the cell walks through its states, and ends with
  // the finished rebuild's event count.
  const statesSeen = [];
  await page.exposeFunction('reportRebuildState', (state) => {
    if (statesSeen[statesSeen.length - 1] !== state) statesSeen.push(state);
  });
  await page.evaluate(() => {
    const report = () => {
      const cell = document.querySelector('#projector-posts .rebuild-state');
      if (cell) window.reportRebuildState(cell.dataset.state);
    };
    new MutationObserver(report).observe(document.querySelector('#projectors tbody'), { childList: true, subtree: true });
    report();
  });
  await page.click('#projector-posts button.rebuild');
  await page.waitForSelector('#projector-posts .rebuild-state[data-state="finished"]');
  const finished = await page.textContent('#projector-posts .rebuild-state');
  await page.waitForSelector('#projector-posts button.rebuild:not([disabled])');

  // Signing out returns to the form and forgets the tokens.
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in', { state: 'visible' });
  const tokensAfterSignOut = await page.evaluate(() => sessionStorage.length);

  console.log(JSON.stringify({
    refusal, consoleHiddenAfterRefusal, whoami, charts, failures, projectors, eventTypes, delivery,
    statesSeen, finished, tokensAfterSignOut, consoleErrors,
  }));
} catch (error) {
  const shot = join(tmpdir(), `chronicle-admin-${process.pid}.png`);
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  console.error(`${error.stack || error}\nscreenshot: ${shot}\nconsole errors: ${JSON.stringify(consoleErrors)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
