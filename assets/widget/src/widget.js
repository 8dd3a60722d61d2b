// Veilig bellen button for municipality websites.
//
// Usage on the municipality's page:
//   <script src="https://OUR-HOST/widget.js" data-tenant="nijmegen" defer></script>
//   <button data-veilig-bellen>Veilig bellen</button>
//
// A click starts a session at OUR-HOST (POST /api/v1/sessions), then yivi-frontend shows its popup:
// a QR code on a computer, an "open the Yivi app" button on a phone. It follows the session at the
// IRMA server's client API (the session pointer's `u`). When the disclosure is done, yivi-frontend's
// result step asks OUR-HOST for the status and the widget tells the citizen that the phone will now
// call. The link code never reaches this page: only the Yivi app gets it, in the tel: return URL.
//
// When the municipality takes calls from the browser (the status says `webrtc: true`), the citizen
// may instead call from this page: "Bel via de browser" asks for the microphone (only then), posts a
// WebRTC offer to OUR-HOST (POST /api/v1/sessions/{token}/call, WHIP) and shows a call bar with
// mute and hang-up. The session's token binds the call to the disclosure; still no code here.
//
// While the citizen may call, the page stays with the session: it follows the status
// (GET /api/v1/sessions/{token}/status?wait=15&requests=V), and when the agent asks for more during
// the call (an extra disclosure or a signature; a phone call's request comes in the status answer,
// a browser call's over its WebRTC data channel), it shows the new Yivi session in the popup with
// what is asked, then whether the municipality received it.
//
// Optional attributes: data-lang="nl|en" on the script (default: the page's <html lang>, else nl),
// data-debug on the script (yivi-frontend logs to the console), data-tenant on a button (overrides
// the script's).

import yivi from '@privacybydesign/yivi-frontend';

const TEXT = {
  nl: {
    done: (name) => `Gelukt. De Yivi-app belt nu ${name} vanaf uw telefoon. Neem uw telefoon erbij.`,
    cancelled: 'Het delen van uw gegevens is gestopt. U kunt het opnieuw proberen.',
    expired: 'De tijd is verstreken. Probeer het opnieuw.',
    failed: 'Het is niet gelukt om veilig bellen te starten. Probeer het later opnieuw.',
    busy: 'Veilig bellen wordt gestart…',
    requestDisclose: (name, label) => `${name || 'De gemeente'} vraagt u tijdens het gesprek om: ${label}. Deel het met de Yivi-app.`,
    requestSign: (name, label) => `${name || 'De gemeente'} vraagt u tijdens het gesprek te ondertekenen: ${label}. Onderteken met de Yivi-app.`,
    requestShare: 'Deel met Yivi',
    requestSignButton: 'Onderteken met Yivi',
    requestChecking: 'Even controleren…',
    requestDone: 'Dank u. De medewerker heeft het ontvangen.',
    requestCancelled: 'Het verzoek van de medewerker is gestopt.',
    requestExpired: 'Het verzoek van de medewerker is verlopen.',
    requestRefused: 'De gemeente kon uw antwoord niet accepteren. De medewerker ziet dit ook.',
    doneBrowser: (name) => `Gelukt. De Yivi-app belt nu ${name} vanaf uw telefoon. U kunt ook hier via de browser bellen.`,
    callBrowser: 'Bel via de browser',
    connecting: 'Verbinden…',
    waiting: 'Verbonden. U wacht op een medewerker; u hoort de wachttoon.',
    mute: 'Microfoon uit',
    unmute: 'Microfoon aan',
    hangUp: 'Ophangen',
    ended: 'Het gesprek is beëindigd.',
    micRefused: 'Zonder toegang tot uw microfoon kunt u niet via de browser bellen. Sta de microfoon toe, of bel met uw telefoon.',
    noMic: 'Er is geen microfoon gevonden. Bel met uw telefoon.',
    connectFailed: 'De verbinding voor het gesprek is mislukt. Probeer het opnieuw of bel met uw telefoon.',
    alreadyCalled: 'Met deze sessie is al gebeld. Start veilig bellen opnieuw om nog eens te bellen.',
  },
  en: {
    done: (name) => `Done. The Yivi app will now call ${name} from your phone. Keep your phone at hand.`,
    cancelled: 'Sharing your data was stopped. You can try again.',
    expired: 'The time ran out. Please try again.',
    failed: 'Safe calling could not be started. Please try again later.',
    busy: 'Starting safe calling…',
    requestDisclose: (name, label) => `${name || 'The municipality'} asks you during the call for: ${label}. Share it with the Yivi app.`,
    requestSign: (name, label) => `${name || 'The municipality'} asks you during the call to sign: ${label}. Sign with the Yivi app.`,
    requestShare: 'Share with Yivi',
    requestSignButton: 'Sign with Yivi',
    requestChecking: 'Checking…',
    requestDone: 'Thank you. The agent has received it.',
    requestCancelled: "The agent's request was stopped.",
    requestExpired: "The agent's request has expired.",
    requestRefused: 'The municipality could not accept your answer. The agent sees this too.',
    doneBrowser: (name) => `Done. The Yivi app will now call ${name} from your phone. You can also call from the browser here.`,
    callBrowser: 'Call from the browser',
    connecting: 'Connecting…',
    waiting: 'Connected. You are waiting for an agent; you hear the waiting tone.',
    mute: 'Mute microphone',
    unmute: 'Unmute microphone',
    hangUp: 'Hang up',
    ended: 'The call has ended.',
    micRefused: 'Without access to your microphone you cannot call from the browser. Allow the microphone, or call with your phone.',
    noMic: 'No microphone was found. Please call with your phone.',
    connectFailed: 'The connection for the call failed. Try again or call with your phone.',
    alreadyCalled: 'This session has already called. Start safe calling again to call once more.',
  },
};

