/* System view: the log's health from /api/v1/status, with rates between two samples. */
import { api, describeFailure, failures, watch } from '../api.js';
import { clock } from '../clock.js';
import { $, el, setText, svg } from '../dom.js';
import { fmtAge, fmtBytes, fmtDateTime, fmtInt, fmtMicros, parseTime } from '../format.js';
import { mqttBadge, mqttCard } from './mqtt.js';

/** The queue is shown as a problem above this share of its capacity. */
const QUEUE_BUSY_SHARE = 0.8;
const status = { last: null, prev: null };

/** Reads the status (a failure goes to the banner and the health line). */
export function loadStatus() {
  return watch('status', async () => {
    const s = await api('/status');
    clock.sample(parseTime(s.now));
    status.prev = status.last;
    status.last = { s, at: performance.now() };
    if (s.site_id) setText($('#site-id'), s.site_id);
  });
}

function kv(rows) {
  return el('dl', null, rows.map(([k, v]) => [el('dt', { text: k }), el('dd', { text: v == null ? '—' : String(v) })]));
}

function fmtStatusValue(k, v) {
  if (v == null) return '—';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (Array.isArray(v)) return v.length ? v.map((x) => (x && typeof x === 'object' ? x.message || JSON.stringify(x) : String(x))).join('; ') : 'none';
  if (typeof v !== 'number') return String(v);
  if (/bytes$/.test(k)) return fmtBytes(v);
  if (/_s$/.test(k)) return fmtAge(v * 1000) + (/age/.test(k) ? ' ago' : '');
  if (/millis$|_ms$/.test(k)) return fmtInt(v) + ' ms';
  return fmtInt(v);
}

/** Key/value rows of a status object, formatted by the key's unit suffix. */
function flatten(obj, prefix = '') {
  const out = [];
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'enabled') continue;
    const key = prefix + k.replace(/_/g, ' ');
    if (v && typeof v === 'object' && !Array.isArray(v)) out.push(...flatten(v, key + ' · '));
    else out.push([key, fmtStatusValue(k, v)]);
  }
  return out;
}

/** Snapshots, archive, shipping: rendered from whatever fields the status has (null:
 * a gateway version without that part). */
function laterPart(title, value) {
  let body;
  if (value == null) body = el('p', { class: 'muted', text: 'Not yet available in this version of the gateway.' });
  else if (value.enabled === false) body = el('p', { class: 'muted', text: 'Not configured on this gateway.' });
  else body = kv(flatten(value));
  return el('article', { class: 'card', 'data-part': title.toLowerCase() }, el('h2', { text: title }), body);
}

/** A log2 histogram from /api/v1/status: bucket 0 counts zeros, bucket i ≥ 1 counts
 * values in [2^(i−1), 2^i). */
function histogram(buckets, unit, fmt) {
  const max = Math.max(1, ...buckets);
  let lastUsed = 0;
  buckets.forEach((b, i) => { if (b) lastUsed = i; });
  const shown = buckets.slice(0, Math.max(lastUsed + 2, 5));
  const w = 300, h = 110, bw = w / shown.length;
  const root = svg('svg', { class: 'hist-bars', viewBox: '-14 0 ' + (w + 28) + ' ' + h, width: '100%', role: 'img' });
  const lower = (i) => (i === 0 ? 0 : Math.pow(2, i - 1));
  const desc = [];
  const every = Math.ceil(shown.length / 6);
  shown.forEach((c, i) => {
    const bh = (c / max) * (h - 28);
    const r = svg('rect', { x: i * bw + 1, y: h - 16 - bh, width: Math.max(1, bw - 2), height: bh });
    const tt = svg('title');
    tt.textContent = (i === 0 ? '0' : fmt(lower(i)) + ' to < ' + fmt(Math.pow(2, i))) + ': ' + fmtInt(c);
    r.append(tt);
    root.append(r);
    if (c) desc.push(tt.textContent);
    if (i % every === 0) {
      const t = svg('text', { x: i * bw + bw / 2, y: h - 4, 'text-anchor': 'middle' });
      t.textContent = fmt(lower(i));
      root.append(t);
    }
  });
  root.setAttribute('aria-label', 'Histogram of ' + unit + ': ' + (desc.join('; ') || 'no data'));
  return root;
}

