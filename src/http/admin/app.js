// The operator page: a thin client of the public API (API.md), signed in with the API's own
// tokens. Everything shown comes from /api/v1; nothing here has powers a curl user lacks.
'use strict';

const API = '/api/v1';
const TOKENS_KEY = 'chronicle.operator.tokens';
const PROJECTORS_EVERY_MS = 1000;
const EVENTS_EVERY_MS = 2000;
const WEBHOOKS_EVERY_MS = 5000;
const EMAILS_EVERY_MS = 3000;
const EVENTS_KEPT = 200;

let tokens = readTokens();
// One refresh at a time: refresh tokens work once, and a second concurrent use of the same one
// would look like theft to the server and revoke the whole session.
let refreshing = null;
let timers = [];
// Rebuilds this page asked for, by projector: what `last_rebuild` said before the click, so a
// rebuild that finished between two polls is still reported as finished.
const requestedRebuilds = new Map();
let lastEventPosition = null;
let lastProjectors = [];

function readTokens() {
  try {
    return JSON.parse(sessionStorage.getItem(TOKENS_KEY));
  } catch {
    return null;
  }
}

function saveTokens(next) {
  tokens = next;
  if (next) sessionStorage.setItem(TOKENS_KEY, JSON.stringify(next));
  else sessionStorage.removeItem(TOKENS_KEY);
}

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function send(method, path, body, accessToken) {
  const headers = { Accept: 'application/json' };
  if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { detail: text };
    }
  }
  return { status: response.status, body: parsed };
}

async function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      const answer = await send('POST', '/auth/refresh', { refresh_token: tokens.refresh });
      if (answer.status !== 200) throw new ApiError(answer.status, answer.body);
      saveTokens({ ...tokens, access: answer.body.data.access_token, refresh: answer.body.data.refresh_token });
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

// An authenticated call; an expired access token is refreshed once, and a session that cannot
// be refreshed sends the operator back to the sign-in form.
async function api(method, path, body) {
  if (!tokens) throw new ApiError(401, { detail: 'not signed in' });
  if (refreshing) await refreshing.catch(() => {});
  let answer = await send(method, path, body, tokens.access);
  if (answer.status === 401) {
    try {
      await refresh();
    } catch (error) {
      signOut('Your session ended; sign in again.');
      throw error;
    }
    answer = await send(method, path, body, tokens.access);
  }
  if (answer.status >= 400) throw new ApiError(answer.status, answer.body);
  return answer;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'onclick') node.addEventListener('click', value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function time(value) {
  return value ? new Date(value).toLocaleTimeString() : '';
}

function showError(message) {
  document.getElementById('console-error').textContent = message || '';
}

function show(signedIn) {
  document.getElementById('sign-in').hidden = signedIn;
  document.getElementById('console').hidden = !signedIn;
  document.getElementById('whoami').hidden = !signedIn;
  if (signedIn) document.getElementById('whoami-email').textContent = tokens.email;
}

// ---- sign-in ------------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const error = document.getElementById('sign-in-error');
  const button = document.getElementById('sign-in-button');
  error.textContent = '';
  button.disabled = true;
  try {
    const answer = await send('POST', '/auth/login', {
      email: document.getElementById('email').value,
      password: document.getElementById('password').value,
    });
    if (answer.status !== 200) throw new ApiError(answer.status, answer.body);
    const { user, access_token, refresh_token } = answer.body.data;
    if (user.role !== 'admin') {
      // Not ours to keep: end the session the login just opened.
      await send('POST', '/auth/logout', undefined, access_token);
      throw new Error('This account is not an admin.');
    }
    saveTokens({ access: access_token, refresh: refresh_token, email: user.email });
    document.getElementById('password').value = '';
    start();
  } catch (e) {
    error.textContent = e.status === 401 ? 'Wrong email or password.' : e.message;
  } finally {
    button.disabled = false;
  }
}

function signOut(message) {
  const access = tokens && tokens.access;
  saveTokens(null);
  stop();
  if (access) send('POST', '/auth/logout', undefined, access).catch(() => {});
  show(false);
  document.getElementById('sign-in-error').textContent = typeof message === 'string' ? message : '';
}

// ---- projectors ---------------------------------------------------------------------------

function finishedRebuildAt(projector) {
  return projector.last_rebuild ? projector.last_rebuild.finished_at : null;
}

