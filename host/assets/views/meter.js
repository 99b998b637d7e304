/* Meter view: one meter's details and its history. */
import { ApiError, api, watch } from '../api.js';
import { clock } from '../clock.js';
import { $, el, setText } from '../dom.js';
import { KIND_WORDS, fmtAge, fmtDateTime, fmtEnergy, fmtInt, fmtPower } from '../format.js';
import { createHistory } from '../history.js';
import { meterStatus, state, withTimes } from '../live.js';
import { todayText } from './meters.js';

const view = { id: null, history: null, missing: false };

/** The meter's own answer (for `rejected_last_hour`); a 404 is shown as "no such meter". */
async function loadMeter(id) {
  try {
    const m = await api('/meters/' + encodeURIComponent(id));
    const old = state.meters.get(id);
    if (old) old.rejected_last_hour = m.rejected_last_hour;
    else { state.meters.set(id, withTimes(m)); state.version++; }
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
    if (view.id === id) { view.missing = true; renderMeter(); }
  }
}

export function openMeter(id) {
  if (view.id !== id) {
    if (view.history) view.history.destroy();
    Object.assign(view, { id, history: null, missing: false });
    setText($('#h-meter'), 'Meter ' + id);
    $('#meter-events').href = '#/events?entity=' + encodeURIComponent(id);
    $('#meter-facts').textContent = '';
    view.history = createHistory($('#meter-history'), { source: id, fixedSource: true });
    watch('meter', () => loadMeter(id));
  } else if (view.history) {
    view.history.refresh();
  }
  renderMeter();
}

/** Called on every render tick while the meter is shown. */
export function tickMeter() {
  if (view.history) view.history.refresh();
}

function facts(m, now) {
  const st = meterStatus(m, now);
  const l = m.latest;
  return [
    ['Kind', KIND_WORDS[m.kind] || m.kind],
    ['Power now', l ? fmtPower(l.power_w) : '—'],
    ['Status', st.words.join(', ')],
    ['Last reading', l ? fmtDateTime(l.time_ms) : 'never'],
    ['Age', l ? fmtAge(now - l.time_ms) : '—'],
    ['Voltage', l && l.voltage_v != null ? l.voltage_v.toFixed(1) + ' V' : '—'],
    ['Current', l && l.current_a != null ? l.current_a.toFixed(2) + ' A' : '—'],
    ['Import register', l ? fmtEnergy(l.import_wh) : '—'],
    ['Export register', l ? fmtEnergy(l.export_wh) : '—'],
    ['Import today', todayText(m, 'import_wh')],
    ['Export today', todayText(m, 'export_wh')],
    ['Readings', fmtInt(m.readings)],
    ['Rejected (last hour)', fmtInt(m.rejected_last_hour)],
    ['Seq', fmtInt(m.seq)],
  ];
}

export function renderMeter() {
  const id = view.id;
  const m = state.meters.get(id);
  const box = $('#meter-facts');
  if (!m) {
    setText(box, view.missing ? 'There is no meter ' + id + '.' : 'Loading…');
    return;
  }
  const now = clock.now();
  const rows = facts(m, now);
  if (box.children.length !== rows.length) {
    box.textContent = '';
    for (const [k] of rows) box.append(el('div', null, el('dt', { text: k }), el('dd')));
  }
  rows.forEach(([, v], i) => setText(box.children[i].lastChild, v));
  box.dataset.status = meterStatus(m, now).key;
}