const script = document.currentScript;
const scriptUrl = new URL(script ? script.src : '/widget.js', document.baseURI);
const apiBase = new URL('api/v1/', new URL('.', scriptUrl)).href;
const defaultTenant = script ? script.getAttribute('data-tenant') : null;
// A browser call not connected this long after the server's answer has failed (a network that
// blocks UDP to the server leaves the browser trying for much longer than a citizen waits).
const CONNECT_LIMIT_MS = 15000;

function language() {
  const wanted = (script && script.getAttribute('data-lang')) || document.documentElement.lang || 'nl';
  return wanted.toLowerCase().startsWith('en') ? 'en' : 'nl';
}

// A live region right after the button, created once per button.
function statusRegion(button) {
  const next = button.nextElementSibling;
  if (next && next.hasAttribute('data-veilig-bellen-status')) return next;
  const region = document.createElement('p');
  region.setAttribute('data-veilig-bellen-status', '');
  region.setAttribute('role', 'status');
  region.setAttribute('aria-live', 'polite');
  button.insertAdjacentElement('afterend', region);
  return region;
}

function show(button, state, message) {
  const region = statusRegion(button);
  region.setAttribute('data-state', state);
  region.textContent = message;
}

// The call bar after the status region: a live text, mute and hang-up. One per button.
// The element with attribute `attr` among the widget's parts right after the status region
// (the call bar, the request box), or null.
function part(button, attr) {
  for (let el = statusRegion(button).nextElementSibling; el; el = el.nextElementSibling) {
    if (el.hasAttribute(attr)) return el;
    if (!el.hasAttribute('data-veilig-bellen-call') && !el.hasAttribute('data-veilig-bellen-request')) break;
  }
  return null;
}

function callBar(button) {
  const found = part(button, 'data-veilig-bellen-call');
  if (found) return found;
  const bar = document.createElement('div');
  bar.setAttribute('data-veilig-bellen-call', '');
  statusRegion(button).insertAdjacentElement('afterend', bar);
  return bar;
}

function removeCallBar(button) {
  const found = part(button, 'data-veilig-bellen-call');
  if (found) found.remove();
}

function barButton(label, action) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.setAttribute('data-action', action);
  return b;
}

