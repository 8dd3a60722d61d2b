// A citizen calls from the browser (WebRTC), in a real browser (Debian's Chromium driven by
// playwright-core) with a fake microphone playing a tone, against `veilig-bellen demo`.
//
//   node tests/browser/browser_call.test.mjs http://127.0.0.1:PORT API_TOKEN TONE.wav HANGUP
//
// The demo page's button → the simulator discloses as the Yivi app → the page offers "Bel via de
// browser" → the call connects and is listed verified, via the browser, in the agents' API → the
// test registers the agent's phone (baresip, playing 440 Hz) and writes `<TONE.wav>.agent` → the
// agent `agent` answers → the page hears
// 440 Hz (a WebAudio analyser on the remote stream) → HANGUP `page`: the citizen clicks
// "Ophangen"; `agent`: the agent holds (the page hears the waiting signal, the call is listed
// `on_hold`) and resumes (the agent is heard again), then the page writes `<TONE.wav>.ready`, the
// test hangs up at the phone and
// writes `<TONE.wav>.hangup`, and the page says the call ended; before the page hangs up, it mutes
// (the test checks the phone hears nothing then) and unmutes. Prints "ok" when all of it held.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FAKE_MICROPHONE, clickButton, discloseAsApp, launchPersistent, until } from './lib.mjs';

const [base, apiToken, tone, hangup] = process.argv.slice(2);
if (!base || !/^http:\/\/(127\.0\.0\.1|\[::1\]|localhost):\d+$/.test(base) || !apiToken || !tone) {
  console.error('usage: node browser_call.test.mjs http://127.0.0.1:PORT API_TOKEN TONE.wav page|agent');
  process.exit(2);
}
const STEP = 20_000;
const log = [];

