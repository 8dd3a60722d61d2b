// When a browser call cannot happen, the citizen is told so, in their language, and may still call
// with the phone. A real browser (Debian's Chromium driven by playwright-core) against
// `veilig-bellen demo`:
//
//   node tests/browser/browser_call_failures.test.mjs http://127.0.0.1:PORT API_TOKEN
//
// 1. English page, the microphone refused (getUserMedia rejects with NotAllowedError, as when the
//    citizen clicks "Block"): the button said "Call from the browser"; the bar says why and
//    offers nothing; no offer was posted, so the session is not spent.
// 2. Dutch page, no microphone at all (NotFoundError): the bar says so.
// 3. Dutch page, the connection fails: the server's answer reaches the page with its candidate's
//    port changed to one where nothing listens, so ICE never connects: after 15 s the bar says the
//    connection failed; the call the server started for it ends (listed `ended`, attributes gone).
//
// Prints "ok - <scenario>" per scenario and "N passed, N failed"; exits 0 when all passed.

import assert from 'node:assert/strict';
import { FAKE_MICROPHONE, clickButton, discloseAsApp, launch, until } from './lib.mjs';

const [base, apiToken] = process.argv.slice(2);
if (!base || !/^http:\/\/(127\.0\.0\.1|\[::1\]|localhost):\d+$/.test(base) || !apiToken) {
  console.error('usage: node browser_call_failures.test.mjs http://127.0.0.1:PORT API_TOKEN (loopback only)');
  process.exit(2);
}
const STEP = 20_000;

async function calls() {
  const response = await fetch(`${base}/api/v1/calls`, { headers: { authorization: `Bearer ${apiToken}` } });
  assert.equal(response.status, 200, 'the agents API answers');
  const body = await response.json();
  return body.calls || body;
}

// The demo page in `lang`, disclosed through the simulator as the Yivi app would; the page then
// offers the browser call. Returns the page and the POSTs it made to the call endpoint.
async function disclosed(context, lang) {
  const page = await context.newPage();
  const posts = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && /\/api\/v1\/sessions\/[^/]+\/call$/.test(r.url())) posts.push(r.url());
  });
  await page.goto(`${base}/button-demo?lang=${lang}`);
  const session = await clickButton(page);
  await discloseAsApp(base, session.sessionPtr);
  const call = page.locator('[data-veilig-bellen-call] button[data-action="call"]');
  await call.waitFor({ timeout: STEP });
  return { page, call, posts };
}

// In the page: getUserMedia fails with `errorName`, as Chromium reports a refusal or a missing
// device.
const failMicrophone = (errorName) => {
  navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('test', errorName));
};

async function failedBar(page, limit = STEP) {
  const bar = page.locator('[data-veilig-bellen-call][data-state="failed"]');
  await bar.waitFor({ timeout: limit });
  assert.equal(await bar.locator('button').count(), 0, 'a failed call bar offers no buttons');
  return (await bar.textContent()).trim();
}

const scenarios = {
  async 'the microphone refused, in English'(browser) {
    const context = await browser.newContext({ locale: 'en-GB' });
    await context.addInitScript(failMicrophone, 'NotAllowedError');
    try {
      const { page, call, posts } = await disclosed(context, 'en');
      assert.equal(await call.textContent(), 'Call from the browser');
      await call.click();
      assert.equal(
        await failedBar(page),
        'Without access to your microphone you cannot call from the browser. Allow the microphone, or call with your phone.',
      );
      assert.deepEqual(posts, [], 'no offer is posted without a microphone');
    } finally {
      await context.close();
    }
  },

  async 'no microphone at all'(browser) {
    const context = await browser.newContext({ locale: 'nl-NL' });
    await context.addInitScript(failMicrophone, 'NotFoundError');
    try {
      const { page, call, posts } = await disclosed(context, 'nl');
      assert.equal(await call.textContent(), 'Bel via de browser');
      await call.click();
      assert.equal(await failedBar(page), 'Er is geen microfoon gevonden. Bel met uw telefoon.');
      assert.deepEqual(posts, []);
    } finally {
      await context.close();
    }
  },

  async 'the connection fails'(browser) {
    const context = await browser.newContext({ locale: 'nl-NL' });
    try {
      const { page, call, posts } = await disclosed(context, 'nl');
      // The server's answer, with every candidate's port moved to the discard port (9), where
      // nothing answers STUN on loopback.
      let candidates = 0;
      await page.route(/\/api\/v1\/sessions\/[^/]+\/call$/, async (route) => {
        if (route.request().method() !== 'POST') return route.continue();
        const response = await route.fetch();
        const sdp = (await response.text()).replace(
          /^(a=candidate:\S+ \d+ udp \d+ \S+ )\d+/gim,
          '$19',
        );
        candidates = (sdp.match(/^a=candidate:\S+ \d+ udp \d+ \S+ 9 typ host/gim) || []).length;
        await route.fulfill({ response, body: sdp });
      });
      const before = new Set((await calls()).map((c) => c.id));
      await call.click();
      // The widget gives up 15 s after the answer (and hangs up the server's side).
      assert.equal(
        await failedBar(page, 40_000),
        'De verbinding voor het gesprek is mislukt. Probeer het opnieuw of bel met uw telefoon.',
      );
      assert.equal(posts.length, 1, 'one offer was posted');
      assert.ok(candidates > 0, 'the answer had a host candidate to move');
      // The server's side of that call ends too.
      const ended = await until(
        'the failed browser call to end on the server',
        async () => (await calls()).find((c) => !before.has(c.id) && c.via === 'browser' && c.state === 'ended'),
        40_000,
      );
      assert.deepEqual(ended.attributes, [], 'attributes purged');
      assert.equal(ended.agent, null, 'no agent was rung');
    } finally {
      await context.close();
    }
  },
};

const browser = await launch(FAKE_MICROPHONE);
let passed = 0;
let failed = 0;
try {
  for (const [name, run] of Object.entries(scenarios)) {
    try {
      await run(browser);
      console.log(`ok - ${name}`);
      passed += 1;
    } catch (e) {
      console.log(`not ok - ${name}\n  ${String(e && e.stack ? e.stack : e).split('\n').join('\n  ')}`);
      failed += 1;
    }
  }
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
