/* The history component: range controls, a power and an energy chart of the site or one
 * meter from the rollups, and the data as a table. Used by the History and Meter views. */
import { api } from './api.js';
import { chartFigure, drawChart } from './charts.js';
import { clock } from './clock.js';
import { el, setText } from './dom.js';
import { DAY, dayStart, fmtDate, fmtInt, fmtInterval, fmtUnit, naturalCompare } from './format.js';
import { limits } from './limits.js';
import { state } from './live.js';
import { SITE_KINDS, STEP_MS, STEP_WORDS, indexBuckets, meterModel, period, shiftAnchor, siteModel } from './series.js';

/** A chart of a period still filling is reloaded this often while shown. */
const HISTORY_REFRESH_MS = 20000;
/** Without the gateway's time yet, the first load is tried again after this. */
const CLOCK_WAIT_MS = 300;
/** Charts are redrawn this long after the last resize. */
const RESIZE_SETTLE_MS = 120;

let chartSeq = 0;

function rangeControls(h) {
  const uid = h.uid;
  const c = {};
  c.rangeButtons = ['day', 'week', 'month', 'custom'].map((r) => el('button', {
    type: 'button', 'data-range': r, 'aria-pressed': String(r === h.range),
    text: r[0].toUpperCase() + r.slice(1), onclick: () => h.setRange(r),
  }));
  c.prev = el('button', { type: 'button', class: 'prev', onclick: () => h.move(-1) }, '‹');
  c.next = el('button', { type: 'button', class: 'next', onclick: () => h.move(1) }, '›');
  c.current = el('button', { type: 'button', class: 'current', onclick: () => { h.anchor = null; h.changed(); } }, 'Now');
  c.label = el('span', { class: 'period-label', 'aria-live': 'polite' });
  c.periodBox = el('div', { class: 'period' }, c.prev, c.label, c.next, c.current);
  c.fromInput = el('input', { type: 'date', id: 'hist-from-' + uid, required: true });
  c.toInput = el('input', { type: 'date', id: 'hist-to-' + uid, required: true });
  c.stepSelect = el('select', { id: 'hist-step-' + uid },
    el('option', { value: 'auto', text: 'Auto' }), el('option', { value: '15m', text: '15 min' }),
    el('option', { value: '1h', text: '1 hour' }), el('option', { value: '1d', text: '1 day' }));
  c.customForm = el('form', { class: 'custom', hidden: true, onsubmit: (ev) => { ev.preventDefault(); h.applyCustom(); } },
    el('label', { for: c.fromInput.id }, 'From (UTC day)', c.fromInput),
    el('label', { for: c.toInput.id }, 'To (UTC day, inclusive)', c.toInput),
    el('label', { for: c.stepSelect.id }, 'Interval', c.stepSelect),
    el('button', { type: 'submit' }, 'Show'));
  return c;
}

/** Shows `h`'s range, source and custom period in its controls. */
function syncControls(h) {
  const c = h.c;
  for (const b of c.rangeButtons) b.setAttribute('aria-pressed', String(b.dataset.range === h.range));
  c.customForm.hidden = h.range !== 'custom';
  c.periodBox.hidden = h.range === 'custom';
  if (c.sourceSelect) c.sourceSelect.value = h.source;
  if (h.range === 'custom' && h.custom) {
    c.fromInput.value = fmtDate(h.custom.from);
    c.toInput.value = fmtDate(h.custom.to - DAY);
    c.stepSelect.value = h.custom.step || 'auto';
  }
}

function buildDom(h, mount, fixedSource) {
  const c = rangeControls(h);
  const controls = el('div', { class: 'hist-controls' });
  if (!fixedSource) {
    c.sourceSelect = el('select', { id: 'hist-source-' + h.uid, onchange: () => { h.source = c.sourceSelect.value; h.changed(); } });
    controls.append(el('label', { for: c.sourceSelect.id }, 'Source', c.sourceSelect));
  }
  controls.append(el('div', { class: 'seg', role: 'group', 'aria-label': 'Range' }, c.rangeButtons), c.periodBox, c.customForm);
  c.status = el('p', { class: 'hist-status', role: 'status' });
  c.powerFig = chartFigure('power', h.uid);
  c.energyFig = chartFigure('energy', h.uid);
  c.tableBox = el('div', { class: 'table-scroll' });
  c.details = el('details', { class: 'data', ontoggle: () => { if (c.details.open) renderTable(h); } },
    el('summary', null, 'Data as a table'), c.tableBox);
  mount.textContent = '';
  mount.append(controls, c.status, c.powerFig.figure, c.energyFig.figure, c.details);
  return c;
}

/** The meters a source needs: the site's grid, PV, battery and EV meters, or one meter. */
function sourceMeters(source) {
  if (source !== 'site') return [source];
  return [...state.meters.values()].filter((m) => SITE_KINDS.includes(m.kind) && !m.decommissioned).map((m) => m.id);
}