async function api(path, init = {}) {
  const response = await fetch(`${base}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json', ...(init.headers || {}) },
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

// The strongest of a few frequencies in what the page hears: a WebAudio analyser on the audio
// element's stream.
async function heard(page) {
  return page.evaluate(async () => {
    const audio = document.querySelector('audio[data-veilig-bellen-audio]');
    if (!audio || !audio.srcObject) return null;
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(audio.srcObject);
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    source.connect(analyser);
    await new Promise((r) => setTimeout(r, 700));
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    const hz = ctx.sampleRate / analyser.fftSize;
    const level = (f) => Math.max(...[-1, 0, 1].map((d) => bins[Math.round(f / hz) + d]));
    const out = {};
    for (const f of [425, 440, 1000, 2000]) out[f] = level(f);
    await ctx.close();
    return out;
  });
}

const profile = mkdtempSync(join(tmpdir(), 'vb-chromium-'));
const context = await launchPersistent(
  profile,
  [...FAKE_MICROPHONE, `--use-file-for-fake-audio-capture=${tone}`, '--autoplay-policy=no-user-gesture-required'],
  { viewport: { width: 1024, height: 768 } },
);
let ok = false;
try {
  const page = await context.newPage();
  page.on('console', (m) => log.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`pageerror: ${e}`));
  page.on('response', (r) => {
    if (r.status() >= 400) log.push(`http ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  await page.goto(`${base}/button-demo?lang=nl`);
  const session = await clickButton(page);
  // The Yivi app discloses (the simulator's endpoint).
  await discloseAsApp(base, session.sessionPtr);

  // The page offers the browser call; the citizen takes it.
  const call = page.locator('[data-veilig-bellen-call] button[data-action="call"]');
  await call.waitFor({ timeout: STEP });
  assert.equal(await call.textContent(), 'Bel via de browser');
  await call.click();
  const bar = page.locator('[data-veilig-bellen-call]');
  await page.locator('[data-veilig-bellen-call][data-state="connected"]').waitFor({ timeout: STEP });

  // The call is listed at once: verified, via the browser, waiting for an agent.
  const listed = await until('the browser call in the API', async () => {
    const { body } = await api('/api/v1/calls');
    return (body.calls || body).find((c) => c.via === 'browser' && c.state === 'waiting');
  });
  assert.equal(listed.verified, true, JSON.stringify(listed));
  assert.ok(listed.attributes && listed.attributes.length > 0, 'no attributes on the call');

  // The page hears the waiting signal (Dutch ringback, 425 Hz) while it waits.
  const waiting = await until('the waiting signal in the page', async () => {
    const levels = await heard(page);
    return levels && levels[425] > -60 && levels[425] > levels[2000] + 20 ? levels : null;
  });
  log.push(`waiting: ${JSON.stringify(waiting)}`);

  // The agent's phone registers now (the test starts it once the call waits), then the agent
  // answers; the phone (baresip, 440 Hz) is connected.
  await until('the agent\'s phone', async () => existsSync(`${tone}.agent`), 60_000);
  const answered = await api(`/api/v1/calls/${listed.id}/answer`, {
    method: 'POST',
    body: JSON.stringify({ agent: 'agent' }),
  });
  assert.ok(answered.status === 200 || answered.status === 202, `answer: ${answered.status} ${JSON.stringify(answered.body)}`);
  await until('the call connected to the agent', async () => {
    const { body } = await api('/api/v1/calls');
    return (body.calls || body).find((c) => c.id === listed.id && c.state === 'connected');
  });
  const talking = await until('the agent heard in the page', async () => {
    const levels = await heard(page);
    return levels && levels[440] > -60 && levels[440] > levels[2000] + 20 ? levels : null;
  });
  log.push(`agent: ${JSON.stringify(talking)}`);

  if (hangup === 'agent') {
    // The agent holds (the test does it at the phone once `<TONE.wav>.hold` exists, then writes
    // `<TONE.wav>.held`): the page hears the waiting signal instead of the agent; resumed
    // (`.resume` → `.resumed`), it hears the agent again. 425 and 440 Hz are close: the
    // analyser's window leaks one into the other at about −14 dB, so 10 dB tells them apart.
    writeFileSync(`${tone}.hold`, '');
    await until('the phone holding', async () => existsSync(`${tone}.held`), STEP);
    const held = await until('the waiting signal while held', async () => {
      const levels = await heard(page);
      return levels && levels[425] > -60 && levels[425] > levels[440] + 10 ? levels : null;
    });
    log.push(`held: ${JSON.stringify(held)}`);
    await until('the call listed on hold', async () => {
      const { body } = await api('/api/v1/calls');
      return (body.calls || body).find((c) => c.id === listed.id && c.on_hold === true);
    });
    writeFileSync(`${tone}.resume`, '');
    await until('the phone resuming', async () => existsSync(`${tone}.resumed`), STEP);
    const resumed = await until('the agent heard again', async () => {
      const levels = await heard(page);
      return levels && levels[440] > -60 && levels[440] > levels[425] + 10 ? levels : null;
    });
    log.push(`resumed: ${JSON.stringify(resumed)}`);
    // The test hangs up at the agent's phone once this file exists; the page says the call ended.
    writeFileSync(`${tone}.ready`, '');
    await until('the agent hanging up', async () => existsSync(`${tone}.hangup`), STEP);
    await page.locator('[data-veilig-bellen-call][data-state="ended"]').waitFor({ timeout: STEP });
  } else {
    // Microfoon uit: the agent stops hearing the citizen (the test checks at the phone, between
    // `<TONE.wav>.muted` and `<TONE.wav>.checked`); Microfoon aan brings the voice back.
    const mute = page.locator('[data-veilig-bellen-call] button[data-action="mute"]');
    assert.equal(await mute.textContent(), 'Microfoon uit');
    await mute.click();
    assert.equal(await mute.getAttribute('aria-pressed'), 'true');
    assert.equal(await mute.textContent(), 'Microfoon aan');
    writeFileSync(`${tone}.muted`, '');
    await until('the test to check the phone hears nothing', async () => existsSync(`${tone}.checked`), STEP);
    await mute.click();
    assert.equal(await mute.getAttribute('aria-pressed'), 'false');
    assert.equal(await mute.textContent(), 'Microfoon uit');
    await page.click('[data-veilig-bellen-call] button[data-action="hangup"]');
    await page.locator('[data-veilig-bellen-call][data-state="ended"]').waitFor({ timeout: STEP });
  }
  assert.match(await bar.textContent(), /Het gesprek is beëindigd/);
  await until('the call ended in the API', async () => {
    const { body } = await api('/api/v1/calls');
    return (body.calls || body).find((c) => c.id === listed.id && c.state === 'ended');
  });
  ok = true;
} catch (e) {
  console.log(`not ok - ${String(e && e.stack ? e.stack : e)}`);
  for (const line of log) console.log(`  # ${line}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
if (ok) {
  for (const line of log) console.log(`  # ${line}`);
  console.log('ok');
}
process.exit(ok ? 0 : 1);
