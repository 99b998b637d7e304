/* The event stream (/api/v1/stream, Server-Sent Events): applies each event to the live
 * state, reconnects after a refusal, and skips ahead when it cannot keep up. */
import { API, failures, readingToken } from './api.js';
import { clock } from './clock.js';
import { parseTime } from './format.js';
import { reloadListsSoon, state } from './live.js';

/** The live view skips ahead when the stream delivers events this far (real time) behind
 * the gateway's clock: only current values matter here, and a page that cannot keep up
 * with a very busy log (a demo at high speed) would otherwise fall further behind. */
const STREAM_LAG_MAX_MS = 5000;
/** The lag is measured every this many events. */
const LAG_CHECK_EVERY = 256;
/** A refused stream is retried after this, doubling up to `RETRY_MAX_MS`. */
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30000;
/** After `fell_behind`, the stream is reopened from now after this pause. */
const REOPEN_DELAY_MS = 200;

/** `connecting`, `live`, `reconnecting` or `offline` (read by the header). */
export const stream = { status: 'connecting', source: null, retryMs: RETRY_FIRST_MS };

export function openStream(skipping) {
  if (stream.source) stream.source.close();
  if (!skipping) stream.status = 'connecting';
  // No `after`: the stream starts at the newest event. The browser resumes after a drop
  // by itself (Last-Event-ID), so nothing in between is missed. EventSource cannot send
  // an Authorization header, so the read token goes as `access_token`, which the gateway
  // takes on this route only (and logs no URL).
  const t = readingToken();
  const es = new EventSource(API + '/stream' + (t ? '?access_token=' + encodeURIComponent(t) : ''));
  stream.source = es;
  es.onopen = () => { stream.status = 'live'; stream.retryMs = RETRY_FIRST_MS; };
  es.onmessage = onMessage;
  es.addEventListener('fell_behind', () => {
    // The events after our position left the hot log: start again from now.
    es.close();
    stream.source = null;
    reloadListsSoon();
    setTimeout(() => openStream(false), REOPEN_DELAY_MS);
  });
  es.addEventListener('error', () => {
    if (es !== stream.source) return;
    if (es.readyState === EventSource.CLOSED) {
      // Refused (e.g. 503 too many streams): the browser does not retry; we do.
      stream.status = 'offline';
      stream.source = null;
      setTimeout(() => openStream(false), stream.retryMs);
      stream.retryMs = Math.min(stream.retryMs * 2, RETRY_MAX_MS);
    } else {
      stream.status = 'reconnecting';
    }
  });
}

function onMessage(message) {
  let e;
  try {
    e = JSON.parse(message.data);
  } catch (err) {
    // The live values miss this event: say so until the lists are reloaded from the API.
    failures.set('stream', new Error('a live event could not be read (' + err.message + '); reloading the lists'));
    reloadListsSoon();
    return;
  }
  state.events++;
  state.lastOffset = e.offset;
  const t = parseTime(e.time);
  if (t) clock.seen(t);
  if (t && state.events % LAG_CHECK_EVERY === 0 && (clock.now() - t) / clock.rate > STREAM_LAG_MAX_MS) {
    state.skips++;
    reloadListsSoon();
    openStream(true);
    return;
  }
  applyEvent(e);
}

/** The entity of event `e` in `map`, or null (then the lists are reloaded: it is new). */
function known(map, e) {
  const x = map.get(e.entity);
  if (!x) reloadListsSoon();
  else x.seq = e.seq;
  return x;
}

/** Keeps sample `d` (a reading or telemetry) as `x[key]` unless `x` has a newer one. */
function keepNewest(x, key, d) {
  const time = parseTime(d.time);
  if (!x[key] || time >= x[key].time_ms) x[key] = Object.assign({}, d, { time_ms: time });
}

function applyAssetChange(a, type, d) {
  if (type === 'setpoint_requested') a.setpoint_requested_w = d.power_w;
  if (type === 'setpoint_applied') a.setpoint_applied_w = d.power_w;
  if (type === 'availability_changed') a.available = d.available;
  if (type === 'fault_raised' && !a.faults.includes(d.code)) a.faults = a.faults.concat([d.code]);
  if (type === 'fault_cleared') a.faults = a.faults.filter((f) => f !== d.code);
}

function applyEvent(e) {
  const d = e.data || {};
  switch (e.type) {
    case 'reading_recorded': {
      const m = known(state.meters, e);
      if (m) {
        keepNewest(m, 'latest', d);
        m.readings = (m.readings || 0) + 1;
      }
      return;
    }
    case 'telemetry_recorded': {
      const a = known(state.assets, e);
      if (a) keepNewest(a, 'telemetry', d);
      return;
    }
    case 'setpoint_requested':
    case 'setpoint_applied':
    case 'availability_changed':
    case 'fault_raised':
    case 'fault_cleared': {
      const a = known(state.assets, e);
      if (a) applyAssetChange(a, e.type, d);
      return;
    }
    default:
      // Registrations, replacements, decommissioning: fetch the lists again.
      if (/^(meter|asset)_/.test(e.type)) reloadListsSoon();
  }
}
