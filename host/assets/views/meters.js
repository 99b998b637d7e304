/* Meters view: every meter with live power, today's energy, last reading and status;
 * filter and sort. Rows are built once per change of the meter set and updated in place. */
import { failures } from '../api.js';
import { clock } from '../clock.js';
import { $, $$, el, setText } from '../dom.js';
import { KIND_WORDS, fmtAge, fmtEnergy, fmtPower, fmtTime, naturalCompare } from '../format.js';
import { meterStatus, state } from '../live.js';

/** Sorted by a live value, the table is re-sorted at most this often (rows moving under the
 * pointer are hard to click). */
const RESORT_MS = 5000;
const LABELS = ['Meter', 'Kind', 'Power', 'Import today', 'Export today', 'Last reading', 'Status'];

const table = { version: -1, sort: 'id', desc: false, rows: new Map(), sortedAt: 0 };

/** Today's import or export (`key`: `import_wh`, `export_wh`) in words: `no data` without
 * readings today (not 0 Wh), `not loaded` while the request for it fails. */
export function todayText(m, key) {
  if (m.today) return m.today.has ? fmtEnergy(m.today[key]) : 'no data';
  return failures.has('today') ? 'not loaded' : '…';
}

function buildRows() {
  const tbody = $('#meters-table tbody');
  tbody.textContent = '';
  table.rows.clear();
  for (const m of state.meters.values()) {
    const link = el('a', { href: '#/meters/' + encodeURIComponent(m.id), text: m.id });
    const cells = LABELS.map((label, i) => el('td', { 'data-label': label, class: i >= 2 && i <= 4 ? 'num' : null }));
    cells[0].append(link);
    const tr = el('tr', { 'data-meter': m.id }, cells);
    tr.addEventListener('click', (ev) => {
      if (ev.target.closest('a')) return;
      location.hash = '#/meters/' + encodeURIComponent(m.id);
    });
    tbody.append(tr);
    table.rows.set(m.id, { tr, cells });
  }
  const kinds = [...new Set([...state.meters.values()].map((m) => m.kind))].sort();
  const select = $('#meter-kind');
  const chosen = select.value;
  select.textContent = '';
  select.append(el('option', { value: '', text: 'All kinds' }), kinds.map((k) => el('option', { value: k, text: KIND_WORDS[k] || k })));
  select.value = kinds.includes(chosen) ? chosen : '';
  table.version = state.version;
  sortMeters();
}

function sortValue(m, key, now) {
  switch (key) {
    case 'kind': return m.kind;
    case 'power': return m.latest ? m.latest.power_w : -Infinity;
    case 'import': return m.today && m.today.has ? m.today.import_wh : -Infinity;
    case 'export': return m.today && m.today.has ? m.today.export_wh : -Infinity;
    case 'time': return m.latest ? m.latest.time_ms : -Infinity;
    case 'status': return meterStatus(m, now).key === 'ok' ? 1 : 0;
    default: return m.id;
  }
}

function sortMeters() {
  const now = clock.now();
  const { sort, desc } = table;
  table.sortedAt = performance.now();
  const list = [...state.meters.values()].sort((a, b) => {
    const x = sortValue(a, sort, now), y = sortValue(b, sort, now);
    const c = typeof x === 'string' ? naturalCompare(x, y) : x - y;
    return (desc ? -c : c) || naturalCompare(a.id, b.id);
  });
  const tbody = $('#meters-table tbody');
  for (const m of list) {
    const row = table.rows.get(m.id);
    if (row) tbody.append(row.tr);
  }
  for (const th of $$('#meters-table th')) {
    const b = $('button', th);
    if (b.dataset.sort === sort) th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
    else th.removeAttribute('aria-sort');
  }
}

function statusBadges(cell, st) {
  const key = st.key + '|' + st.words.join();
  if (cell.dataset.key === key) return;
  cell.dataset.key = key;
  cell.textContent = '';
  cell.append(...st.words.map((w) => el('span', { class: 'badge ' + (w === 'ok' ? 'ok' : w === 'decommissioned' ? 'off' : /rejected/.test(w) ? 'bad' : ''), text: w })));
}

function matches(m, st, q, kind, want) {
  return (!q || m.id.toLowerCase().includes(q) || m.kind.includes(q) || (KIND_WORDS[m.kind] || '').toLowerCase().includes(q))
    && (!kind || m.kind === kind)
    && (!want || (want === 'ok' ? st.key === 'ok' : st.key !== 'ok'));
}

export function renderMeters() {
  if (table.version !== state.version) buildRows();
  const now = clock.now();
  const q = $('#meter-filter').value.trim().toLowerCase();
  const kind = $('#meter-kind').value;
  const want = $('#meter-status').value;
  let shown = 0;
  for (const m of state.meters.values()) {
    const row = table.rows.get(m.id);
    if (!row) continue;
    const st = meterStatus(m, now);
    const c = row.cells;
    setText(c[1], KIND_WORDS[m.kind] || m.kind);
    setText(c[2], m.latest ? fmtPower(m.latest.power_w) : '—');
    setText(c[3], todayText(m, 'import_wh'));
    setText(c[4], todayText(m, 'export_wh'));
    setText(c[5], m.latest ? fmtTime(m.latest.time_ms) + ' (' + fmtAge(now - m.latest.time_ms) + ' ago)' : 'never');
    statusBadges(c[6], st);
    row.tr.dataset.status = st.key;
    row.tr.dataset.power = m.latest ? String(m.latest.power_w) : '';
    row.tr.hidden = !matches(m, st, q, kind, want);
    if (!row.tr.hidden) shown++;
  }
  setText($('#meters-count'), 'Showing ' + shown + ' of ' + state.meters.size + ' meters.');
}

/** Called on every render tick: re-sorts by a live value now and then. */
export function tickMeters() {
  if (table.sort !== 'id' && table.sort !== 'kind' && performance.now() - table.sortedAt > RESORT_MS) sortMeters();
}

export function initMeters() {
  for (const sel of ['#meter-filter', '#meter-kind', '#meter-status']) $(sel).addEventListener('input', renderMeters);
  $('#meter-filters').addEventListener('submit', (ev) => ev.preventDefault());
  for (const b of $$('#meters-table th button')) {
    b.addEventListener('click', () => {
      if (table.sort === b.dataset.sort) table.desc = !table.desc;
      else { table.sort = b.dataset.sort; table.desc = ['power', 'import', 'export', 'time'].includes(b.dataset.sort); }
      sortMeters();
    });
  }
}
