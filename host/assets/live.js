/* Live state: meters, assets and the site as the API shows them, kept current by the event
 * stream (stream.js) and periodic reloads; and what is derived from it (live flows, meter
 * status, staleness). */
import { api, failures, watch } from './api.js';
import { clock } from './clock.js';
import { parseTime } from './format.js';
import { limits } from './limits.js';

/** A burst of list changes (registrations) reloads the lists once, after this pause. */
const LIST_RELOAD_DELAY_MS = 300;

export const state = {
  meters: new Map(), // id -> meter (MeterView + latest.time_ms + today)
  assets: new Map(), // id -> asset (AssetView + telemetry.time_ms)
  site: null,
  siteAt: null,
  metersLoaded: false,
  events: 0,
  skips: 0, // times the live stream skipped ahead (see stream.js)
  eventRate: 0,
  lastOffset: null,
  paused: false,
  version: 0, // bumps when the set of meters or assets changes
};

export function withTimes(m) {
  if (m.latest) m.latest.time_ms = parseTime(m.latest.time);
  return m;
}

/** The entities `path` lists, by id, each with its newest sample (`key`: `latest`,
 * `telemetry`) timed; a newer sample the stream has delivered since the request was
 * answered is kept. Bumps `state.version` when the set of ids changed. */
async function loadList(path, current, key) {
  const list = await api(path);
  const next = new Map();
  for (const x of list) {
    if (x[key]) x[key].time_ms = parseTime(x[key].time);
    const old = current.get(x.id);
    if (old && old[key] && (!x[key] || old[key].time_ms > x[key].time_ms)) x[key] = old[key];
    next.set(x.id, x);
  }
  if ([...next.keys()].join() !== [...current.keys()].join()) state.version++;
  return next;
}

export async function loadMeters() {
  const next = await loadList('/meters', state.meters, 'latest');
  for (const m of next.values()) {
    const old = state.meters.get(m.id);
    m.today = old ? old.today : null;
  }
  state.meters = next;
  state.metersLoaded = true;
}

export async function loadAssets() {
  state.assets = await loadList('/assets', state.assets, 'telemetry');
}

export async function loadSite() {
  const site = await api('/site');
  state.site = site;
  state.siteAt = performance.now();
  clock.sample(parseTime(site.now));
  return site;
}

/** Today's import/export of every meter: one request per page of `today_limit_max` meters
 * (one for any site up to that size), not one per meter. */
export async function loadToday() {
  const size = limits.today_limit_max ? 'limit=' + limits.today_limit_max : '';
  let after = '';
  do {
    const page = await api('/today/meters?' + size + (after ? '&after=' + encodeURIComponent(after) : ''));
    const day = parseTime(page.day);
    for (const t of page.meters) {
      const m = state.meters.get(t.id);
      if (m) m.today = { day, import_wh: t.import_wh, export_wh: t.export_wh, has: t.readings > 0 };
    }
    after = page.next_after;
  } while (after);
}

/** Reloads the meter and asset lists; a failure goes to the banner. Reloaded, they repair
 * what a live event that could not be read missed (stream.js). */
export function reloadLists() {
  return Promise.all([watch('meters', loadMeters), watch('assets', loadAssets)]).then((r) => {
    if (!failures.has('meters') && !failures.has('assets')) failures.delete('stream');
    return r;
  });
}

let listReload = null;
/** `reloadLists` soon, once for a burst of calls. */
export function reloadListsSoon() {
  if (listReload) return;
  listReload = setTimeout(() => {
    listReload = null;
    reloadLists();
  }, LIST_RELOAD_DELAY_MS);
}

/** True if a value last updated at `timeMs` is stale at gateway time `now`: never updated,
 * or older than the server's `stale_after_ms`. */
export function isStale(timeMs, now) {
  return timeMs == null || (now != null && limits.stale_after_ms != null && now - timeMs > limits.stale_after_ms);
}

function flowsByKind(now) {
  const by = {};
  for (const m of state.meters.values()) {
    if (m.decommissioned) continue;
    const f = by[m.kind] || (by[m.kind] = { power: 0, meters: 0, stale: false, newest: null });
    f.meters++;
    if (m.latest) {
      f.power += m.latest.power_w;
      if (f.newest == null || m.latest.time_ms > f.newest) f.newest = m.latest.time_ms;
    }
    if (isStale(m.latest && m.latest.time_ms, now)) f.stale = true;
  }
  return by;
}

function batterySoc(now) {
  const socs = [];
  let socTime = null;
  for (const a of state.assets.values()) {
    if (a.kind === 'battery' && a.telemetry && a.telemetry.soc_pct != null) {
      socs.push(a.telemetry.soc_pct);
      socTime = Math.max(socTime || 0, a.telemetry.time_ms);
    }
  }
  return { soc: socs.length ? socs.reduce((a, b) => a + b, 0) / socs.length : null, socStale: isStale(socTime, now) };
}

/** Live power by flow, summed over meters by kind exactly as /api/v1/site does. */
export function flowsNow() {
  const now = clock.now();
  const by = flowsByKind(now);
  const p = (k) => (by[k] ? by[k].power : 0);
  const st = (k) => !!(by[k] && by[k].stale);
  const consumption = p('grid') - p('pv') - p('battery');
  return Object.assign({
    now,
    by,
    grid: p('grid'),
    pv: -p('pv'),
    battery: p('battery'),
    ev: p('ev'),
    consumption,
    building: consumption - p('ev'),
    stale: {
      grid: st('grid'), pv: st('pv'), battery: st('battery'), ev: st('ev'),
      consumption: st('grid') || st('pv') || st('battery'),
      building: st('grid') || st('pv') || st('battery') || st('ev'),
    },
  }, batterySoc(now));
}

/** A meter's status: a key for styling and the words shown. */
export function meterStatus(m, now) {
  if (m.decommissioned) return { key: 'off', words: ['decommissioned'] };
  const words = [];
  let key = 'ok';
  if (!m.latest) { words.push('no readings'); key = 'stale'; }
  else if (isStale(m.latest.time_ms, now)) { words.push('stale'); key = 'stale'; }
  if (m.rejected_last_hour > 0) {
    words.push(m.rejected_last_hour + ' rejected (1 h)');
    key = key === 'ok' ? 'rejected' : key + ' rejected';
  }
  if (!words.length) words.push('ok');
  return { key, words };
}