function rebuildCell(projector) {
  const requested = requestedRebuilds.get(projector.name);
  const finishedAt = finishedRebuildAt(projector);
  if (projector.rebuild) {
    const { applied, total } = projector.rebuild;
    const percent = total > 0 ? Math.floor((applied * 100) / total) : 0;
    return el('td', { class: 'rebuild-state', 'data-state': 'running' },
      el('progress', { value: applied, max: Math.max(total, 1) }),
      ` ${applied} / ${total} events (${percent}%)`);
  }
  if (requested && finishedAt === requested.finishedBefore) {
    return el('td', { class: 'rebuild-state', 'data-state': 'starting' }, 'starting…');
  }
  if (finishedAt) {
    if (requested) requestedRebuilds.delete(projector.name);
    return el('td', { class: 'rebuild-state', 'data-state': 'finished' },
      `rebuilt ${projector.last_rebuild.applied} events at ${time(finishedAt)}`);
  }
  return el('td', { class: 'rebuild-state', 'data-state': 'none' }, '—');
}

async function startRebuild(projector) {
  showError('');
  requestedRebuilds.set(projector.name, {
    finishedBefore: finishedRebuildAt(projector),
  });
  // Show the click at once; the server's answer may take a poll or two to reflect it.
  renderProjectors(lastProjectors);
  try {
    await api('POST', `/admin/projections/${encodeURIComponent(projector.name)}/rebuild`);
  } catch (e) {
    requestedRebuilds.delete(projector.name);
    showError(`Rebuild of ${projector.name}: ${e.message}`);
  }
  await loadProjectors();
}

function renderProjectors(projectors) {
  lastProjectors = projectors;
  const body = document.querySelector('#projectors tbody');
  body.replaceChildren(...projectors.map((p) => {
    const busy = Boolean(p.rebuild) || requestedRebuilds.has(p.name);
    return el('tr', { id: `projector-${p.name}` },
      el('td', {}, p.name),
      el('td', { class: `status status-${p.status}` }, p.status),
      el('td', { class: 'lag' }, p.lag),
      el('td', { class: 'mono' }, p.position),
      el('td', { class: 'mono' }, p.head_position),
      rebuildCell(p),
      el('td', { class: 'error' }, p.last_error || ''),
      el('td', {}, time(p.updated_at)),
      el('td', {}, el('button', {
        type: 'button', class: 'rebuild', 'data-projector': p.name, disabled: busy,
        onclick: () => startRebuild(p),
      }, 'Rebuild')));
  }));
}

async function loadProjectors() {
  const answer = await api('GET', '/admin/projections');
  renderProjectors(answer.body.data);
}

// ---- event log ----------------------------------------------------------------------------

function eventRow(event) {
  return el('tr', { 'data-event-id': event.id },
    el('td', { class: 'mono' }, event.position),
    el('td', {}, time(event.recorded_at)),
    el('td', {}, event.type),
    el('td', { class: 'mono' }, `${event.aggregate_type}/${event.aggregate_id}`),
    el('td', {}, event.aggregate_version),
    el('td', { class: 'mono' }, (event.metadata && event.metadata.actor_id) || ''));
}

// Newest first; the oldest rows fall off so a long-open page stays small.
function prependEvents(events) {
  const body = document.querySelector('#events tbody');
  for (const event of events) body.prepend(eventRow(event));
  while (body.rows.length > EVENTS_KEPT) body.deleteRow(body.rows.length - 1);
  if (events.length) lastEventPosition = events[events.length - 1].position;
}

async function loadEvents() {
  if (lastEventPosition === null) {
    const answer = await api('GET', '/events?last=50');
    document.querySelector('#events tbody').replaceChildren();
    prependEvents(answer.body.data);
    if (!answer.body.data.length) lastEventPosition = '';
    return;
  }
  for (;;) {
    // An empty log has no position yet: follow it from its start.
    const after = lastEventPosition ? `after=${encodeURIComponent(lastEventPosition)}&` : '';
    const answer = await api('GET', `/events?${after}limit=200`);
    prependEvents(answer.body.data);
    if (!answer.body.pagination || !answer.body.pagination.has_more) break;
  }
}

// ---- webhooks -----------------------------------------------------------------------------

async function retryDelivery(endpoint, delivery, button) {
  button.disabled = true;
  showError('');
  try {
    await api('POST', `/webhooks/${endpoint.id}/deliveries/${delivery.id}/retry`);
    button.textContent = 'queued';
  } catch (e) {
    showError(`Retry of ${delivery.id}: ${e.message}`);
    button.disabled = false;
  }
  setTimeout(loadWebhooks, 500);
}