/** The recovery point: the newest offset central storage holds and how long the oldest
 * acknowledged event not yet there has waited; bad past the bound (max_lag_s). */
function recoveryBadge(shipping) {
  const rp = shipping && shipping.enabled ? shipping.recovery_point : null;
  if (!rp) return null;
  const held = rp.newest_offset == null ? 'nothing yet' : 'to offset ' + fmtInt(rp.newest_offset);
  const late = rp.max_lag_s > 0 && rp.lag_s > rp.max_lag_s;
  return el('span', {
    class: 'badge ' + (late ? 'bad' : 'ok'),
    'data-part': 'recovery-point',
    text: 'central storage holds ' + held + '; lag ' + fmtAge(rp.lag_s * 1000) + ' (bound ' + fmtAge(rp.max_lag_s * 1000) + ')',
  });
}

function shippingBadge(sh) {
  if (!(sh && sh.enabled && sh.backlog)) return null;
  return el('span', { class: 'badge ' + (sh.last_error ? 'bad' : 'ok'), text: 'shipping backlog ' + fmtInt(sh.backlog.objects) + ' objects (' + fmtBytes(sh.backlog.bytes) + ')' + (sh.last_error ? ', last error ' + fmtAge(sh.last_error.age_s * 1000) + ' ago' : '') });
}

function health(s, failure) {
  const badge = (ok, text) => el('span', { class: 'badge ' + (ok ? 'ok' : 'bad'), text });
  return el('p', { class: 'health', 'aria-label': 'Health summary' },
    badge(s.ready, s.ready ? 'ready' : 'not ready'),
    s.failed ? badge(false, 'failed: ' + s.failed) : null,
    badge(!s.log.disk_full, s.log.disk_full ? 'disk full: appends paused' : 'disk ok'),
    badge(s.queue.depth <= s.queue.capacity * QUEUE_BUSY_SHARE, 'queue ' + s.queue.depth + ' / ' + s.queue.capacity),
    s.archive && s.archive.over_budget ? badge(false, 'archive over budget') : null,
    shippingBadge(s.shipping),
    recoveryBadge(s.shipping),
    mqttBadge(s.mqtt),
    failure ? badge(false, 'status not updating: ' + describeFailure('status', failure)) : null);
}

/** What recovery did at start, in words: quarantined files, a zeroed torn tail, or clean. */
function recoveryText(r) {
  if (r.quarantined.length) return r.quarantined.length + ' file(s) quarantined';
  if (r.torn_tail) return 'torn tail of ' + fmtBytes(r.torn_tail.zeroed_bytes) + ' zeroed';
  return 'clean';
}

function logCard(s) {
  const log = s.log;
  return el('article', { class: 'card', 'data-part': 'log' }, el('h2', { text: 'Log' }), kv([
    ['Last offset', fmtInt(s.last_offset)],
    ['Oldest offset', fmtInt(log.oldest_offset)],
    ['Segments', fmtInt(log.segments)],
    ['Segment size', fmtBytes(log.segment_bytes)],
    ['Rotations', fmtInt(log.rotations)],
    ['Disk free', fmtBytes(s.disk_free_bytes)],
    ['Entities', fmtInt(s.entities)],
    ['State digest', s.digest],
    ['Recovery at start', recoveryText(log.recovery)],
    ['Replayed at start', fmtInt(s.replay.events) + ' events in ' + fmtInt(s.replay.duration_ms) + ' ms'],
  ]));
}

function commitCard(s, per) {
  const c = s.commit;
  const rate = (v, unit) => (v == null ? '—' : (v >= 100 ? Math.round(v) : v.toFixed(1)) + ' ' + unit);
  return el('article', { class: 'card', 'data-part': 'commit' }, el('h2', { text: 'Commits (group commit)' }), kv([
    ['Write rounds', fmtInt(c.rounds) + ' (' + rate(per((x) => x.commit.rounds), '/s') + ')'],
    ['Records', fmtInt(c.records) + ' (' + rate(per((x) => x.commit.records), '/s') + ')'],
    ['Bytes', fmtBytes(c.bytes)],
    ['Records per round (mean)', c.mean_records_per_round.toFixed(1)],
    ['fsync mean', fmtInt(c.fsync_mean_us) + ' µs'],
    ['fsync p50', c.fsync_p50_us_le == null ? '—' : '≤ ' + fmtInt(c.fsync_p50_us_le) + ' µs'],
    ['fsync p99', c.fsync_p99_us_le == null ? '—' : '≤ ' + fmtInt(c.fsync_p99_us_le) + ' µs'],
  ]), el('h3', { class: 'muted', text: 'fsync latency' }), histogram(c.fsync_histogram_us_log2, 'fsync durations', fmtMicros),
  el('h3', { class: 'muted', text: 'Frames per write round' }), histogram(c.round_frames_histogram_log2, 'frames per round', String));
}