// Offers "Bel via de browser" for the disclosed session `token`.
function offerBrowserCall(button, token, text, view) {
  const bar = callBar(button);
  bar.replaceChildren();
  bar.setAttribute('data-state', 'offer');
  const call = barButton(text.callBrowser, 'call');
  call.addEventListener('click', () => browserCall(button, token, text, view));
  bar.append(call);
}

// Waits (at most `ms`) until the connection gathered its candidates, so the offer carries them.
function gathered(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === 'complete') resolve();
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, ms);
  });
}

async function browserCall(button, token, text, view) {
  const bar = callBar(button);
  bar.replaceChildren();
  bar.setAttribute('data-state', 'connecting');
  const line = document.createElement('p');
  line.setAttribute('role', 'status');
  line.setAttribute('aria-live', 'polite');
  line.textContent = text.connecting;
  bar.append(line);
  const say = (state, message) => {
    bar.setAttribute('data-state', state);
    line.textContent = message;
  };

  let microphone;
  try {
    microphone = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  } catch (error) {
    const name = error && error.name;
    say('failed', name === 'NotFoundError' || name === 'OverconstrainedError' ? text.noMic : text.micRefused);
    return;
  }

  const pc = new RTCPeerConnection({ iceServers: [] });
  const audio = document.createElement('audio');
  audio.autoplay = true;
  audio.setAttribute('data-veilig-bellen-audio', '');
  bar.append(audio);
  pc.addEventListener('track', (event) => {
    audio.srcObject = event.streams[0] || new MediaStream([event.track]);
  });
  microphone.getTracks().forEach((track) => pc.addTrack(track, microphone));
  // Messages from the call: the agent's requests, and that the call ended.
  const channel = pc.createDataChannel('veilig-bellen');

  let location = null;
  let over = false;
  const end = (state, message) => {
    if (over) return;
    over = true;
    microphone.getTracks().forEach((t) => t.stop());
    pc.close();
    audio.srcObject = null;
    view.closeAll();
    say(state, message);
    bar.querySelectorAll('button').forEach((b) => b.remove());
  };
  channel.addEventListener('message', (event) => {
    let message = null;
    try {
      message = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    if (message && message.type === 'ended') end('ended', text.ended);
    else if (message && message.type === 'request' && message.request) view.show(message.request);
  });
  pc.addEventListener('connectionstatechange', () => {
    if (pc.connectionState === 'connected') say('connected', text.waiting);
    else if (pc.connectionState === 'failed') end('failed', bar.getAttribute('data-state') === 'connected' ? text.ended : text.connectFailed);
  });

  const mute = barButton(text.mute, 'mute');
  mute.setAttribute('aria-pressed', 'false');
  mute.addEventListener('click', () => {
    const muted = mute.getAttribute('aria-pressed') !== 'true';
    microphone.getAudioTracks().forEach((t) => {
      t.enabled = !muted;
    });
    mute.setAttribute('aria-pressed', String(muted));
    mute.textContent = muted ? text.unmute : text.mute;
  });
  const hangUpServer = () => {
    if (location) fetch(new URL(location, apiBase).href, { method: 'DELETE' }).catch(() => {});
  };
  const hangUp = barButton(text.hangUp, 'hangup');
  hangUp.addEventListener('click', () => {
    hangUpServer();
    end('ended', text.ended);
  });
  bar.append(mute, hangUp);

  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 2000);
    const response = await fetch(`${apiBase}sessions/${encodeURIComponent(token)}/call`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp' },
      body: pc.localDescription.sdp,
    });
    if (response.status === 409) {
      end('failed', text.alreadyCalled);
      return;
    }
    if (response.status !== 201) throw new Error(`HTTP ${response.status}`);
    location = response.headers.get('Location') || `sessions/${encodeURIComponent(token)}/call`;
    await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
    setTimeout(() => {
      if (over || pc.connectionState === 'connected') return;
      hangUpServer();
      end('failed', text.connectFailed);
    }, CONNECT_LIMIT_MS);
  } catch (_) {
    end('failed', text.connectFailed);
  }
}

