/* Assets view: each asset's state and a form to request a setpoint; the write token. */
import { api, token } from '../api.js';
import { clock } from '../clock.js';
import { $, el, setText } from '../dom.js';
import { fmtAge, fmtEnergy, fmtPower, fmtTime } from '../format.js';
import { isStale, state } from '../live.js';

const ASSET_WORDS = { battery: 'Battery', pv_inverter: 'PV inverter', ev_charger: 'EV charger', load: 'Controllable load' };
const cards = { version: -1, byId: new Map() };

function buildCard(a) {
  const sid = 'sp-' + a.id.replace(/[^A-Za-z0-9_-]/g, '_');
  const dl = el('dl');
  const input = el('input', { id: sid, name: 'power_w', type: 'number', step: 'any', inputmode: 'decimal', required: true, 'aria-describedby': sid + '-hint ' + sid + '-msg' });
  const msg = el('p', { class: 'msg', id: sid + '-msg', 'aria-live': 'assertive' });
  const button = el('button', { type: 'submit' }, 'Request setpoint');
  const hint = el('p', { class: 'hint', id: sid + '-hint' });
  const form = el('form', { class: 'setpoint', 'data-asset': a.id, novalidate: true },
    el('label', { for: sid }, 'New setpoint (W)'), el('div', { class: 'row' }, input, button), hint, msg);
  form.addEventListener('submit', (ev) => { ev.preventDefault(); requestSetpoint(a.id, input, button, msg); });
  const card = el('article', { class: 'card', 'data-asset': a.id, 'aria-labelledby': sid + '-h' },
    el('h2', { id: sid + '-h' }, a.id, ' ', el('span', { class: 'muted', text: '· ' + (ASSET_WORDS[a.kind] || a.kind) })), dl, form);
  return { card, dl, hint };
}

function buildCards() {
  const box = $('#assets');
  box.textContent = '';
  cards.byId.clear();
  for (const a of state.assets.values()) {
    const c = buildCard(a);
    box.append(c.card);
    cards.byId.set(a.id, c);
  }
  cards.version = state.version;
}

/** The engine's answer to a setpoint, or its refusal, under the form. */
async function requestSetpoint(id, input, button, msg) {
  const value = input.valueAsNumber;
  if (!Number.isFinite(value)) {
    msg.dataset.result = 'error';
    msg.textContent = 'Enter the setpoint as a number of watts.';
    input.focus();
    return;
  }
  button.disabled = true;
  msg.dataset.result = 'pending';
  msg.textContent = 'Sending…';
  try {
    // Without expected_seq: an asset's seq moves with every telemetry record, so a seq
    // read by a person would nearly always be out of date. The engine still validates
    // against the asset's current state (rated power, availability).
    const r = await api('/assets/' + encodeURIComponent(id) + '/setpoint', { method: 'POST', body: { power_w: value } });
    msg.dataset.result = 'accepted';
    msg.textContent = r.status === 'duplicate'
      ? 'Already requested: ' + fmtPower(value) + '.'
      : 'Accepted: ' + fmtPower(value) + ' requested (event offset ' + r.offset + ', seq ' + r.seq + ').';
    const a = state.assets.get(id);
    if (a) a.setpoint_requested_w = value;
  } catch (e) {
    msg.dataset.result = e.status === 0 ? 'error' : e.code === 'bad_json' ? 'unknown' : 'rejected';
    msg.dataset.code = e.code;
    if (e.status === 401 || e.status === 403) msg.textContent = 'Not allowed: ' + e.message + '. Enter the gateway\'s write token above.';
    else if (e.status === 0) msg.textContent = 'Not sent: ' + e.message + '.';
    else if (e.code === 'bad_json') msg.textContent = 'Sent, but the answer could not be read (' + e.message + '): check the asset\'s events before sending it again.';
    else msg.textContent = 'Rejected: ' + e.message + ' (' + e.code + ').';
  } finally {
    button.disabled = false;
  }
}

function assetRows(a, now) {
  const t = a.telemetry;
  const stale = isStale(t && t.time_ms, now);
  const rows = [
    ['State', t ? t.status + (stale ? ' (stale)' : '') : 'no telemetry'],
    ['Power', t ? fmtPower(t.power_w) : '—'],
  ];
  if (a.kind === 'battery') rows.push(['State of charge', t && t.soc_pct != null ? t.soc_pct.toFixed(1) + ' %' : '—']);
  rows.push(
    ['Setpoint requested', a.setpoint_requested_w == null ? 'none' : fmtPower(a.setpoint_requested_w)],
    ['Setpoint applied', a.setpoint_applied_w == null ? 'none' : fmtPower(a.setpoint_applied_w)],
    ['Available', a.available ? 'yes' : 'no'],
    ['Faults', a.faults.length ? a.faults.join(', ') : 'none'],
    ['Rated power', fmtPower(a.rated_power_w)],
  );
  if (a.capacity_wh != null) rows.push(['Capacity', fmtEnergy(a.capacity_wh)]);
  rows.push(['Telemetry', t ? fmtTime(t.time_ms) + ' (' + fmtAge(now - t.time_ms) + ' ago)' : '—']);
  return { rows, stale };
}

export function renderAssets() {
  if (cards.version !== state.version) buildCards();
  const now = clock.now();
  for (const a of state.assets.values()) {
    const c = cards.byId.get(a.id);
    if (!c) continue;
    const { rows, stale } = assetRows(a, now);
    if (c.dl.children.length !== rows.length * 2) {
      c.dl.textContent = '';
      for (const [k] of rows) c.dl.append(el('dt', { text: k }), el('dd'));
    }
    rows.forEach(([k, v], i) => { setText(c.dl.children[2 * i], k); setText(c.dl.children[2 * i + 1], v); });
    c.card.dataset.stale = String(stale);
    c.card.classList.toggle('has-fault', a.faults.length > 0);
    setText(c.hint, a.kind === 'battery'
      ? 'Rated ' + fmtPower(a.rated_power_w) + '. Positive charges, negative discharges.'
      : 'Rated ' + fmtPower(a.rated_power_w) + '.');
  }
  if (!state.assets.size) setText($('#assets'), 'No assets are registered.');
}

/** The write token form: saved in this browser, sent with every change. */
export function initToken() {
  const input = $('#token');
  const status = $('#token-status');
  const show = () => setText(status, token.get() ? 'A write token is saved in this browser and sent with every change.' : 'No write token saved: changes work only if the gateway has none.');
  show();
  $('#token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const ok = token.set(input.value.trim());
    input.value = '';
    if (!ok) setText(status, 'This browser does not allow saving the token.');
    else show();
  });
  $('#token-forget').addEventListener('click', () => { token.set(''); input.value = ''; show(); });
}
