// The agents' portal in a real browser (Debian's Chromium driven by playwright-core), against a
// running veilig-bellen server that the Rust test (tests/portal_*_in_chromium.rs) steers: when this
// script needs a call placed or a phone checked it prints `STEP <name> <json>` and reads one JSON
// line from stdin.
//
//   node tests/browser/portal.test.mjs verified|english|refused http://127.0.0.1:PORT '{"agent":…}'
//
// verified (Dutch, 1280×800): log in with the labelled fields; opt in to the new-call sound (kept
//   over a reload); a verified caller appears live (the tab title counts it) with
//   the attribute values, the Geverifieerd badge and the tenant's link; Opnemen → the agent's phone
//   rings and the card says verbonden; Ophangen → beëindigd and the values leave the page.
// english: ?lang=en labels; a wrong password and the lockout in plain words; log in by keyboard;
//   a network blip shows the offline notice and the page reconnects by itself; an unverified
//   caller with its reason; an agent of another tenant (English by Accept-Language)
//   sees none of it and gets 404 answering it; logout kills that agent's cookie; Hang up.
// refused (Dutch): Opnemen, the agent's phone refuses (488) → the card is wachtend again and says
//   why in words, Opnemen is there again; Ophangen → beëindigd.
// Both: the Content-Security-Policy header is there and nothing on the page breaks it.
//
// Environment: CHROMIUM (default /usr/bin/chromium); VB_SCREENSHOTS=<dir> saves screenshots.
// Exits 0 when the scenario passes; prints "N passed, N failed".

import assert from 'node:assert/strict';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { endSteps, launch, step } from './lib.mjs';

const [scenarioName, base, credentialsJson] = process.argv.slice(2);
if (!base || !/^http:\/\/(127\.0\.0\.1|\[::1\]|localhost):\d+$/.test(base)) {
  console.error('usage: node portal.test.mjs verified|english|refused http://127.0.0.1:PORT CREDENTIALS_JSON (loopback only)');
  process.exit(2);
}
const creds = JSON.parse(credentialsJson || '{}');
const shots = process.env.VB_SCREENSHOTS;
const STEP = 20_000;

// ---- Helpers ---------------------------------------------------------------------------------