function deliveriesTable(endpoint, deliveries) {
  if (!deliveries.length) return el('p', { class: 'muted' }, 'No deliveries yet.');
  return el('table', { class: 'deliveries' },
    el('thead', {}, el('tr', {},
      ['created', 'event', 'status', 'attempts', 'last code', 'last error', 'next attempt', 'delivered', '']
        .map((h) => el('th', {}, h)))),
    el('tbody', {}, deliveries.map((d) => {
      const button = el('button', { type: 'button', class: 'retry', 'data-delivery': d.id }, 'Retry');
      button.addEventListener('click', () => retryDelivery(endpoint, d, button));
      return el('tr', { 'data-delivery-id': d.id },
        el('td', {}, time(d.created_at)),
        el('td', {}, d.event_type),
        el('td', { class: `status status-${d.status}` }, d.status),
        el('td', {}, d.attempts),
        el('td', {}, d.last_status_code ?? ''),
        el('td', { class: 'error' }, d.last_error || ''),
        el('td', {}, time(d.next_attempt_at)),
        el('td', {}, time(d.delivered_at)),
        el('td', {}, button));
    })));
}

async function loadWebhooks() {
  const endpoints = (await api('GET', '/webhooks')).body.data;
  const blocks = await Promise.all(endpoints.map(async (endpoint) => {
    const deliveries = (await api('GET', `/webhooks/${endpoint.id}/deliveries?limit=10`)).body.data;
    return el('div', { class: 'endpoint', 'data-endpoint-id': endpoint.id },
      el('h3', {}, endpoint.url, ' ',
        el('span', { class: 'muted' },
          endpoint.enabled ? 'enabled' : `disabled${endpoint.disabled_reason ? `: ${endpoint.disabled_reason}` : ''}`,
          ` · ${endpoint.event_types.join(', ')}`)),
      deliveriesTable(endpoint, deliveries));
  }));
  const container = document.getElementById('webhooks');
  if (blocks.length) container.replaceChildren(...blocks);
  else container.replaceChildren(el('p', { class: 'muted' }, 'No endpoints.'));
}

// ---- email outbox -------------------------------------------------------------------------

async function retryEmail(email, button) {
  button.disabled = true;
  showError('');
  try {
    await api('POST', `/admin/emails/${email.id}/retry`);
    button.textContent = 'queued';
  } catch (e) {
    showError(`Retry of ${email.id}: ${e.message}`);
    button.disabled = false;
  }
  setTimeout(loadEmails, 500);
}

async function loadEmails() {
  const emails = (await api('GET', '/admin/emails?limit=50')).body.data;
  const rows = emails.map((m) => {
    let action = '';
    if (m.status === 'failed') {
      action = el('button', { type: 'button', class: 'retry', 'data-email': m.id }, 'Retry');
      action.addEventListener('click', () => retryEmail(m, action));
    }
    return el('tr', { 'data-email-id': m.id },
      el('td', {}, time(m.created_at)),
      el('td', {}, m.kind),
      el('td', {}, m.to),
      el('td', {}, m.subject),
      el('td', { class: `status status-${m.status}` }, m.status),
      el('td', {}, m.attempts),
      el('td', { class: 'error' }, m.last_error || ''),
      el('td', {}, time(m.sent_at)),
      el('td', {}, action));
  });
  document.querySelector('#emails tbody').replaceChildren(...rows);
}

// ---- polling ------------------------------------------------------------------------------

function every(ms, load) {
  let running = false;
  const tick = async () => {
    if (running || !tokens) return;
    running = true;
    try {
      await load();
      showError('');
    } catch (e) {
      if (tokens) showError(e.message);
    } finally {
      running = false;
    }
  };
  tick();
  timers.push(setInterval(tick, ms));
}

function start() {
  stop();
  show(true);
  lastEventPosition = null;
  every(PROJECTORS_EVERY_MS, loadProjectors);
  every(EVENTS_EVERY_MS, loadEvents);
  every(WEBHOOKS_EVERY_MS, loadWebhooks);
  every(EMAILS_EVERY_MS, loadEmails);
  // Defined in charts.js.
  every(ACTIVITY_EVERY_MS, loadActivity);
  every(FAILURES_EVERY_MS, loadFailures);
}

function stop() {
  for (const timer of timers) clearInterval(timer);
  timers = [];
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('sign-in-form').addEventListener('submit', signIn);
  document.getElementById('sign-out').addEventListener('click', () => signOut());
  if (tokens) start();
  else show(false);
});
