/* Event explorer: all events, an entity's or a tag's, newest first, paged, with offsets. */
import { api } from '../api.js';
import { $, el, setText } from '../dom.js';
import { fmtDateTime, fmtInt, naturalCompare, parseTime } from '../format.js';
import { limits } from '../limits.js';
import { state } from '../live.js';

/** A tag search gives up after scanning this many offsets back ("Older" goes on). */
const SCAN_OFFSETS_MAX = 2000000;
/** The first window a tag search reads: this many pages' worth of offsets, at least
 * `TAG_WINDOW_MIN`; it widens eightfold while it holds less than a page. */
const TAG_WINDOW_PAGES = 8;
const TAG_WINDOW_MIN = 2000;
const TAG_SUGGESTIONS = ['meter', 'asset', 'setpoint', 'alarm', 'registration', 'system', 'archive', 'shipping', 'kind:grid', 'kind:pv', 'kind:battery', 'kind:ev', 'kind:submeter', 'kind:pv_inverter', 'kind:ev_charger'];

const explorer = { by: 'all', q: '', limit: 50, pages: [], page: null, seq: 0 };

/** Events of an entity ending at seq `top` (newest first). */
async function entityPage(id, top, limit) {
  const path = '/entities/' + encodeURIComponent(id) + '/events';
  if (top == null) top = (await api(path + '?limit=0')).highest_seq;
  if (top < 1) return { events: [], next: null, info: 'No events for ' + id + '.' };
  const from = Math.max(1, top - limit + 1);
  const r = await api(path + '?from_seq=' + from + '&to_seq=' + top + '&limit=' + limit);
  return {
    events: r.events.slice().reverse(),
    next: from > 1 ? from - 1 : null,
    info: 'Events of ' + id + ', seq ' + from + '–' + top + ' of ' + r.highest_seq + '.',
  };
}

/** Events (with `tag`, or all) in offsets (after, top], oldest first. */
async function readWindow(tag, after, top) {
  const found = [];
  const pageMax = limits.events_limit_max;
  let cursor = after;
  while (cursor < top) {
    const n = pageMax ? Math.min(pageMax, top - cursor) : top - cursor;
    const r = await api('/events?after=' + cursor + '&limit=' + n + (tag ? '&tag=' + encodeURIComponent(tag) : ''));
    for (const e of r.events) if (e.offset <= top) found.push(e);
    const reached = r.events.length < n || r.events[r.events.length - 1].offset >= top;
    if (r.last_offset <= cursor || reached) break;
    cursor = r.last_offset;
  }
  return found;
}

/** Events with a tag (or all) at or before offset `top`, newest first.
 *
 * The API pages forward only (`after`, `limit`), and with a tag it scans on to the end of
 * the log until it has `limit` matches. So this reads a window (top − w, top] forward and
 * widens it eightfold while it holds fewer than a page: a window of w offsets holds at
 * most w events, so `limit = w` gets all of them in one request, and a sparse tag costs
 * a few requests over a geometrically growing window rather than one per window. */
async function offsetPage(tag, top, limit, progress) {
  if (top == null) top = (await api('/status')).last_offset;
  let w = tag ? Math.max(limit * TAG_WINDOW_PAGES, TAG_WINDOW_MIN) : limit;
  let scanned = 0, found = [], after = top;
  while (top >= 1) {
    after = Math.max(0, top - w);
    if (w > limit * TAG_WINDOW_PAGES) progress('Searching offsets ' + fmtInt(after + 1) + '–' + fmtInt(top) + ' for ' + (tag ? 'events tagged ' + tag : 'events') + '…');
    found = await readWindow(tag, after, top);
    scanned += top - after;
    if (found.length >= limit || after === 0 || scanned >= SCAN_OFFSETS_MAX) break;
    w *= TAG_WINDOW_PAGES;
  }
  const events = found.slice(-limit).reverse();
  const complete = events.length === limit;
  const oldest = complete ? events[events.length - 1].offset : after + 1;
  const next = oldest > 1 ? oldest - 1 : null;
  const what = tag ? 'Events tagged ' + tag : 'All events';
  let info = events.length
    ? what + ', offsets ' + fmtInt(events[events.length - 1].offset) + '–' + fmtInt(events[0].offset) + ', newest first.'
    : what + ': none in offsets ' + fmtInt(after + 1) + '–' + fmtInt(top) + '.';
  if (!complete && next != null) info += ' Searched back to offset ' + fmtInt(after + 1) + '; "Older" searches further.';
  return { events, next, info };
}