// ---- The agent's requests during a call --------------------------------------------------------------

// After the status region: what the agent asks and how it went (a live line), and the button that
// opens the Yivi session. One per button.
function requestRegion(button) {
  const region = statusRegion(button);
  const found = part(button, 'data-veilig-bellen-request');
  if (found) return found;
  const box = document.createElement('div');
  box.setAttribute('data-veilig-bellen-request', '');
  box.hidden = true;
  const line = document.createElement('p');
  line.setAttribute('role', 'status');
  line.setAttribute('aria-live', 'polite');
  box.append(line);
  region.insertAdjacentElement('afterend', box);
  return box;
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Shows the agent's requests on `button`'s page: `show(request)` for each news of a request (as the
// status answer's `request` or a browser call's data-channel message holds it), `closeAll()` when
// the call ended. One per disclosed session; a phone call's status stream and a browser call's data
// channel share it.
function requestView(button, text, lang, tenantName) {
  const box = requestRegion(button);
  const line = box.querySelector('p');
  const popups = new Map(); // request id → its yivi popup while open
  const say = (state, message) => {
    box.hidden = false;
    box.setAttribute('data-state', state);
    line.textContent = message;
    if (state !== 'pending') box.querySelectorAll('button').forEach((b) => b.remove());
  };
  const close = (id) => {
    const popup = popups.get(id);
    popups.delete(id);
    if (popup && typeof popup.abort === 'function') {
      try {
        popup.abort();
      } catch (_) {
        // Already closed.
      }
    }
  };
  const show = (request) => {
    const label = lang === 'en' ? request.labelEn || request.label : request.label;
    for (const id of [...popups.keys()]) if (id !== request.id) close(id);
    if (request.state === 'pending') {
      const fresh = box.getAttribute('data-request') !== String(request.id);
      // Shared in the app already: wait for the municipality's verdict.
      if (!fresh && box.getAttribute('data-state') === 'checking') return;
      box.setAttribute('data-request', String(request.id));
      say('pending', request.kind === 'sign' ? text.requestSign(tenantName, label) : text.requestDisclose(tenantName, label));
      if (!fresh || !request.sessionPtr) return;
      // The citizen reads what is asked, then opens the Yivi session (the popup covers the page).
      box.querySelectorAll('button').forEach((b) => b.remove());
      const open = document.createElement('button');
      open.type = 'button';
      open.setAttribute('data-action', 'yivi');
      open.textContent = request.kind === 'sign' ? text.requestSignButton : text.requestShare;
      open.addEventListener('click', () => openYivi(request));
      box.append(open);
      return;
    }
    box.setAttribute('data-request', String(request.id));
    close(request.id);
    const words = {
      done: text.requestDone,
      cancelled: text.requestCancelled,
      expired: text.requestExpired,
      refused: text.requestRefused,
    };
    say(request.state, words[request.state] || text.requestCancelled);
  };
  const openYivi = (request) => {
    if (popups.has(request.id)) return;
    const popup = yivi.newPopup({
      debugging: Boolean(script && script.hasAttribute('data-debug')),
      language: lang,
      session: {
        start: false,
        mapping: {
          sessionPtr: () => request.sessionPtr,
          frontendRequest: () => request.frontendRequest,
        },
        result: false,
      },
      state: { serverSentEvents: false },
    });
    popups.set(request.id, popup);
    popup
      .start()
      .then(() => {
        if (box.getAttribute('data-state') === 'pending') say('checking', text.requestChecking);
      })
      .catch(() => {
        // Closed or declined: the status says what became of it.
      })
      .finally(() => popups.delete(request.id));
  };
  const closeAll = () => {
    for (const id of [...popups.keys()]) close(id);
  };
  return { show, closeAll };
}

// Follows the disclosed session `token` while the citizen may call and talks: hands each request
// the agent makes (`request` in the status answer) to `view`. Stops when the call ended, the
// session did, or the button left the page.
async function followRequests(button, token, view) {
  // A newer session on this button takes over: the older loop ends at its next answer.
  const run = String((Number(button.getAttribute('data-veilig-bellen-run')) || 0) + 1);
  button.setAttribute('data-veilig-bellen-run', run);
  const current = () => button.isConnected && button.getAttribute('data-veilig-bellen-run') === run;
  let version = 0;
  let failures = 0;
  const started = Date.now();
  while (current() && Date.now() - started < 4 * 3600 * 1000) {
    let answer;
    try {
      const response = await fetch(`${apiBase}sessions/${encodeURIComponent(token)}/status?wait=15&requests=${version}`, {
        cache: 'no-store',
      });
      if (response.status === 404) return;
      if (response.status === 429) {
        await pause(1000 * Math.min(60, Number(response.headers.get('Retry-After')) || 5));
        continue;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      answer = await response.json();
      failures = 0;
    } catch (_) {
      failures += 1;
      if (failures > 8) return;
      await pause(1000 * failures);
      continue;
    }
    if (!answer || answer.status !== 'done' || !current()) return;
    version = Number(answer.requests) || 0;
    if (answer.request) view.show(answer.request);
    if (answer.call === 'ended') {
      view.closeAll();
      return;
    }
    // Never faster than this, whatever the server answers.
    await pause(250);
  }
}

function start(button) {
  if (button.getAttribute('aria-busy') === 'true') return;
  const lang = language();
  const text = TEXT[lang];
  const tenant = button.getAttribute('data-tenant') || defaultTenant;
  button.setAttribute('aria-busy', 'true');
  show(button, 'busy', text.busy);
  removeCallBar(button);
  // Our frontend token, from the result step: the browser call names the session by it.
  let token = null;

  const popup = yivi.newPopup({
    debugging: Boolean(script && script.hasAttribute('data-debug')),
    language: lang,
    session: {
      url: apiBase,
      start: {
        url: (o) => `${o.url}sessions`,
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(tenant ? { tenant } : {}),
      },
      // Default mapping: sessionPtr, token (our frontend token), frontendRequest.
      result: {
        url: (o, { sessionToken }) => {
          token = sessionToken;
          return `${o.url}sessions/${encodeURIComponent(sessionToken)}/status?wait=10`;
        },
        parseResponse: (r) => r.json(),
      },
    },
    // Follow the IRMA session by polling its client API (every 500 ms). irmago serves status
    // events only when started with --sse (off by default) and they rarely survive proxies;
    // polling behaves the same everywhere.
    state: { serverSentEvents: false },
  });

  popup
    .start()
    .then((outcome) => {
      // yivi-core resolves with the result step's answer (in an array when plugins add values).
      const result = Array.isArray(outcome) ? outcome[0] : outcome;
      if (result && result.status === 'done' && result.webrtc === true && token && window.RTCPeerConnection) {
        const view = requestView(button, text, lang, result.tenantName || '');
        show(button, 'done', text.doneBrowser(result.tenantName || ''));
        offerBrowserCall(button, token, text, view);
        followRequests(button, token, view);
      } else if (result && result.status === 'done') {
        show(button, 'done', text.done(result.tenantName || ''));
        if (token) followRequests(button, token, requestView(button, text, lang, result.tenantName || ''));
      } else if (result && result.status === 'expired') {
        show(button, 'expired', text.expired);
      } else {
        show(button, 'failed', text.failed);
      }
    })
    .catch((error) => {
      // yivi-core rejects with its final state's name: Cancelled, TimedOut, Aborted or Error.
      const reason = String(Array.isArray(error) ? error[0] : error);
      if (reason === 'Cancelled' || reason === 'Aborted') show(button, 'cancelled', text.cancelled);
      else if (reason === 'TimedOut') show(button, 'expired', text.expired);
      else show(button, 'failed', text.failed);
    })
    .finally(() => button.removeAttribute('aria-busy'));
}

document.addEventListener('click', (event) => {
  const target = event.target instanceof Element ? event.target.closest('[data-veilig-bellen]') : null;
  if (!target) return;
  event.preventDefault();
  start(target);
});
