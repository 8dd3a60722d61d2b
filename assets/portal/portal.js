// The agents' portal (served at /portal/portal.js; plain JavaScript, no build step, no other host).
//
// Login page: posts {"username","password"} to /api/v1/login and reloads; shows the generic
// failure or the lockout in words.
// Call list: keeps one card per call from GET /api/v1/calls and the server-sent events of
// GET /api/v1/calls/events (no polling). Every state-changing request carries X-CSRF-Token from
// <meta name="csrf-token">. When the stream drops the page says it is offline and reconnects; a
// dead session sends the agent back to the login form. Texts come from the page (data-texts).
// When an agent's phone did not take a call (agent_leg), the card says why in words: to that agent
// (data-agent), and to supervisors (data-supervisor) for anyone's phone.
// A verified call that is waiting or in progress offers **Vraag gegevens**: the tenant's extra
// requests (data-requests); picking one posts it to /api/v1/calls/{id}/requests, and the card lists
// each request's progress and what it brought, marked as added during the call.
'use strict';

(() => {
  const body = document.body;
  const T = JSON.parse(body.dataset.texts || '{}');
  const lang = document.documentElement.lang === 'en' ? 'en' : 'nl';
  const langQuery = lang === 'en' ? '?lang=en' : '';

  const fill = (text, values) => String(text || '').replace(/\{(\w+)\}/g, (_, k) => (k in values ? String(values[k]) : ''));

  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  if (body.dataset.page === 'login') login();
  else if (body.dataset.page === 'calls') calls();

  // ---- Login ---------------------------------------------------------------------------------

  function waitText(seconds) {
    const s = Math.max(1, Number(seconds) || 1);
    if (s === 1) return T.one_second;
    return s > 90 ? fill(T.minutes, { n: Math.ceil(s / 60) }) : fill(T.seconds, { n: s });
  }

  function login() {
    const form = document.getElementById('login-form');
    const error = document.getElementById('login-error');
    const button = form.querySelector('button[type="submit"]');
    const show = (text) => {
      error.textContent = text;
      error.hidden = false;
    };
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      error.hidden = true;
      button.disabled = true;
      try {
        const response = await fetch('/api/v1/login', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username: form.elements.username.value, password: form.elements.password.value }),
        });
        if (response.ok) {
          window.location.replace(`/portal${window.location.search}`);
          return;
        }
        let data = {};
        try {
          data = await response.json();
        } catch {
          // Not JSON: the generic message below.
        }
        if (response.status === 429) show(fill(T.locked, { wait: waitText(data.retry_after) }));
        else if (response.status === 401) show(T.login_failed);
        else show(T.login_error);
        form.elements.password.value = '';
        form.elements.password.focus();
      } catch {
        show(T.login_error);
      } finally {
        button.disabled = false;
      }
    });
  }

  // ---- Call list -----------------------------------------------------------------------------

  function calls() {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    const me = body.dataset.agent;
    const supervisor = 'supervisor' in body.dataset;
    const list = document.getElementById('calls');
    const empty = document.getElementById('no-calls');
    const offline = document.getElementById('offline');
    const soundToggle = document.getElementById('sound-toggle');
    const baseTitle = document.title;
    const cards = new Map(); // id → { call, node }
    const extraRequests = JSON.parse(body.dataset.requests || '[]'); // [{ id, label }]
    const RT = T.requests || {};
    let source = null;
    let retry = 1000;
    let touched = null; // ids changed by events while the list is being fetched
    let loaded = false; // the first list is in: later waiting calls are new
    let unseen = false; // a new call arrived while the tab was hidden
    let audio = null;

    // Sound: opt-in, remembered.
    soundToggle.checked = localStorage.getItem('vb-portal-sound') === 'on';
    soundToggle.addEventListener('change', () => {
      localStorage.setItem('vb-portal-sound', soundToggle.checked ? 'on' : 'off');
      if (soundToggle.checked) beep();
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) {
        unseen = false;
        updateTitle();
      }
    });

    document.getElementById('logout').addEventListener('click', async () => {
      try {
        await fetch('/api/v1/logout', { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf } });
      } finally {
        window.location.replace(`/portal${langQuery}`);
      }
    });

    connect();
    setInterval(tick, 1000);

    function connect() {
      source = new EventSource(`/api/v1/calls/events${langQuery}`);
      source.addEventListener('open', () => {
        retry = 1000;
        setOffline(false);
        refresh();
      });
      source.addEventListener('call', (event) => {
        const call = JSON.parse(event.data);
        if (touched) touched.add(call.id);
        upsert(call);
      });
      source.addEventListener('removed', (event) => {
        const { id } = JSON.parse(event.data);
        if (touched) touched.add(id);
        remove(id);
      });
      source.addEventListener('resync', () => refresh());
      source.addEventListener('error', () => {
        setOffline(true);
        // The browser retries by itself after a network blip (CONNECTING); after a refusal
        // (CLOSED: the session ended, or the server answered an error) we decide.
        if (source.readyState === EventSource.CLOSED) {
          source.close();
          setTimeout(checkAndReconnect, retry);
          retry = Math.min(retry * 2, 15000);
        }
      });
    }

    async function checkAndReconnect() {
      try {
        const response = await fetch(`/api/v1/calls${langQuery}`, { credentials: 'same-origin', cache: 'no-store' });
        if (response.status === 401) {
          window.location.replace(`/portal${langQuery}`);
          return;
        }
      } catch {
        // Still offline: try the stream again anyway; its error brings us back here.
      }
      connect();
    }

    function setOffline(isOffline) {
      offline.hidden = !isOffline;
      body.classList.toggle('is-offline', isOffline);
    }

    async function refresh() {
      const mine = new Set();
      touched = mine;
      try {
        const response = await fetch(`/api/v1/calls${langQuery}`, { credentials: 'same-origin', cache: 'no-store' });
        if (response.status === 401) {
          window.location.replace(`/portal${langQuery}`);
          return;
        }
        if (!response.ok) return;
        const current = await response.json();
        const ids = new Set(current.map((c) => c.id));
        for (const call of current) if (!mine.has(call.id)) upsert(call);
        for (const id of [...cards.keys()]) if (!ids.has(id) && !mine.has(id)) remove(id);
        loaded = true;
      } catch {
        // The stream's error handler shows the offline state.
      } finally {
        if (touched === mine) touched = null;
      }
    }

    function upsert(call) {
      const known = cards.get(call.id);
      const isNew = loaded && call.state === 'waiting' && (!known || known.call.state !== 'waiting') && !call.agent;
      if (known) {
        known.call = call;
        render(known);
      } else {
        const entry = { call, node: el('li', 'card') };
        cards.set(call.id, entry);
        render(entry);
        // Oldest first, as the list comes.
        const after = [...cards.values()].filter((c) => c.call.id > call.id && c.node.parentNode).sort((a, b) => a.call.id - b.call.id)[0];
        list.insertBefore(entry.node, after ? after.node : null);
      }
      if (isNew) announce();
      updateEmpty();
    }

    function remove(id) {
      const entry = cards.get(id);
      if (!entry) return;
      entry.node.remove();
      cards.delete(id);
      updateEmpty();
    }

    function updateEmpty() {
      empty.hidden = cards.size > 0;
      updateTitle();
    }

    function updateTitle() {
      const waiting = [...cards.values()].filter((c) => c.call.state === 'waiting').length;
      const prefix = unseen ? `● ${T.new_call} — ` : '';
      document.title = waiting > 0 ? `${prefix}(${waiting}) ${baseTitle}` : baseTitle;
    }

    function announce() {
      if (document.hidden) unseen = true;
      updateTitle();
      if (soundToggle.checked) beep();
    }

    function beep() {
      try {
        audio = audio || new AudioContext();
        if (audio.state === 'suspended') audio.resume();
        const start = audio.currentTime;
        for (const [at, freq] of [[0, 880], [0.2, 1175]]) {
          const osc = audio.createOscillator();
          const gain = audio.createGain();
          osc.frequency.value = freq;
          gain.gain.setValueAtTime(0.0001, start + at);
          gain.gain.exponentialRampToValueAtTime(0.2, start + at + 0.02);
          gain.gain.exponentialRampToValueAtTime(0.0001, start + at + 0.18);
          osc.connect(gain).connect(audio.destination);
          osc.start(start + at);
          osc.stop(start + at + 0.2);
        }
      } catch {
        // No audio here: the title still tells.
      }
    }

    function elapsed(since) {
      const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 1000));
      const h = Math.floor(seconds / 3600);
      const m = Math.floor((seconds % 3600) / 60);
      const s = String(seconds % 60).padStart(2, '0');
      return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
    }

    function tick() {
      for (const { call, node } of cards.values()) {
        const timer = node.querySelector('.timer-value');
        if (timer && call.state !== 'ended') timer.textContent = elapsed(call.since);
      }
    }

    function render(entry) {
      const { call, node } = entry;
      const focused = node.contains(document.activeElement) ? document.activeElement.dataset.action : null;
      const menuWasOpen = Boolean(node.querySelector('details.request-menu[open]'));
      const error = node.querySelector('.call-error');
      const errorText = error && !error.hidden ? error.textContent : '';
      node.replaceChildren();
      node.className = `card state-${call.state}${call.verified ? ' is-verified' : ''}`;
      node.dataset.callId = call.id;
      node.dataset.state = call.state;

      const article = el('article');
      const titleId = `call-${call.id}-title`;
      article.setAttribute('aria-labelledby', titleId);

      const head = el('header', 'card-head');
      const title = el('h2', 'caller', call.caller || (call.state === 'ended' ? fill(T.ended_call, { id: call.id }) : call.via === 'browser' ? T.via_browser : T.anonymous));
      title.id = titleId;
      head.append(title);
      head.append(el('span', `state state-${call.state}`, T[`state_${call.state}`] || call.state));
      node.append(article);
      article.append(head);

      if (call.state !== 'ended') {
        const timer = el('p', 'timer');
        const label = call.state === 'connected' ? T.in_call : T.waiting_time;
        timer.append(el('span', 'timer-label', `${label}: `));
        const value = el('span', 'timer-value', elapsed(call.since));
        timer.append(value);
        article.append(timer);
      }

      if (call.verified) {
        article.append(el('p', 'badge badge-verified', T.verified));
      } else if (call.reason || call.state !== 'collecting') {
        article.append(el('p', 'badge badge-unverified', T.unverified));
        if (call.reason) article.append(el('p', 'reason', T[`reason_${call.reason}`] || call.reason));
      }

      if (call.attributes && call.attributes.length > 0) {
        const dl = el('dl', 'attributes');
        for (const attribute of call.attributes) {
          const row = el('div', 'attribute');
          row.append(el('dt', '', attribute.label));
          row.append(el('dd', '', attribute.value === null ? '—' : attribute.value));
          dl.append(row);
        }
        article.append(dl);
      }

      if (call.links && call.links.length > 0) {
        const nav = el('nav', 'links');
        nav.setAttribute('aria-label', T.links);
        for (const link of call.links) {
          const a = el('a', 'link', link.label);
          a.href = link.url;
          a.target = '_blank';
          a.rel = 'noopener noreferrer';
          nav.append(a);
        }
        article.append(nav);
      }

      if (call.requests && call.requests.length > 0) article.append(requestList(call));

      if ((call.warnings || []).includes('code_reused')) {
        const warning = el('p', 'warning', T.warning_code_reused);
        warning.setAttribute('role', 'alert');
        article.append(warning);
      }

      const leg = call.agent_leg;
      if (leg && (leg.agent === me || supervisor)) {
        const status = leg.status === null || leg.status === undefined ? '' : leg.status;
        let text;
        if (leg.agent === me) {
          text = fill(T[`agent_leg_${leg.reason}`] || T.agent_leg_refused, { status });
        } else {
          const why = fill(T[`agent_leg_why_${leg.reason}`] || leg.reason, { status });
          text = fill(T.agent_leg_other, { name: leg.agent, why });
        }
        const note = el('p', 'agent-leg', text);
        note.dataset.reason = leg.reason;
        if (leg.agent === me) note.setAttribute('role', 'alert');
        article.append(note);
      }

      if (call.agent) {
        const who = call.agent === me ? T.taken_by_you : fill(T.taken_by, { name: call.agent_name || call.agent });
        article.append(el('p', 'taken', who));
      }
      const flags = [];
      if (call.on_hold) flags.push(T.on_hold);
      if (call.transferred) flags.push(T.transferred);
      if (call.via === 'exchange') flags.push(T.via_exchange);
      if (call.via === 'browser') flags.push(T.via_browser);
      if (call.forward_to && call.state !== 'ended') flags.push(fill(T.forward_to, { number: call.forward_to }));
      if (flags.length > 0) article.append(el('p', 'flags', flags.join(' · ')));

      const actions = el('div', 'actions');
      if (call.state === 'waiting') actions.append(button('answer', T.answer, 'primary'));
      if (call.state !== 'ended' && (!call.agent || call.agent === me)) actions.append(button('hangup', T.hang_up, 'danger'));
      if (canAsk(call)) actions.append(requestMenu(entry, menuWasOpen));
      if (actions.childElementCount > 0) article.append(actions);

      const message = el('p', 'call-error', errorText);
      message.setAttribute('role', 'alert');
      message.hidden = !errorText || call.state === 'ended';
      article.append(message);

      if (focused) {
        const again = node.querySelector(`button[data-action="${focused}"]`);
        if (again) again.focus();
      }

      function button(action, label, kind) {
        const b = el('button', `button ${kind}`, label);
        b.type = 'button';
        b.dataset.action = action;
        b.addEventListener('click', () => act(entry, action, b));
        return b;
      }
    }

    // ---- Extra requests during a call ---------------------------------------------------------

    function canAsk(call) {
      return extraRequests.length > 0 && call.verified && ['waiting', 'ringing', 'connected'].includes(call.state);
    }

    // **Vraag gegevens**: a disclosure widget listing the tenant's requests.
    function requestMenu(entry, open) {
      const menu = el('details', 'request-menu');
      menu.open = open;
      const summary = el('summary', 'button', RT.menu);
      summary.dataset.action = 'requests';
      menu.append(summary);
      const items = el('ul', 'request-items');
      for (const request of extraRequests) {
        const item = el('li');
        const b = el('button', 'button', request.label);
        b.type = 'button';
        b.dataset.request = request.id;
        b.addEventListener('click', () => ask(entry, request.id, b));
        item.append(b);
        items.append(item);
      }
      menu.append(items);
      return menu;
    }

    // Each request of the call: its label and state, why when it did not work, what it brought.
    function requestList(call) {
      const section = el('section', 'requests');
      section.setAttribute('aria-label', RT.heading);
      section.append(el('h3', 'requests-heading', RT.heading));
      const list = el('ul', 'request-list');
      for (const request of call.requests) {
        const item = el('li', `request request-${request.state}`);
        item.dataset.seq = request.seq;
        item.dataset.state = request.state;
        const head = el('p', 'request-head');
        head.append(el('strong', 'request-label', request.label));
        head.append(document.createTextNode(' — '));
        head.append(el('span', 'request-state', RT[`state_${request.state}`] || request.state));
        item.append(head);
        if (request.reason) {
          const why = el('p', 'request-reason', RT[`reason_${request.reason}`] || request.reason);
          if (request.state === 'unreachable') why.setAttribute('role', 'alert');
          item.append(why);
        }
        if (request.signature) item.append(el('p', 'request-signed', fill(RT.signed, { message: request.signature.message })));
        if (request.attributes && request.attributes.length > 0) {
          const dl = el('dl', 'attributes attributes-added');
          dl.setAttribute('aria-label', RT.added);
          for (const attribute of request.attributes) {
            const row = el('div', 'attribute');
            row.append(el('dt', '', attribute.label));
            const dd = el('dd', '', attribute.value === null ? '—' : attribute.value);
            dd.append(el('span', 'added', ` (${RT.added})`));
            row.append(dd);
            dl.append(row);
          }
          item.append(dl);
        }
        list.append(item);
      }
      section.append(list);
      return section;
    }

    async function ask(entry, request, buttonNode) {
      const message = entry.node.querySelector('.call-error');
      message.hidden = true;
      buttonNode.disabled = true;
      const menu = buttonNode.closest('details');
      try {
        const response = await fetch(`/api/v1/calls/${entry.call.id}/requests`, {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'content-type': 'application/json', 'X-CSRF-Token': csrf },
          body: JSON.stringify({ request }),
        });
        if (response.status === 401 || response.status === 403) {
          window.location.replace(`/portal${langQuery}`);
          return;
        }
        if (response.ok) {
          // The card may have been drawn anew meanwhile: close the menu it shows now.
          const current = entry.node.querySelector('details.request-menu') || menu;
          if (current) current.open = false;
          return;
        }
        let data = {};
        try {
          data = await response.json();
        } catch {
          // Not JSON: the generic message.
        }
        const current = entry.node.querySelector('.call-error');
        current.textContent = RT[`error_${data.error}`] || T[`error_${data.error}`] || T.error_other;
        current.hidden = false;
      } catch {
        const current = entry.node.querySelector('.call-error');
        current.textContent = T.error_other;
        current.hidden = false;
      } finally {
        if (buttonNode.isConnected) buttonNode.disabled = false;
      }
    }

    async function act(entry, action, buttonNode) {
      const message = entry.node.querySelector('.call-error');
      message.hidden = true;
      buttonNode.disabled = true;
      try {
        const response = await fetch(`/api/v1/calls/${entry.call.id}/${action}`, {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'content-type': 'application/json', 'X-CSRF-Token': csrf },
          body: '{}',
        });
        if (response.status === 401 || response.status === 403) {
          window.location.replace(`/portal${langQuery}`);
          return;
        }
        if (!response.ok) {
          let data = {};
          try {
            data = await response.json();
          } catch {
            // Not JSON: the generic message.
          }
          const current = entry.node.querySelector('.call-error');
          current.textContent = T[`error_${data.error}`] || T.error_other;
          current.hidden = false;
        }
      } catch {
        const current = entry.node.querySelector('.call-error');
        current.textContent = T.error_other;
        current.hidden = false;
      } finally {
        if (buttonNode.isConnected) buttonNode.disabled = false;
      }
    }
  }
})();