function commandsCard(s) {
  const cmds = s.commands;
  const total = cmds.accepted + cmds.duplicates + cmds.rejected;
  return el('article', { class: 'card', 'data-part': 'commands' }, el('h2', { text: 'Commands' }), kv([
    ['Accepted', fmtInt(cmds.accepted)],
    ['Duplicates', fmtInt(cmds.duplicates)],
    ['Rejected', fmtInt(cmds.rejected) + (total ? ' (' + ((cmds.rejected / total) * 100).toFixed(2) + ' %)' : '')],
    ['Queue', s.queue.depth + ' of ' + s.queue.capacity],
  ]));
}

function gatewayCard(s) {
  return el('article', { class: 'card', 'data-part': 'gateway' }, el('h2', { text: 'Gateway' }), kv([
    ['Site', s.site_id],
    ['Version', s.version],
    ['Gateway time', fmtDateTime(parseTime(s.now)) + ' UTC'],
    ['Uptime', fmtAge(s.uptime_s * 1000)],
    ['Ready', s.ready ? 'yes' : 'no'],
    ['Failure', s.failed || 'none'],
  ]));
}

/** The Modbus devices polled (status `modbus`): one row each; a device that is unavailable
 * or has errors says so with its last error (which names the register). */
function devicesCard(devices) {
  if (!devices || devices.length === 0) return null;
  const ms = (v) => (v == null ? '—' : v.toFixed(1) + ' ms');
  const rows = devices.map((d) => {
    const errors = Object.entries(d.errors || {}).map(([k, n]) => k + ' ' + fmtInt(n)).join(', ');
    const state = d.unavailable ? 'unavailable' : d.connected ? 'connected' : 'not connected';
    return el('tr', { 'data-device': d.name }, [
      el('td', { text: d.name }),
      el('td', null, el('span', { class: 'badge ' + (d.unavailable ? 'bad' : 'ok'), text: state })),
      el('td', { text: d.last_poll_ms == null ? 'never' : fmtDateTime(d.last_poll_ms) }),
      el('td', { text: ms(d.poll_duration_ms_p50) + ' / ' + ms(d.poll_duration_ms_p99) }),
      el('td', { text: fmtInt(d.polls) }),
      el('td', { text: errors || 'none', title: d.last_error || '' }),
      el('td', { text: d.last_error || '' }),
    ]);
  });
  const head = el('tr', null, ['Device', 'State', 'Last poll', 'Duration p50 / p99', 'Polls', 'Errors', 'Last error']
    .map((h) => el('th', { text: h })));
  return el('article', { class: 'card sys-wide', 'data-part': 'devices' }, el('h2', { text: 'Devices (Modbus)' }),
    el('div', { class: 'table-scroll' }, el('table', null, [el('thead', null, head), el('tbody', null, rows)])));
}

export function renderSystem() {
  const body = $('#system-body');
  const failure = failures.get('status');
  if (!status.last) {
    if (failure) setText(body, 'Could not load the status: ' + describeFailure('status', failure));
    return;
  }
  const { s, at } = status.last;
  const prev = status.prev;
  const per = (get) => {
    if (!prev) return null;
    const dt = (at - prev.at) / 1000;
    return dt > 0 ? (get(s) - get(prev.s)) / dt : null;
  };
  const cards = el('div', { class: 'sys' }, logCard(s), commitCard(s, per), commandsCard(s), gatewayCard(s),
    laterPart('Snapshots', s.snapshots), laterPart('Archive', s.archive), laterPart('Shipping', s.shipping),
    mqttCard(s.mqtt));
  const devices = devicesCard(s.modbus);
  if (devices) cards.append(devices);
  body.textContent = '';
  body.append(health(s, failure), cards);
}