function renderRows(events) {
  const tbody = $('#events-table tbody');
  tbody.textContent = '';
  for (const e of events) {
    tbody.append(el('tr', { 'data-offset': e.offset },
      el('td', { class: 'num', text: fmtInt(e.offset) }),
      el('td', { text: fmtDateTime(parseTime(e.time)) }),
      el('td', null, el('a', { href: '#/events?entity=' + encodeURIComponent(e.entity), text: e.entity })),
      el('td', { class: 'num', text: fmtInt(e.seq) }),
      el('td', { text: e.type.replace(/_/g, ' ') }),
      el('td', { text: e.tags.join(' ') }),
      el('td', { class: 'data', text: JSON.stringify(e.data) })));
  }
}

async function showEvents(top) {
  const seq = ++explorer.seq;
  const info = $('#events-info');
  const table = $('#events-table');
  const q = explorer.q;
  if (explorer.by !== 'all' && !q) {
    setText(info, explorer.by === 'entity' ? 'Enter a meter or asset id.' : 'Enter a tag, e.g. meter, asset, setpoint, alarm, kind:pv.');
    renderRows([]);
    return;
  }
  setText(info, 'Loading…');
  table.setAttribute('aria-busy', 'true');
  try {
    const page = explorer.by === 'entity'
      ? await entityPage(q, top, explorer.limit)
      : await offsetPage(explorer.by === 'tag' ? q : null, top, explorer.limit, (words) => { if (seq === explorer.seq) setText(info, words); });
    if (seq !== explorer.seq) return;
    explorer.page = Object.assign({ top }, page);
    renderRows(page.events);
    table.dataset.query = explorer.by + ':' + q + '@' + (top == null ? 'newest' : top);
    setText(info, page.info);
  } catch (e) {
    if (seq !== explorer.seq) return;
    setText(info, 'Could not load events: ' + e.message + (e.path ? ' (' + (e.method || 'GET') + ' /api/v1' + e.path + ')' : ''));
    renderRows([]);
  } finally {
    table.removeAttribute('aria-busy');
  }
  $('#events-newer').disabled = explorer.pages.length === 0;
  $('#events-older').disabled = !(explorer.page && explorer.page.next != null);
}

function syncForm() {
  $('#events-by').value = explorer.by;
  $('#events-q').value = explorer.q;
  $('#events-q').disabled = explorer.by === 'all';
  $('#events-q-label').firstChild.textContent = explorer.by === 'tag' ? 'Tag ' : 'Entity ';
  $('#events-limit').value = String(explorer.limit);
}

export function openEvents(params) {
  const by = params.get('entity') != null ? 'entity' : params.get('tag') != null ? 'tag' : params.get('all') != null ? 'all' : null;
  const suggest = $('#events-suggest');
  suggest.textContent = '';
  const words = (by || explorer.by) === 'tag' ? TAG_SUGGESTIONS : [...state.meters.keys(), ...state.assets.keys()].sort(naturalCompare);
  suggest.append(...words.map((w) => el('option', { value: w })));
  if (by) {
    const q = by === 'all' ? '' : params.get(by);
    if (by !== explorer.by || q !== explorer.q || !explorer.page) {
      Object.assign(explorer, { by, q, pages: [] });
      syncForm();
      showEvents(null);
    }
  } else if (!explorer.page) {
    syncForm();
    showEvents(null);
  }
}

export function initEvents() {
  $('#events-by').addEventListener('change', () => {
    explorer.by = $('#events-by').value;
    $('#events-q').disabled = explorer.by === 'all';
    $('#events-q-label').firstChild.textContent = explorer.by === 'tag' ? 'Tag ' : 'Entity ';
    openEvents(new URLSearchParams());
  });
  $('#events-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    explorer.by = $('#events-by').value;
    explorer.q = $('#events-q').value.trim();
    explorer.limit = Number($('#events-limit').value) || 50;
    explorer.pages = [];
    const q = explorer.by === 'all' ? 'all' : explorer.by + '=' + encodeURIComponent(explorer.q);
    history.replaceState(null, '', '#/events?' + q);
    showEvents(null);
  });
  $('#events-older').addEventListener('click', () => {
    if (!explorer.page || explorer.page.next == null) return;
    explorer.pages.push(explorer.page.top);
    showEvents(explorer.page.next);
  });
  $('#events-newer').addEventListener('click', () => {
    if (!explorer.pages.length) return;
    showEvents(explorer.pages.pop());
  });
}