/** The chart model of `source` over period `p` from the rollups of `ids`. */
function buildModel(source, ids, results, p, now) {
  const stepMs = STEP_MS[p.step];
  const idx = [];
  for (let i = Math.round(p.from / stepMs); i < Math.round(p.to / stepMs); i++) idx.push(i);
  let model;
  if (source === 'site') {
    const parts = {};
    results.forEach((r, k) => {
      const kind = state.meters.get(ids[k]).kind;
      (parts[kind] = parts[kind] || []).push(indexBuckets(r.buckets, stepMs));
    });
    model = siteModel(parts, idx);
  } else {
    model = meterModel(indexBuckets(results[0].buckets, stepMs), idx);
  }
  return Object.assign(model, { idx, stepMs, step: p.step, from: p.from, to: p.to, now });
}

function markLoading(h, p, now) {
  const c = h.c;
  setText(c.label, p.label);
  c.next.disabled = h.range === 'custom' || p.to > now;
  c.current.disabled = p.from <= now && now < p.to;
  c.prev.setAttribute('aria-label', 'Previous ' + h.range);
  c.next.setAttribute('aria-label', 'Next ' + h.range);
  for (const f of [c.powerFig, c.energyFig]) {
    f.figure.dataset.state = 'loading';
    f.figure.setAttribute('aria-busy', 'true');
  }
  setText(c.status, 'Loading…');
}

function showFailure(h, e) {
  for (const f of [h.c.powerFig, h.c.energyFig]) { f.figure.dataset.state = 'error'; f.figure.removeAttribute('aria-busy'); }
  setText(h.c.status, e.status === 404 ? 'There is no meter ' + h.source + '.' : 'Could not load the history: ' + e.message + (e.path ? ' (GET /api/v1' + e.path + ')' : ''));
}

/** The status line: how many intervals have data, the gaps, and the fine-rollup horizon. */
function statusWords(model, p, points, gaps) {
  const keptDays = limits.rollup_quarter_hour_days;
  const retention = keptDays != null && p.step !== '1d' && p.from < model.now - keptDays * DAY
    ? ' 15-minute and hourly rollups are kept for ' + keptDays + ' days on this gateway; use Month for older data.' : '';
  if (points === 0) return 'No data in this range.' + retention;
  const due = model.idx.filter((i) => i * model.stepMs < model.now).length;
  return points + ' of ' + due + ' intervals have data' + (gaps ? '; ' + gaps + ' gap' + (gaps > 1 ? 's' : '') + ' (hatched).' : '.') + retention;
}

function showModel(h, model, p) {
  const c = h.c;
  const points = model.power.lines[0].values.reduce((n, v) => n + (Number.isFinite(v) ? 1 : 0), 0);
  const title = h.source === 'site' ? 'the site' : 'meter ' + h.source;
  for (const [f, part, what] of [[c.powerFig, model.power, 'Power'], [c.energyFig, model.energy, 'Energy']]) {
    setText(f.caption, what + ' of ' + title + ', per ' + STEP_WORDS[p.step] + (what === 'Power' ? ' (mean' + (part.band ? ', with min–max' : '') + ')' : ''));
    drawChart(f, part, model, { title: what + ' of ' + title + ', ' + p.label });
    Object.assign(f.figure.dataset, {
      source: h.source, range: h.range, step: p.step,
      from: new Date(p.from).toISOString(), to: new Date(p.to).toISOString(),
      points: String(points), requests: String(h.requests),
    });
    f.figure.removeAttribute('aria-busy');
  }
  setText(c.status, statusWords(model, p, points, Number(c.powerFig.figure.dataset.gaps || 0)));
  if (c.details.open) renderTable(h);
}

async function load(h) {
  const now = clock.now();
  if (now == null) { setTimeout(() => load(h), CLOCK_WAIT_MS); return; }
  fillSources(h);
  h.loadedAt = performance.now(); // also while loading: refresh() waits for this attempt
  const seq = ++h.loadSeq;
  if (h.abort) h.abort.abort();
  const abort = new AbortController();
  h.abort = abort;
  const p = period(h.range, h.range === 'custom' ? null : h.anchor == null ? now : h.anchor, h.custom);
  const stepMs = STEP_MS[p.step];
  markLoading(h, p, now);
  // One interval more before `from`, to know whether the first one follows a gap.
  const q = '?step=' + p.step + '&from=' + new Date(p.from - stepMs).toISOString() + '&to=' + new Date(p.to).toISOString();
  const ids = sourceMeters(h.source);
  let results;
  try {
    results = await Promise.all(ids.map((id) => {
      h.requests++;
      return api('/meters/' + encodeURIComponent(id) + '/rollups' + q, { signal: abort.signal });
    }));
  } catch (e) {
    if (e.name !== 'AbortError' && seq === h.loadSeq) showFailure(h, e);
    return;
  }
  if (seq !== h.loadSeq) return;
  try {
    h.model = buildModel(h.source, ids, results, p, now);
    h.loadedAt = performance.now();
    h.current = p.from <= now && now < p.to;
    showModel(h, h.model, p);
  } catch (e) {
    showFailure(h, e);
  }
}

