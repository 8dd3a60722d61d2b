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
  },
  en: {
    done: (name) => `Done. The Yivi app will now call ${name} from your phone. Keep your phone at hand.`,
    cancelled: 'Sharing your data was stopped. You can try again.',
    expired: 'The time ran out. Please try again.',
    failed: 'Safe calling could not be started. Please try again later.',
    busy: 'Starting safe calling…',
  },
};

const script = document.currentScript;
const scriptUrl = new URL(script ? script.src : '/widget.js', document.baseURI);
const apiBase = new URL('api/v1/', new URL('.', scriptUrl)).href;
const defaultTenant = script ? script.getAttribute('data-tenant') : null;

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

function start(button) {
  if (button.getAttribute('aria-busy') === 'true') return;
  const lang = language();
  const text = TEXT[lang];
  const tenant = button.getAttribute('data-tenant') || defaultTenant;
  button.setAttribute('aria-busy', 'true');
  show(button, 'busy', text.busy);

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
        url: (o, { sessionToken }) => `${o.url}sessions/${encodeURIComponent(sessionToken)}/status?wait=10`,
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
      if (result && result.status === 'done') {
        show(button, 'done', text.done(result.tenantName || ''));
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