// A TCP relay in front of the server, to cut the network: `cut()` drops every connection and
// refuses new ones until `restore()`.
async function startRelay(targetPort) {
  const sockets = new Set();
  let refusing = false;
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${server.address().port}`,
    cut() {
      refusing = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      refusing = false;
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

async function screenshot(page, name) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

// Page errors and CSP violations, for the final check; console noise for failure messages.
const problems = [];
const consoleLog = [];

function watch(page) {
  page.on('console', (m) => {
    consoleLog.push(`console.${m.type()}: ${m.text()}`);
    if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e}`));
  page.on('requestfailed', (r) => consoleLog.push(`requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
}

async function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations || []);
}

async function newContext(browser, locale) {
  const context = await browser.newContext({ locale, viewport: { width: 1280, height: 800 } });
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return context;
}

async function openPortal(page, path, origin = base) {
  const response = await page.goto(`${origin}${path}`);
  assert.equal(response.status(), 200);
  const headers = response.headers();
  const csp = headers['content-security-policy'] || '';
  assert.match(csp, /default-src 'self'/, 'no CSP header');
  assert.match(csp, /frame-ancestors 'none'/);
  assert.ok(!csp.includes('unsafe-inline') && !csp.includes('unsafe-eval'), `CSP too lax: ${csp}`);
  assert.equal(headers['x-frame-options'], 'DENY');
}

async function logIn(page, user, password, labels) {
  await page.getByLabel(labels.username, { exact: true }).fill(user);
  await page.getByLabel(labels.password, { exact: true }).fill(password);
  await page.getByRole('button', { name: labels.logIn, exact: true }).click();
}

async function loginError(page) {
  const error = page.locator('#login-error');
  await error.waitFor({ state: 'visible', timeout: STEP });
  return (await error.textContent()).trim();
}

// Waits until the card's state reads `word`.
async function waitState(card, word) {
  await card.locator('.state', { hasText: word }).waitFor({ timeout: STEP });
  assert.equal((await card.locator('.state').textContent()).trim(), word);
}

// The card of call `id` (stable also after the calling number is gone).
function cardOf(page, id) {
  return page.locator(`li.card[data-call-id="${id}"]`);
}

async function cardFor(page, caller) {
  const card = page.locator('li.card', { hasText: caller });
  await card.waitFor({ timeout: STEP });
  const id = await card.getAttribute('data-call-id');
  return { id, card: cardOf(page, id) };
}

async function noProblems(pages) {
  for (const page of pages) {
    const violations = await cspViolations(page);
    assert.deepEqual(violations, [], 'CSP violations on the page');
  }
  assert.deepEqual(problems, [], 'page errors or CSP errors');
}

// ---- Scenarios -------------------------------------------------------------------------------

const NL = { username: 'Gebruikersnaam', password: 'Wachtwoord', logIn: 'Inloggen' };
const EN = { username: 'Username', password: 'Password', logIn: 'Log in' };

async function verified(browser) {
  const context = await newContext(browser, 'nl-NL');
  const page = await context.newPage();
  watch(page);
  await openPortal(page, '/portal');
  await page.getByLabel(NL.username, { exact: true }).waitFor();
  await screenshot(page, 'portal-logged-out');
  await logIn(page, creds.agent, creds.password, NL);
  await page.getByRole('heading', { name: 'Oproepen', exact: true }).waitFor({ timeout: STEP });
  const csrf = await page.locator('meta[name="csrf-token"]').getAttribute('content');
  assert.match(csrf, /^[A-Za-z0-9_-]{43}$/, 'no CSRF token in the page');
  // A sound for new calls: off until the agent opts in, then remembered.
  const sound = 'Geluid bij een nieuwe oproep';
  assert.equal(await page.getByLabel(sound).isChecked(), false);
  await page.getByLabel(sound).check();
  await page.reload();
  await page.getByRole('heading', { name: 'Oproepen', exact: true }).waitFor({ timeout: STEP });
  assert.equal(await page.getByLabel(sound).isChecked(), true, 'the sound choice was forgotten');

  // The trunk call arrives while the page is open: it must appear by itself.
  const call = await step('verified-call');
  const { id, card } = await cardFor(page, call.caller);
  await waitState(card, 'wachtend');
  await card.locator('.badge', { hasText: 'Geverifieerd' }).waitFor({ timeout: STEP });
  assert.equal((await card.locator('.badge').textContent()).trim(), 'Geverifieerd');
  for (const [label, value] of call.attributes) {
    const row = card.locator('.attribute', { has: page.locator('dt', { hasText: label }) });
    assert.equal((await row.locator('dd').textContent()).trim(), value, `attribute ${label}`);
  }
  const link = card.getByRole('link', { name: call.link_label });
  assert.equal(await link.getAttribute('href'), call.link);
  assert.equal(await link.getAttribute('target'), '_blank');
  assert.match(await link.getAttribute('rel'), /\bnoopener\b/);
  const before = await card.locator('.timer-value').textContent();
  let ticked = false;
  for (let i = 0; i < 50 && !ticked; i += 1) {
    await page.waitForTimeout(200);
    ticked = (await card.locator('.timer-value').textContent()) !== before;
  }
  assert.ok(ticked, 'the waiting time does not tick');
  assert.match(await page.title(), /^\(1\) /, 'the tab title does not count the waiting call');
  await screenshot(page, 'portal-verified-waiting');
  await page.setViewportSize({ width: 768, height: 1024 });
  await screenshot(page, 'portal-verified-waiting-tablet');
  await page.setViewportSize({ width: 1280, height: 800 });

  await card.getByRole('button', { name: 'Opnemen', exact: true }).click();
  await waitState(card, 'verbonden');
  assert.match(await card.textContent(), /Opgenomen door u/);
  assert.equal(await card.getByRole('button', { name: 'Opnemen', exact: true }).count(), 0);
  await step('connected', { id: Number(id) });
  await screenshot(page, 'portal-connected');

  await card.getByRole('button', { name: 'Ophangen', exact: true }).click();
  await waitState(card, 'beëindigd');
  const text = await page.locator('body').innerText();
  for (const [, value] of call.attributes) assert.ok(!text.includes(value), `${value} still on the page`);
  assert.ok(!text.includes(call.caller), 'the calling number is still on the page');
  assert.equal(await card.getByRole('link').count(), 0, 'links stay after the call');
  await screenshot(page, 'portal-ended');
  await step('ended', { id: Number(id) });
  await noProblems([page]);
  await context.close();
}

async function english(browser) {
  const context = await newContext(browser, 'nl-NL');
  const page = await context.newPage();
  watch(page);
  // This agent's page goes through a relay, so the test can cut its network.
  const relay = await startRelay(new URL(base).port);
  await openPortal(page, '/portal?lang=en', relay.base);
  await page.getByLabel(EN.username, { exact: true }).waitFor();
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  await screenshot(page, 'portal-login-en');

  await logIn(page, creds.agent, 'not-the-password', EN);
  assert.equal(await loginError(page), 'Wrong username or password.');
  // Someone guesses a username: the same message, then the lockout in plain words.
  for (let i = 0; i < 5; i += 1) {
    await logIn(page, 'mallory', `guess-${i}`, EN);
    await page.locator('#login-error', { hasText: 'Wrong username or password.' }).waitFor({ timeout: STEP });
    await page.locator('#login-error').evaluate((e) => { e.hidden = true; });
  }
  await logIn(page, 'mallory', 'guess-5', EN);
  assert.match(await loginError(page), /^Too many failed attempts\. Try again in \d+ seconds?\.$/);
  await screenshot(page, 'portal-locked-en');

  // The agent's own login still works (another username's count), typed with the keyboard only.
  await page.getByLabel(EN.username, { exact: true }).focus();
  await page.keyboard.press('Control+A');
  await page.keyboard.type(creds.agent);
  await page.keyboard.press('Tab');
  await page.keyboard.type(creds.password);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Calls', exact: true }).waitFor({ timeout: STEP });
  await page.locator('#no-calls').waitFor({ state: 'visible' });

  // A network blip: the page says it is offline, then reconnects by itself (no reload).
  await page.evaluate(() => { window.__samePage = true; });
  relay.cut();
  await page.locator('#offline').waitFor({ state: 'visible', timeout: STEP });
  assert.equal((await page.locator('#offline').textContent()).trim(), 'No connection to the server. Reconnecting…');
  await screenshot(page, 'portal-offline-en');
  relay.restore();
  await page.locator('#offline').waitFor({ state: 'hidden', timeout: STEP });
  assert.equal(await page.evaluate(() => window.__samePage), true, 'the page reloaded');

  // The call arrives after the blip: the new stream brings it.
  const call = await step('unverified-call');
  const { id, card } = await cardFor(page, call.caller);
  await waitState(card, 'waiting');
  assert.equal((await card.locator('.badge').textContent()).trim(), 'Not verified');
  assert.equal((await card.locator('.reason').textContent()).trim(), 'The caller entered no code.');
  await card.getByRole('button', { name: 'Answer', exact: true }).waitFor();
  await card.getByRole('button', { name: 'Hang up', exact: true }).waitFor();
  await screenshot(page, 'portal-unverified-en');

  // An agent of another municipality, English because the browser asks for it.
  const otherContext = await newContext(browser, 'en-US');
  const other = await otherContext.newPage();
  watch(other);
  await openPortal(other, '/portal');
  await logIn(other, creds.other, creds.other_password, EN);
  await other.getByRole('heading', { name: 'Calls', exact: true }).waitFor({ timeout: STEP });
  await other.getByText('There are no calls right now.').waitFor();
  await other.waitForTimeout(500);
  assert.equal(await other.locator('li.card').count(), 0, 'another tenant sees the call');
  const probe = await other.evaluate(async (callId) => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const headers = { 'content-type': 'application/json' };
    const list = await fetch('/api/v1/calls');
    const noHeader = await fetch(`/api/v1/calls/${callId}/answer`, { method: 'POST', headers, body: '{}' });
    const answer = await fetch(`/api/v1/calls/${callId}/answer`, {
      method: 'POST',
      headers: { ...headers, 'X-CSRF-Token': csrf },
      body: '{}',
    });
    return { list: await list.json(), noHeader: noHeader.status, answer: answer.status };
  }, id);
  assert.deepEqual(probe, { list: [], noHeader: 403, answer: 404 });
  const [cookie] = (await otherContext.cookies()).filter((c) => c.name === 'vb_session');
  assert.ok(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', 'session cookie flags');
  await other.getByRole('button', { name: 'Log out', exact: true }).click();
  await other.getByLabel(EN.username, { exact: true }).waitFor({ timeout: STEP });
  await otherContext.addCookies([cookie]);
  const afterLogout = await other.evaluate(async () => (await fetch('/api/v1/calls')).status);
  assert.equal(afterLogout, 401, 'the cookie still works after logout');

  // Still waiting, untouched, on the first agent's page.
  await waitState(card, 'waiting');
  await card.getByRole('button', { name: 'Hang up', exact: true }).click();
  await waitState(card, 'ended');
  await step('ended', { id: Number(id) });
  await noProblems([page, other]);
  await otherContext.close();
  await context.close();
  relay.close();
}

async function refused(browser) {
  const context = await newContext(browser, 'nl-NL');
  const page = await context.newPage();
  watch(page);
  await openPortal(page, '/portal');
  await logIn(page, creds.agent, creds.password, NL);
  await page.getByRole('heading', { name: 'Oproepen', exact: true }).waitFor({ timeout: STEP });

  const call = await step('refused-call');
  const { id, card } = await cardFor(page, call.caller);
  await waitState(card, 'wachtend');
  assert.equal(await card.locator('.agent-leg').count(), 0, 'an outcome before any agent leg');
  await card.getByRole('button', { name: 'Opnemen', exact: true }).click();
  const note = card.locator('.agent-leg');
  await note.waitFor({ timeout: STEP });
  assert.equal(
    (await note.textContent()).trim(),
    'Uw telefoon weigerde het gesprek (geen gedeelde codec of versleuteling)',
  );
  assert.equal(await note.getAttribute('data-reason'), 'not_acceptable');
  assert.equal(await note.getAttribute('role'), 'alert');
  await waitState(card, 'wachtend');
  await card.getByRole('button', { name: 'Opnemen', exact: true }).waitFor({ timeout: STEP });
  await screenshot(page, 'portal-refused');
  await step('refused', { id: Number(id) });

  await card.getByRole('button', { name: 'Ophangen', exact: true }).click();
  await waitState(card, 'beëindigd');
  await step('ended', { id: Number(id) });
  await noProblems([page]);
  await context.close();
}

// ---- Run -------------------------------------------------------------------------------------

const scenarios = {
  verified: ['verified caller, Dutch: appears live, Opnemen, verbonden, Ophangen', verified],
  english: ['English: lockout, unverified caller, another tenant sees nothing, logout', english],
  refused: ['refused by the phone, Dutch: the card says why and waits again', refused],
};
const [title, scenario] = scenarios[scenarioName] || [];
if (!scenario) {
  console.error(`unknown scenario ${scenarioName}`);
  process.exit(2);
}

const browser = await launch();
let passed = 0;
let failed = 0;
try {
  await scenario(browser);
  console.log(`ok - ${title}`);
  passed += 1;
} catch (e) {
  console.log(`not ok - ${title}\n  ${String(e && e.stack ? e.stack : e).split('\n').join('\n  ')}`);
  for (const line of [...problems, ...consoleLog]) console.log(`  # ${line}`);
  for (const context of browser.contexts()) {
    for (const page of context.pages()) await screenshot(page, `portal-failed-${scenarioName}-${context.pages().indexOf(page)}`);
  }
  failed += 1;
} finally {
  await browser.close();
  endSteps();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