function renderTable(h) {
  const m = h.model;
  if (!m) return;
  const head = el('tr', null, el('th', { scope: 'col', text: 'Interval (UTC)' }), m.table.map(([name, , unit]) => el('th', { scope: 'col', class: 'num', text: name + (unit ? ' (' + unit + ')' : '') })));
  const cell = (v, k, unit) => (Number.isFinite(v[k]) ? (unit ? fmtUnit(v[k], unit) : fmtInt(v[k])) : 'no data');
  const body = [];
  for (let k = m.idx.length - 1; k >= 0; k--) {
    const start = m.idx[k] * m.stepMs;
    if (start > m.now) continue;
    body.push(el('tr', null, el('th', { scope: 'row', text: fmtInterval(start, m.stepMs) }),
      m.table.map(([, v, unit]) => el('td', { class: 'num', text: cell(v, k, unit) }))));
  }
  h.c.tableBox.textContent = '';
  h.c.tableBox.append(el('table', null, el('caption', { class: 'sr-only', text: 'History as a table, newest first' }), el('thead', null, head), el('tbody', null, body)));
}

/** Lists the meters in the source menu (when the set changed). */
function fillSources(h) {
  const select = h.c.sourceSelect;
  if (!select) return;
  const ids = [...state.meters.keys()].sort(naturalCompare);
  const key = ids.join();
  if (select.dataset.key === key) return;
  select.dataset.key = key;
  select.textContent = '';
  select.append(el('option', { value: 'site', text: 'Site (all flows)' }), ids.map((id) => el('option', { value: id, text: 'Meter ' + id })));
  select.value = h.source;
}

/** The component state with its actions (the controls call these). */
function historyState(opts) {
  const h = {
    uid: ++chartSeq, source: opts.source || 'site', range: 'day',
    anchor: null, // null: the period containing gateway now
    custom: null, abort: null, requests: 0, loadedAt: 0, model: null, current: false, loadSeq: 0, c: null,
    changed() {
      if (opts.onChange) opts.onChange({ source: h.source, range: h.range, anchor: h.anchor, custom: h.custom });
      load(h);
    },
    setRange(r) {
      h.range = r;
      if (r === 'custom') {
        const now = clock.now() || Date.now();
        if (!h.custom) h.custom = { from: dayStart(now) - 2 * DAY, to: dayStart(now) + DAY, step: 'auto' };
      } else {
        h.anchor = null;
      }
      syncControls(h);
      h.changed();
    },
    applyCustom() {
      const from = Date.parse(h.c.fromInput.value + 'T00:00:00Z');
      const to = Date.parse(h.c.toInput.value + 'T00:00:00Z') + DAY;
      if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from) {
        setText(h.c.status, 'Choose a start day on or before the end day.');
        return;
      }
      h.custom = { from, to, step: h.c.stepSelect.value };
      h.changed();
    },
    move(dir) {
      const now = clock.now();
      h.anchor = shiftAnchor(h.range, h.anchor == null ? now : h.anchor, dir);
      if (period(h.range, h.anchor).from > now) h.anchor = null;
      h.changed();
    },
  };
  return h;
}

/** A history in `mount`. `opts`: `source` (default the site), `fixedSource` (no source
 * menu), `initial` ({source, range, anchor, custom}), `onChange` (called with the choice). */
export function createHistory(mount, opts) {
  const h = historyState(opts);
  h.c = buildDom(h, mount, opts.fixedSource);
  let resizeTimer = null;
  const redraw = () => { if (h.model) for (const [f, part] of [[h.c.powerFig, h.model.power], [h.c.energyFig, h.model.energy]]) drawChart(f, part, h.model, {}); };
  const ro = new ResizeObserver(() => { clearTimeout(resizeTimer); resizeTimer = setTimeout(redraw, RESIZE_SETTLE_MS); });
  ro.observe(mount);
  if (opts.initial) {
    const i = opts.initial;
    if (i.source) h.source = i.source;
    if (i.custom) h.custom = i.custom;
    if (i.range) h.range = i.range;
    if (i.anchor != null) h.anchor = i.anchor;
    syncControls(h);
  }
  load(h);
  return {
    /** Called while the chart is shown: reloads a period that is still filling; a past
     * period only changes through its controls. */
    refresh() {
      if (h.current && h.loadedAt && performance.now() - h.loadedAt > HISTORY_REFRESH_MS) load(h);
    },
    set(v) {
      let changed = false;
      for (const k of ['source', 'range', 'anchor']) if (v[k] !== undefined && v[k] !== h[k]) { h[k] = v[k]; changed = true; }
      if (!changed) return this.refresh();
      syncControls(h);
      load(h);
    },
    fillSources: () => fillSources(h),
    destroy() { ro.disconnect(); if (h.abort) h.abort.abort(); mount.textContent = ''; },
  };
}
