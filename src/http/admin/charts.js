// The operator page's activity charts and failures list: plain SVG built with DOM calls (the
// page's policy allows no inline code or style, and a chart library would be most of the page).
// Loaded before app.js, whose `api`, `el` and `time` these functions call once the page runs.
'use strict';

const ACTIVITY_EVERY_MS = 5000;
const FAILURES_EVERY_MS = 5000;
const SVG = 'http://www.w3.org/2000/svg';
const CHART_WIDTH = 300;
const CHART_HEIGHT = 80;
// Room on the left for the scale's label.
const CHART_LEFT = 34;

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

// A number short enough for a chart's label: 1234 -> 1.2k, 0.25 -> 0.25.
function brief(value) {
  if (value >= 1000) return `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)}k`;
  if (value >= 10) return String(Math.round(value));
  return String(Number(value.toFixed(2)));
}

// A line chart of one or more series of evenly spaced samples; a null value is a gap (the relay
// is led elsewhere). The scale starts at zero and ends at the largest value shown.
function lineChart(series, caption) {
  const values = series.flatMap((s) => s.values).filter((v) => v !== null);
  const top = Math.max(1, ...values);
  const plotWidth = CHART_WIDTH - CHART_LEFT;
  const chart = svg('svg', {
    class: 'chart', viewBox: `0 0 ${CHART_WIDTH} ${CHART_HEIGHT}`, role: 'img', 'aria-label': caption,
  });
  chart.append(
    svg('title', {}, caption),
    svg('line', { class: 'axis', x1: CHART_LEFT, y1: CHART_HEIGHT - 1, x2: CHART_WIDTH, y2: CHART_HEIGHT - 1 }),
    svg('text', { class: 'scale', x: 0, y: 10 }, brief(top)),
    svg('text', { class: 'scale', x: 0, y: CHART_HEIGHT - 2 }, '0'));
  series.forEach((s, index) => {
    const count = s.values.length;
    const x = (i) => CHART_LEFT + (count > 1 ? (i * plotWidth) / (count - 1) : plotWidth);
    const y = (v) => CHART_HEIGHT - 2 - ((CHART_HEIGHT - 12) * v) / top;
    // One polyline per run of known values, so a gap shows as a gap rather than a slope; a
    // lone value is a short dash, since a one-point line draws nothing.
    let run = [];
    const flush = () => {
      if (run.length === 1) run.unshift([Math.max(CHART_LEFT, run[0][0] - 4), run[0][1]]);
      if (run.length) {
        chart.append(svg('polyline', {
          class: `series series-${index % 6}`, 'data-series': s.name,
          points: run.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(' '),
        }));
      }
      run = [];
    };
    s.values.forEach((v, i) => {
      if (v === null) flush();
      else run.push([x(i), y(v)]);
    });
    flush();
  });
  return chart;
}

function latest(values) {
  const value = values.length ? values[values.length - 1] : null;
  return value === null ? '—' : brief(value);
}

// One chart with its caption; a chart of several series has a legend with each one's latest value.
function figure(id, caption, series) {
  return el('figure', { id, class: 'chart-box' },
    el('figcaption', {}, caption, ' ',
      el('span', { class: 'muted now' }, series.length === 1 ? latest(series[0].values) : '')),
    lineChart(series, caption),
    series.length > 1
      ? el('ul', { class: 'legend' }, series.map((s, index) => el('li', {},
        el('span', { class: `swatch series-${index % 6}` }), s.name,
        el('span', { class: 'muted' }, ` ${latest(s.values)}`))))
      : null);
}

function renderActivity(view) {
  const container = document.getElementById('charts');
  const samples = view.samples;
  document.getElementById('activity-interval').textContent = `every ${view.interval_seconds} s`;
  if (!samples.length) {
    container.replaceChildren(el('p', { class: 'muted' }, 'No samples yet.'));
    return;
  }
  const column = (pick) => samples.map(pick);
  const names = Object.keys(samples[samples.length - 1].projection_lag);
  const lags = names.map((name) => ({ name, values: column((s) => s.projection_lag[name] ?? null) }));
  lags.push({ name: 'relay', values: column((s) => s.relay_lag) });
  container.replaceChildren(
    figure('chart-events', 'events/s', [{ name: 'events/s', values: column((s) => s.events_per_second) }]),
    figure('chart-requests', 'requests/s', [{ name: 'requests/s', values: column((s) => s.requests_per_second) }]),
    figure('chart-errors', '5xx/s', [{ name: '5xx/s', values: column((s) => s.errors_per_second) }]),
    figure('chart-lag', 'lag (events)', lags));
}

async function loadActivity() {
  renderActivity((await api('GET', '/admin/activity')).body.data);
}

// A value the operator pastes into the tracing backend or the logs: selectable in one click,
// and a button that copies it where the clipboard is allowed.
function copyable(value) {
  if (!value) return el('span', { class: 'muted' }, '—');
  const button = el('button', { type: 'button', class: 'copy', title: 'Copy' }, 'copy');
  button.addEventListener('click', () => {
    navigator.clipboard.writeText(value).then(() => { button.textContent = 'copied'; }, () => {});
  });
  return el('span', {}, el('code', { class: 'copyable' }, value), ' ', button);
}

function renderFailures(failures) {
  const rows = failures.map((f) => el('tr', { 'data-kind': f.kind, 'data-id': f.id },
    el('td', {}, time(f.at)),
    el('td', {}, f.kind),
    el('td', { class: `status status-${f.status === 'retrying' ? 'pending' : 'failed'}` }, f.status),
    el('td', {}, f.summary),
    el('td', { class: 'error' }, f.error || ''),
    el('td', {}, f.attempts ?? ''),
    el('td', { class: 'request-id' }, copyable(f.request_id)),
    el('td', { class: 'trace-id' }, copyable(f.trace_id))));
  document.querySelector('#failures tbody').replaceChildren(...rows);
  document.getElementById('failures-none').hidden = failures.length > 0;
}

async function loadFailures() {
  renderFailures((await api('GET', '/admin/failures')).body.data);
}
