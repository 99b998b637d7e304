/* gridlog dashboard: plain JavaScript, no framework, no chart library, no build step.
 *
 * Why: the page is served by a small gateway to a laptop or phone on site, often with no
 * internet. Everything it needs is these three files (about 33 KB gzipped together); the
 * charts are SVG drawn by a few hundred lines below, which do exactly what the rollups need
 * (gaps as gaps, min-max bands, energy carried over a gap marked as such) — a general chart
 * library would weigh several times the whole page and still need that logic.
 *
 * Data: the public API only. Live values come from /api/v1/stream (Server-Sent Events) and
 * /api/v1/site, refreshed periodically; history from /api/v1/meters/{id}/rollups.
 * Time: always the gateway's clock (from `now` in /api/v1/site, extrapolated between
 * samples at the measured rate, since a demo gateway's clock may run faster than real
 * time), never the browser's. Everything shown is UTC.
 */
'use strict';
(() => {
  const API = '/api/v1';
  /** Same rule as the server's /api/v1/site (`STALE_AFTER_MS` in host/src/server/read.rs). */
  const STALE_AFTER_MS = 60000;
  /** The live view skips ahead when the stream delivers events this far (real time) behind
   * the gateway's clock: only current values matter here, and a page that cannot keep up
   * with a very busy log (a demo at high speed) would otherwise fall further behind. */
  const STREAM_LAG_MAX_MS = 5000;
  const SITE_REFRESH_MS = 5000;
  const METERS_REFRESH_MS = 15000;
  const TODAY_REFRESH_MS = 15000;
  const STATUS_REFRESH_MS = 5000;
  const HISTORY_REFRESH_MS = 20000;
  const RENDER_MS = 500;
  const TOKEN_KEY = 'gridlog.writeToken';
  const MIN = 60000, HOUR = 3600000, DAY = 86400000;
  const STEP_MS = { '15m': 15 * MIN, '1h': HOUR, '1d': DAY };
  const STEP_WORDS = { '15m': '15 minutes', '1h': 'hour', '1d': 'day' };
  /** Rollup steps kept by default (`rollup_quarter_hour_days`): older 15m/1h data is gone. */
  const FINE_ROLLUP_DAYS = 7;
  const IDLE_W = 50;

  // ---------------------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------------------
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  /** An element with attributes (`text`, `class`, `on<event>`, others as attributes). */
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const k of kids.flat(Infinity)) if (k != null && k !== false) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  const SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    return e;
  }
  function setAttrs(e, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.setAttribute('class', v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  function setText(e, text) {
    if (e && e.textContent !== text) e.textContent = text;
  }

  const MINUS = '\u2212';
  const signed = (s) => s.replace(/^-/, MINUS);
  function fmtPower(w) {
    if (w == null || !Number.isFinite(w)) return '—';
    const a = Math.abs(w);
    if (a >= 1e6) return signed((w / 1e6).toFixed(2)) + ' MW';
    if (a >= 1e5) return signed((w / 1e3).toFixed(0)) + ' kW';
    if (a >= 1e3) return signed((w / 1e3).toFixed(1)) + ' kW';
    return signed(Math.round(w).toString()) + ' W';
  }
  function fmtEnergy(wh) {
    if (wh == null || !Number.isFinite(wh)) return '—';
    const a = Math.abs(wh);
    if (a >= 1e9) return signed((wh / 1e9).toFixed(2)) + ' GWh';
    if (a >= 1e6) return signed((wh / 1e6).toFixed(2)) + ' MWh';
    if (a >= 1e4) return signed((wh / 1e3).toFixed(1)) + ' kWh';
    if (a >= 1e3) return signed((wh / 1e3).toFixed(2)) + ' kWh';
    return signed(a >= 100 ? wh.toFixed(0) : wh.toFixed(1)) + ' Wh';
  }
  function fmtUnit(v, unit) {
    return unit === 'Wh' ? fmtEnergy(v) : fmtPower(v);
  }
  function fmtBytes(b) {
    if (b == null) return '—';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return (i ? b.toFixed(1) : b) + ' ' + u[i];
  }
  const fmtInt = (n) => (n == null ? '—' : Number(n).toLocaleString('en-US'));
  const pad = (n) => String(n).padStart(2, '0');
  const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  function fmtTime(ms, seconds = true) {
    const d = new Date(ms);
    return pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + (seconds ? ':' + pad(d.getUTCSeconds()) : '');
  }
  function fmtDate(ms) {
    const d = new Date(ms);
    return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate());
  }
  const fmtDateTime = (ms) => (ms == null ? '—' : fmtDate(ms) + ' ' + fmtTime(ms));
  function fmtAge(ms) {
    if (ms == null || !Number.isFinite(ms)) return '—';
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 90) return s + ' s';
    if (s < 5400) return Math.round(s / 60) + ' min';
    if (s < 172800) return Math.round(s / 3600) + ' h';
    return Math.round(s / 86400) + ' d';
  }
  function fmtPct(x) {
    return x == null || !Number.isFinite(x) ? '—' : (x * 100).toFixed(0) + ' %';
  }
  const parseTime = (s) => (s ? Date.parse(s) : null);
  const dayStart = (ms) => Math.floor(ms / DAY) * DAY;
  const naturalCompare = (a, b) => String(a).localeCompare(String(b), 'en', { numeric: true });

  // ---------------------------------------------------------------------------------------
  // The gateway's clock
  // ---------------------------------------------------------------------------------------
  /** Gateway time now, extrapolated from samples of `now` at the rate measured between them
   * (1 on a real gateway; the demo's `--speed` otherwise). */
  const clock = {
    samples: [], // {gw, at} where `at` is performance.now() when it was received
    rate: 1,
    anchor: null,
    sample(gw) {
      const at = performance.now();
      this.samples.push({ gw, at });
      while (this.samples.length > 2 && at - this.samples[1].at > 30000) this.samples.shift();
      const first = this.samples[0];
      if (at - first.at >= 1500 && gw > first.gw) {
        this.rate = Math.min(3600, Math.max(0.01, (gw - first.gw) / (at - first.at)));
      }
      this.anchor = { gw, at };
    },
    /** An event's gateway time: the clock is at least there. */
    seen(gw) {
      const now = this.now();
      if (now == null || gw > now) this.anchor = { gw, at: performance.now() };
    },
    now() {
      return this.anchor ? this.anchor.gw + (performance.now() - this.anchor.at) * this.rate : null;
    },
  };

  // ---------------------------------------------------------------------------------------
  // The API
  // ---------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body, fallback) {
      const e = (body && body.error) || {};
      super(e.message || fallback || 'HTTP ' + status);
      this.status = status;
      this.code = e.code || (status ? 'http_' + status : 'unreachable');
      this.field = e.field;
    }
  }
  const net = { failures: 0, lastOk: null, recovering: false, requests: 0 };

  async function api(path, { method = 'GET', body, signal } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      const t = token.get();
      if (t) headers.Authorization = 'Bearer ' + t;
    }
    net.requests++;
    let res;
    try {
      res = await fetch(API + path, {
        method, headers, signal, cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      net.failures++;
      throw new ApiError(0, null, 'the gateway does not answer (' + e.message + ')');
    }
    const text = await res.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
    net.lastOk = performance.now();
    net.failures = 0;
    net.recovering = res.status === 503 && json && json.error && json.error.code === 'not_ready';
    if (!res.ok) throw new ApiError(res.status, json);
    return json;
  }

  const token = {
    get() { try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; } },
    set(v) { try { v ? localStorage.setItem(TOKEN_KEY, v) : localStorage.removeItem(TOKEN_KEY); return true; } catch (_) { return false; } },
  };

  // ---------------------------------------------------------------------------------------
  // Live state: meters and assets as the API shows them, kept current by the event stream
  // ---------------------------------------------------------------------------------------
  const state = {
    meters: new Map(), // id -> meter (MeterView + latest.time_ms + today)
    assets: new Map(), // id -> asset (AssetView + telemetry.time_ms)
    site: null,
    siteAt: null,
    metersLoaded: false,
    events: 0,
    skips: 0, // times the live stream skipped ahead (see STREAM_LAG_MAX_MS)
    eventRate: 0,
    lastOffset: null,
    paused: false,
    version: 0, // bumps when the set of meters or assets changes
  };

  function withTimes(m) {
    if (m.latest) m.latest.time_ms = parseTime(m.latest.time);
    return m;
  }
  function assetWithTimes(a) {
    if (a.telemetry) a.telemetry.time_ms = parseTime(a.telemetry.time);
    return a;
  }

  async function loadMeters() {
    const list = await api('/meters');
    const before = [...state.meters.keys()].join();
    const next = new Map();
    for (const m of list) {
      const old = state.meters.get(m.id);
      withTimes(m);
      // Keep a newer reading the stream has delivered since the request was answered.
      if (old && old.latest && (!m.latest || old.latest.time_ms > m.latest.time_ms)) m.latest = old.latest;
      m.today = old ? old.today : null;
      next.set(m.id, m);
    }
    state.meters = next;
    state.metersLoaded = true;
    if ([...next.keys()].join() !== before) state.version++;
  }

  async function loadAssets() {
    const list = await api('/assets');
    const before = [...state.assets.keys()].join();
    const next = new Map();
    for (const a of list) {
      const old = state.assets.get(a.id);
      assetWithTimes(a);
      if (old && old.telemetry && (!a.telemetry || old.telemetry.time_ms > a.telemetry.time_ms)) a.telemetry = old.telemetry;
      next.set(a.id, a);
    }
    state.assets = next;
    if ([...next.keys()].join() !== before) state.version++;
  }

  async function loadSite() {
    const site = await api('/site');
    state.site = site;
    state.siteAt = performance.now();
    clock.sample(parseTime(site.now));
    return site;
  }

  /** Today's import/export per meter, from the 1-day rollups of the gateway's UTC day. */
  let todayLoading = false;
  async function loadToday() {
    const now = clock.now();
    if (now == null || todayLoading) return;
    todayLoading = true;
    const from = dayStart(now);
    const ids = [...state.meters.keys()];
    try {
      await pool(ids, 4, async (id) => {
        const r = await api('/meters/' + encodeURIComponent(id) + '/rollups?step=1d&from=' + new Date(from).toISOString());
        const m = state.meters.get(id);
        if (!m) return;
        const b = r.buckets.find((x) => parseTime(x.start) === from);
        m.today = { day: from, import_wh: b ? b.import_wh : 0, export_wh: b ? b.export_wh : 0, has: !!b };
      });
    } finally {
      todayLoading = false;
    }
  }

  /** Runs `fn` over `items`, at most `n` at a time (browsers allow ~6 connections per host,
   * and one is the event stream). */
  async function pool(items, n, fn) {
    const queue = items.slice();
    const workers = Array.from({ length: Math.min(n, queue.length) }, async () => {
      while (queue.length) {
        try { await fn(queue.shift()); } catch (e) { if (e.name === 'AbortError') throw e; }
      }
    });
    await Promise.all(workers);
  }

  // The event stream ------------------------------------------------------------------------
  let stream = null;
  let streamRetryMs = 1000;
  let streamState = 'connecting';
  let refreshListsSoon = null;

  function openStream(skipping) {
    if (stream) stream.close();
    if (!skipping) streamState = 'connecting';
    // No `after`: the stream starts at the newest event. The browser resumes after a drop
    // by itself (Last-Event-ID), so nothing in between is missed.
    const es = new EventSource(API + '/stream');
    stream = es;
    es.onopen = () => { streamState = 'live'; streamRetryMs = 1000; };
    es.onmessage = onEvent;
    es.addEventListener('fell_behind', () => {
      // The events after our position left the hot log: start again from now.
      es.close();
      stream = null;
      refreshLists();
      setTimeout(() => openStream(false), 200);
    });
    es.addEventListener('error', () => {
      if (es !== stream) return;
      if (es.readyState === EventSource.CLOSED) {
        // Refused (e.g. 503 too many streams): the browser does not retry; we do.
        streamState = 'offline';
        stream = null;
        setTimeout(() => openStream(false), streamRetryMs);
        streamRetryMs = Math.min(streamRetryMs * 2, 30000);
      } else {
        streamState = 'reconnecting';
      }
    });
  }

  function refreshLists() {
    if (refreshListsSoon) return;
    refreshListsSoon = setTimeout(() => {
      refreshListsSoon = null;
      loadMeters().catch(() => {});
      loadAssets().catch(() => {});
    }, 300);
  }

  function onEvent(message) {
    let e;
    try { e = JSON.parse(message.data); } catch (_) { return; }
    state.events++;
    state.lastOffset = e.offset;
    const t = parseTime(e.time);
    if (t) clock.seen(t);
    if (t && state.events % 256 === 0) {
      const lagMs = (clock.now() - t) / clock.rate;
      if (lagMs > STREAM_LAG_MAX_MS) {
        state.skips++;
        refreshLists();
        openStream(true);
        return;
      }
    }
    const d = e.data || {};
    switch (e.type) {
      case 'reading_recorded': {
        const m = state.meters.get(e.entity);
        if (!m) { refreshLists(); return; }
        const time = parseTime(d.time);
        if (!m.latest || time >= m.latest.time_ms) m.latest = Object.assign({}, d, { time_ms: time });
        m.seq = e.seq;
        m.readings = (m.readings || 0) + 1;
        break;
      }
      case 'telemetry_recorded': {
        const a = state.assets.get(e.entity);
        if (!a) { refreshLists(); return; }
        const time = parseTime(d.time);
        if (!a.telemetry || time >= a.telemetry.time_ms) a.telemetry = Object.assign({}, d, { time_ms: time });
        a.seq = e.seq;
        break;
      }
      case 'setpoint_requested':
      case 'setpoint_applied':
      case 'availability_changed':
      case 'fault_raised':
      case 'fault_cleared': {
        const a = state.assets.get(e.entity);
        if (!a) { refreshLists(); return; }
        a.seq = e.seq;
        if (e.type === 'setpoint_requested') a.setpoint_requested_w = d.power_w;
        if (e.type === 'setpoint_applied') a.setpoint_applied_w = d.power_w;
        if (e.type === 'availability_changed') a.available = d.available;
        if (e.type === 'fault_raised' && !a.faults.includes(d.code)) a.faults = a.faults.concat([d.code]);
        if (e.type === 'fault_cleared') a.faults = a.faults.filter((f) => f !== d.code);
        break;
      }
      default:
        // Registrations, replacements, decommissioning: fetch the lists again.
        if (/^(meter|asset)_/.test(e.type)) refreshLists();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Derived: live flows, meter status
  // ---------------------------------------------------------------------------------------
  function isStale(timeMs, now) {
    return timeMs == null || (now != null && now - timeMs > STALE_AFTER_MS);
  }

  /** Live power by flow, summed over meters by kind exactly as /api/v1/site does. */
  function flowsNow() {
    const now = clock.now();
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
    const p = (k) => (by[k] ? by[k].power : 0);
    const st = (k) => !!(by[k] && by[k].stale);
    const socs = [];
    let socTime = null;
    for (const a of state.assets.values()) {
      if (a.kind === 'battery' && a.telemetry && a.telemetry.soc_pct != null) {
        socs.push(a.telemetry.soc_pct);
        socTime = Math.max(socTime || 0, a.telemetry.time_ms);
      }
    }
    const consumption = p('grid') - p('pv') - p('battery');
    return {
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
      soc: socs.length ? socs.reduce((a, b) => a + b, 0) / socs.length : null,
      socStale: isStale(socTime, now),
    };
  }

  function meterStatus(m, now) {
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

  // ---------------------------------------------------------------------------------------
  // Header: clock, connection, pause
  // ---------------------------------------------------------------------------------------
  let rateWindow = { at: performance.now(), events: 0 };
  function renderHeader() {
    const now = clock.now();
    setText($('#gw-clock'), now == null ? '—' : fmtDateTime(now) + ' UTC');
    if (now != null) $('#gw-clock').setAttribute('datetime', new Date(now).toISOString());
    const speed = $('#gw-speed');
    const fast = Math.abs(clock.rate - 1) > 0.2;
    speed.hidden = !fast;
    if (fast) setText(speed, 'clock ×' + (clock.rate >= 10 ? Math.round(clock.rate) : clock.rate.toFixed(1)));
    const at = performance.now();
    if (at - rateWindow.at >= 2000) {
      state.eventRate = ((state.events - rateWindow.events) * 1000) / (at - rateWindow.at);
      rateWindow = { at, events: state.events };
    }
    let s = streamState;
    let words;
    const apiDown = net.failures >= 2;
    if (state.paused) { s = 'paused'; words = 'Paused'; }
    else if (apiDown) { s = 'offline'; words = 'Gateway unreachable'; }
    else if (net.recovering) { s = 'recovering'; words = 'Gateway recovering its log'; }
    else if (s === 'live') words = 'Live · ' + (state.eventRate >= 10 ? Math.round(state.eventRate) : state.eventRate.toFixed(1)) + ' events/s';
    else if (s === 'reconnecting') words = 'Reconnecting…';
    else if (s === 'offline') words = 'Stream offline, retrying';
    else words = 'Connecting…';
    const conn = $('#conn');
    conn.dataset.state = s;
    conn.title = state.skips ? 'The live view skipped ahead ' + state.skips + ' times: the log grew faster than this page could follow.' : '';
    setText(conn, words);
    const banner = $('#banner');
    if (apiDown) {
      banner.hidden = false;
      banner.dataset.level = 'error';
      setText(banner, 'The gateway does not answer. Values shown are not updating; they are marked stale once older than a minute of gateway time.');
    } else if (net.recovering) {
      banner.hidden = false;
      banner.dataset.level = 'warn';
      setText(banner, 'The gateway is recovering its log; the data will appear when it is ready.');
    } else {
      banner.hidden = true;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Site view
  // ---------------------------------------------------------------------------------------
  function setFlow(key, watts, { stale, missing, dir, line, lineDir }) {
    const node = $('#flow-' + key);
    node.dataset.value = missing ? '' : String(Math.round(watts * 10) / 10);
    node.dataset.stale = String(!!stale);
    node.classList.toggle('stale', !!stale);
    setText($('.val', node), !state.metersLoaded ? '—' : missing ? 'no meter' : fmtPower(Math.abs(watts)));
    setText($('.dir', node), missing ? '' : dir);
    $('.stale-mark', node).hidden = !stale;
    if (line) {
      const l = $('#line-' + line);
      const active = !missing && Math.abs(watts) >= IDLE_W;
      l.classList.toggle('active', active);
      l.classList.toggle('out', active && lineDir === 'out');
    }
  }

  function renderSite() {
    const f = flowsNow();
    const has = (k) => !!f.by[k];
    const idle = (w) => Math.abs(w) < IDLE_W;
    setFlow('grid', f.grid, {
      stale: f.stale.grid, missing: !has('grid'), line: 'grid', lineDir: f.grid >= 0 ? 'in' : 'out',
      dir: idle(f.grid) ? 'balanced' : f.grid > 0 ? 'importing' : 'exporting',
    });
    setFlow('pv', f.pv, { stale: f.stale.pv, missing: !has('pv'), line: 'pv', lineDir: 'in', dir: idle(f.pv) ? 'not producing' : 'producing' });
    setFlow('battery', f.battery, {
      stale: f.stale.battery, missing: !has('battery'), line: 'battery', lineDir: f.battery > 0 ? 'out' : 'in',
      dir: idle(f.battery) ? 'idle' : f.battery > 0 ? 'charging' : 'discharging',
    });
    setFlow('ev', f.ev, { stale: f.stale.ev, missing: !has('ev'), line: 'ev', lineDir: 'out', dir: idle(f.ev) ? 'idle' : 'charging' });
    setFlow('building', f.building, { stale: f.stale.building, missing: !has('grid'), line: 'building', lineDir: 'out', dir: 'without EV' });
    setFlow('consumption', f.consumption, { stale: f.stale.consumption, missing: !has('grid'), dir: 'whole site' });
    const soc = $('#soc-meter');
    if (f.soc != null) soc.value = f.soc;
    $('#flow-battery').dataset.soc = f.soc == null ? '' : String(f.soc);
    setText($('#soc-text'), f.soc == null ? '—' : f.soc.toFixed(1) + ' %');
    const newest = Math.max(0, ...Object.values(f.by).map((x) => x.newest || 0));
    setText($('#site-note'), newest ? 'Newest reading ' + fmtTime(newest) + ' UTC.' : '');
    const s = state.site;
    if (s) {
      const t = s.today;
      for (const dd of $$('#today dd')) {
        const k = dd.dataset.total;
        let v;
        if (k === 'self_sufficiency') v = fmtPct(t.consumption_wh > 0 ? 1 - t.grid_import_wh / t.consumption_wh : null);
        else if (k === 'self_consumption') v = fmtPct(t.pv_wh > 0 ? Math.max(0, 1 - t.grid_export_wh / t.pv_wh) : null);
        else v = fmtEnergy(t[k]);
        setText(dd, v);
      }
      // The server's "today" is the UTC day of the newest reading.
      setText($('#today-date'), fmtDate(newest || parseTime(s.now)) + ' (UTC)');
    }
  }

  // ---------------------------------------------------------------------------------------
  // Meters view
  // ---------------------------------------------------------------------------------------
  const meterTable = { version: -1, sort: 'id', desc: false, rows: new Map() };
  const KIND_WORDS = { grid: 'grid', pv: 'PV', battery: 'battery', ev: 'EV', load: 'load', submeter: 'sub-meter' };

  function buildMeterRows() {
    const tbody = $('#meters-table tbody');
    tbody.textContent = '';
    meterTable.rows.clear();
    const labels = ['Meter', 'Kind', 'Power', 'Import today', 'Export today', 'Last reading', 'Status'];
    for (const m of state.meters.values()) {
      const link = el('a', { href: '#/meters/' + encodeURIComponent(m.id), text: m.id });
      const cells = labels.map((label, i) => el('td', { 'data-label': label, class: i >= 2 && i <= 4 ? 'num' : null }));
      cells[0].append(link);
      const tr = el('tr', { 'data-meter': m.id }, cells);
      tr.addEventListener('click', (ev) => {
        if (ev.target.closest('a')) return;
        location.hash = '#/meters/' + encodeURIComponent(m.id);
      });
      tbody.append(tr);
      meterTable.rows.set(m.id, { tr, cells });
    }
    const kinds = [...new Set([...state.meters.values()].map((m) => m.kind))].sort();
    const select = $('#meter-kind');
    const chosen = select.value;
    select.textContent = '';
    select.append(el('option', { value: '', text: 'All kinds' }), kinds.map((k) => el('option', { value: k, text: KIND_WORDS[k] || k })));
    select.value = kinds.includes(chosen) ? chosen : '';
    meterTable.version = state.version;
    sortMeters();
  }

  function meterSortValue(m, key, now) {
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
    const { sort, desc } = meterTable;
    const list = [...state.meters.values()].sort((a, b) => {
      const x = meterSortValue(a, sort, now), y = meterSortValue(b, sort, now);
      const c = typeof x === 'string' ? naturalCompare(x, y) : x - y;
      return (desc ? -c : c) || naturalCompare(a.id, b.id);
    });
    const tbody = $('#meters-table tbody');
    for (const m of list) {
      const row = meterTable.rows.get(m.id);
      if (row) tbody.append(row.tr);
    }
    for (const th of $$('#meters-table th')) {
      const b = $('button', th);
      if (b.dataset.sort === sort) th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    }
  }

  function renderMeters() {
    if (meterTable.version !== state.version) buildMeterRows();
    const now = clock.now();
    const q = $('#meter-filter').value.trim().toLowerCase();
    const kind = $('#meter-kind').value;
    const want = $('#meter-status').value;
    let shown = 0;
    for (const m of state.meters.values()) {
      const row = meterTable.rows.get(m.id);
      if (!row) continue;
      const st = meterStatus(m, now);
      const c = row.cells;
      setText(c[1], KIND_WORDS[m.kind] || m.kind);
      setText(c[2], m.latest ? fmtPower(m.latest.power_w) : '—');
      // No bucket today: no readings today, shown as such rather than as 0 Wh.
      setText(c[3], !m.today ? '…' : m.today.has ? fmtEnergy(m.today.import_wh) : 'no data');
      setText(c[4], !m.today ? '…' : m.today.has ? fmtEnergy(m.today.export_wh) : 'no data');
      setText(c[5], m.latest ? fmtTime(m.latest.time_ms) + ' (' + fmtAge(now - m.latest.time_ms) + ' ago)' : 'never');
      const statusKey = st.key + '|' + st.words.join();
      if (c[6].dataset.key !== statusKey) {
        c[6].dataset.key = statusKey;
        c[6].textContent = '';
        c[6].append(...st.words.map((w) => el('span', { class: 'badge ' + (w === 'ok' ? 'ok' : w === 'decommissioned' ? 'off' : /rejected/.test(w) ? 'bad' : ''), text: w })));
      }
      row.tr.dataset.status = st.key;
      row.tr.dataset.power = m.latest ? String(m.latest.power_w) : '';
      const match = (!q || m.id.toLowerCase().includes(q) || m.kind.includes(q) || (KIND_WORDS[m.kind] || '').toLowerCase().includes(q))
        && (!kind || m.kind === kind)
        && (!want || (want === 'ok' ? st.key === 'ok' : st.key !== 'ok'));
      row.tr.hidden = !match;
      if (match) shown++;
    }
    setText($('#meters-count'), 'Showing ' + shown + ' of ' + state.meters.size + ' meters.');
  }

  // ---------------------------------------------------------------------------------------
  // Meter view
  // ---------------------------------------------------------------------------------------
  let meterView = { id: null, history: null, missing: false };

  function openMeter(id) {
    if (meterView.id !== id) {
      if (meterView.history) meterView.history.destroy();
      meterView = { id, history: null, missing: false };
      setText($('#h-meter'), 'Meter ' + id);
      $('#meter-events').href = '#/events?entity=' + encodeURIComponent(id);
      $('#meter-facts').textContent = '';
      meterView.history = createHistory($('#meter-history'), { source: id, fixedSource: true });
      api('/meters/' + encodeURIComponent(id)).then((m) => {
        const old = state.meters.get(id);
        if (old) old.rejected_last_hour = m.rejected_last_hour;
        else { state.meters.set(id, withTimes(m)); state.version++; }
      }).catch((e) => { if (e.status === 404) { meterView.missing = true; renderMeter(); } });
    } else if (meterView.history) {
      meterView.history.refresh();
    }
    renderMeter();
  }

  function renderMeter() {
    const id = meterView.id;
    const m = state.meters.get(id);
    const facts = $('#meter-facts');
    if (!m) {
      setText(facts, meterView.missing ? 'There is no meter ' + id + '.' : 'Loading…');
      return;
    }
    const now = clock.now();
    const st = meterStatus(m, now);
    const l = m.latest;
    const rows = [
      ['Kind', KIND_WORDS[m.kind] || m.kind],
      ['Power now', l ? fmtPower(l.power_w) : '—'],
      ['Status', st.words.join(', ')],
      ['Last reading', l ? fmtDateTime(l.time_ms) : 'never'],
      ['Age', l ? fmtAge(now - l.time_ms) : '—'],
      ['Voltage', l && l.voltage_v != null ? l.voltage_v.toFixed(1) + ' V' : '—'],
      ['Current', l && l.current_a != null ? l.current_a.toFixed(2) + ' A' : '—'],
      ['Import register', l ? fmtEnergy(l.import_wh) : '—'],
      ['Export register', l ? fmtEnergy(l.export_wh) : '—'],
      ['Import today', !m.today ? '…' : m.today.has ? fmtEnergy(m.today.import_wh) : 'no data'],
      ['Export today', !m.today ? '…' : m.today.has ? fmtEnergy(m.today.export_wh) : 'no data'],
      ['Readings', fmtInt(m.readings)],
      ['Rejected (last hour)', fmtInt(m.rejected_last_hour)],
      ['Seq', fmtInt(m.seq)],
    ];
    if (facts.children.length !== rows.length) {
      facts.textContent = '';
      for (const [k] of rows) facts.append(el('div', null, el('dt', { text: k }), el('dd')));
    }
    rows.forEach(([, v], i) => setText(facts.children[i].lastChild, v));
    facts.dataset.status = st.key;
  }

  // ---------------------------------------------------------------------------------------
  // History: ranges, rollups, series
  // ---------------------------------------------------------------------------------------
  /** The period of `range` containing `at` (UTC): [from, to) and its rollup step. */
  function period(range, at, custom) {
    if (range === 'day') {
      const from = dayStart(at);
      return { from, to: from + DAY, step: '15m', label: fmtDate(from) };
    }
    if (range === 'week') {
      const day = Math.floor(at / DAY);
      const monday = day - ((day + 3) % 7); // 1970-01-01 was a Thursday
      const from = monday * DAY;
      return { from, to: from + 7 * DAY, step: '1h', label: fmtDate(from) + ' – ' + fmtDate(from + 6 * DAY) };
    }
    if (range === 'month') {
      const d = new Date(at);
      const from = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
      const to = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
      return { from, to, step: '1d', label: MONTHS[d.getUTCMonth()] + ' ' + d.getUTCFullYear() };
    }
    const { from, to } = custom;
    const span = to - from;
    let step = custom.step;
    if (!step || step === 'auto') step = span <= 2 * DAY ? '15m' : span <= 14 * DAY ? '1h' : '1d';
    // Bound the points drawn: a coarser step beyond ~3000 intervals.
    if (span / STEP_MS[step] > 3000) step = span / HOUR > 3000 ? '1d' : '1h';
    return { from, to, step, label: fmtDate(from) + ' – ' + fmtDate(to - DAY) };
  }

  function shiftAnchor(range, at, dir) {
    if (range === 'day') return at + dir * DAY;
    if (range === 'week') return at + dir * 7 * DAY;
    const d = new Date(at);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + dir, 1);
  }

  /** Buckets by interval index, and the energy in each that cannot have been used inside it:
   * after a gap, a meter's first reading books the whole register delta since its previous
   * reading into its own interval. Readings bound the interval's energy by max power ×
   * length; what exceeds that was used during the gap ("carried"), and is drawn as such
   * rather than as a spike. */
  function indexBuckets(buckets, stepMs) {
    const byIndex = new Map();
    for (const b of buckets) {
      const start = parseTime(b.start);
      byIndex.set(Math.round(start / stepMs), b);
    }
    const hours = stepMs / HOUR;
    for (const [i, b] of byIndex) {
      b.carriedImport = 0;
      b.carriedExport = 0;
      if (byIndex.has(i - 1)) continue;
      const maxImport = Math.max(0, b.max_w) * hours;
      const maxExport = Math.max(0, -b.min_w) * hours;
      const tol = (x) => Math.max(0.5, x * 0.01);
      if (b.import_wh - maxImport > tol(maxImport)) b.carriedImport = b.import_wh - maxImport;
      if (b.export_wh - maxExport > tol(maxExport)) b.carriedExport = b.export_wh - maxExport;
    }
    return byIndex;
  }

  /** Chart models of one meter: power (mean, min-max band) and energy (import up, export
   * down); NaN where an interval has no bucket. */
  function meterModel(byIndex, idx) {
    const n = idx.length;
    const avg = new Float64Array(n), lo = new Float64Array(n), hi = new Float64Array(n);
    const imp = new Float64Array(n), exp = new Float64Array(n), cImp = new Float64Array(n), cExp = new Float64Array(n);
    const count = new Float64Array(n);
    idx.forEach((i, k) => {
      const b = byIndex.get(i);
      if (!b) { avg[k] = lo[k] = hi[k] = imp[k] = exp[k] = NaN; return; }
      avg[k] = b.avg_w; lo[k] = b.min_w; hi[k] = b.max_w;
      cImp[k] = b.carriedImport; cExp[k] = b.carriedExport;
      imp[k] = b.import_wh - b.carriedImport; exp[k] = -(b.export_wh - b.carriedExport);
      count[k] = b.count;
    });
    return {
      power: { unit: 'W', lines: [{ name: 'Mean power', cls: 's-power', values: avg }], band: { lo, hi, cls: 's-power', name: 'Min–max' } },
      energy: {
        unit: 'Wh',
        bars: [
          { name: 'Import', cls: 's-import', values: imp, carried: cImp },
          { name: 'Export', cls: 's-export', values: exp, carried: cExp.map((x) => -x) },
        ],
      },
      table: [
        ['Mean power', avg, 'W'], ['Min power', lo, 'W'], ['Max power', hi, 'W'],
        ['Import', imp, 'Wh'], ['Export', exp.map((x) => -x), 'Wh'], ['Carried over a gap', cImp.map((x, k) => x + cExp[k]), 'Wh'],
        ['Readings', count, ''],
      ],
    };
  }

  /** Chart models of the site from its grid, PV, battery and EV meters. An interval where a
   * meter the series needs has no bucket is a gap of that series. */
  function siteModel(parts, idx) {
    const n = idx.length;
    const series = (fn) => {
      const out = new Float64Array(n);
      idx.forEach((i, k) => { out[k] = fn(i); });
      return out;
    };
    const sum = (kind, fn) => (i) => {
      const list = parts[kind] || [];
      if (!list.length) return kind === 'grid' ? NaN : 0;
      let total = 0;
      for (const byIndex of list) {
        const b = byIndex.get(i);
        if (!b) return NaN;
        total += fn(b);
      }
      return total;
    };
    const ownImp = (b) => b.import_wh - b.carriedImport;
    const ownExp = (b) => b.export_wh - b.carriedExport;
    const carried = (i) => ['grid', 'pv', 'battery', 'ev'].some((k) => (parts[k] || []).some((m) => {
      const b = m.get(i);
      return b && (b.carriedImport > 0 || b.carriedExport > 0);
    }));
    const gridW = series(sum('grid', (b) => b.avg_w));
    const pvW = series(sum('pv', (b) => -b.avg_w));
    const batW = series(sum('battery', (b) => b.avg_w));
    const evW = series(sum('ev', (b) => b.avg_w));
    const consW = gridW.map((g, k) => g + pvW[k] - batW[k]);
    const gridImp = series(sum('grid', ownImp));
    const gridExp = series(sum('grid', ownExp));
    const pvWh = series(sum('pv', (b) => ownExp(b) - ownImp(b)));
    const batChg = series(sum('battery', ownImp));
    const batDis = series(sum('battery', ownExp));
    const evWh = series(sum('ev', ownImp));
    const consWh = gridImp.map((g, k) => g - gridExp[k] + pvWh[k] - batChg[k] + batDis[k]);
    const carriedMark = series((i) => (carried(i) ? 1 : 0));
    return {
      power: {
        unit: 'W',
        lines: [
          { name: 'Consumption', cls: 's-cons', values: consW },
          { name: 'PV production', cls: 's-pv', values: pvW },
          { name: 'Grid (+ import)', cls: 's-grid', values: gridW },
          { name: 'Battery (+ charge)', cls: 's-battery', values: batW },
          { name: 'EV', cls: 's-ev', values: evW },
        ],
      },
      energy: {
        unit: 'Wh',
        bars: [
          { name: 'Consumption', cls: 's-cons', values: consWh },
          { name: 'PV production', cls: 's-pv', values: pvWh },
          { name: 'Grid (+ import, − export)', cls: 's-grid', values: gridImp.map((x, k) => x - gridExp[k]) },
        ],
        note: carriedMark,
      },
      table: [
        ['Consumption', consW, 'W'], ['PV', pvW, 'W'], ['Grid', gridW, 'W'], ['Battery', batW, 'W'], ['EV', evW, 'W'],
        ['Consumption', consWh, 'Wh'], ['PV production', pvWh, 'Wh'], ['Grid import', gridImp, 'Wh'], ['Grid export', gridExp, 'Wh'],
        ['Battery charged', batChg, 'Wh'], ['Battery discharged', batDis, 'Wh'], ['EV', evWh, 'Wh'],
      ],
    };
  }

  // ---------------------------------------------------------------------------------------
  // History component: controls, two charts, data table
  // ---------------------------------------------------------------------------------------
  let chartSeq = 0;

  function createHistory(mount, opts) {
    const h = {
      source: opts.source || 'site',
      range: 'day',
      anchor: null, // null: the period containing gateway now
      custom: null,
      abort: null,
      requests: 0,
      loadedAt: 0,
      model: null,
      current: false,
      loadSeq: 0,
    };
    mount.textContent = '';
    const uid = ++chartSeq;
    const controls = el('div', { class: 'hist-controls' });
    let sourceSelect = null;
    if (!opts.fixedSource) {
      sourceSelect = el('select', { id: 'hist-source-' + uid, onchange: () => { h.source = sourceSelect.value; syncHash(); load(); } });
      controls.append(el('label', { for: sourceSelect.id }, 'Source', sourceSelect));
    }
    const rangeButtons = ['day', 'week', 'month', 'custom'].map((r) => el('button', {
      type: 'button', 'data-range': r, 'aria-pressed': String(r === h.range),
      text: r[0].toUpperCase() + r.slice(1),
      onclick: () => setRange(r),
    }));
    controls.append(el('div', { class: 'seg', role: 'group', 'aria-label': 'Range' }, rangeButtons));
    const prev = el('button', { type: 'button', class: 'prev', onclick: () => move(-1) }, '‹');
    const next = el('button', { type: 'button', class: 'next', onclick: () => move(1) }, '›');
    const current = el('button', { type: 'button', class: 'current', onclick: () => { h.anchor = null; syncHash(); load(); } }, 'Now');
    const label = el('span', { class: 'period-label', 'aria-live': 'polite' });
    const periodBox = el('div', { class: 'period' }, prev, label, next, current);
    controls.append(periodBox);
    const fromInput = el('input', { type: 'date', id: 'hist-from-' + uid, required: true });
    const toInput = el('input', { type: 'date', id: 'hist-to-' + uid, required: true });
    const stepSelect = el('select', { id: 'hist-step-' + uid },
      el('option', { value: 'auto', text: 'Auto' }), el('option', { value: '15m', text: '15 min' }),
      el('option', { value: '1h', text: '1 hour' }), el('option', { value: '1d', text: '1 day' }));
    const customForm = el('form', { class: 'custom', hidden: true, onsubmit: (ev) => { ev.preventDefault(); applyCustom(); } },
      el('label', { for: fromInput.id }, 'From (UTC day)', fromInput),
      el('label', { for: toInput.id }, 'To (UTC day, inclusive)', toInput),
      el('label', { for: stepSelect.id }, 'Interval', stepSelect),
      el('button', { type: 'submit' }, 'Show'));
    controls.append(customForm);
    const status = el('p', { class: 'hist-status', role: 'status' });
    const powerFig = chartFigure('power', uid);
    const energyFig = chartFigure('energy', uid);
    const tableBox = el('div', { class: 'table-scroll' });
    const details = el('details', { class: 'data', ontoggle: () => { if (details.open) renderTable(); } },
      el('summary', null, 'Data as a table'), tableBox);
    mount.append(controls, status, powerFig.figure, energyFig.figure, details);

    function syncHash() {
      if (!opts.onChange) return;
      opts.onChange({ source: h.source, range: h.range, anchor: h.anchor, custom: h.custom });
    }

    function setRange(r) {
      h.range = r;
      for (const b of rangeButtons) b.setAttribute('aria-pressed', String(b.dataset.range === r));
      customForm.hidden = r !== 'custom';
      periodBox.hidden = r === 'custom';
      if (r === 'custom') {
        const now = clock.now() || Date.now();
        if (!h.custom) h.custom = { from: dayStart(now) - 2 * DAY, to: dayStart(now) + DAY, step: 'auto' };
        fromInput.value = fmtDate(h.custom.from);
        toInput.value = fmtDate(h.custom.to - DAY);
        stepSelect.value = h.custom.step;
      } else {
        h.anchor = null;
      }
      syncHash();
      load();
    }

    function applyCustom() {
      const from = Date.parse(fromInput.value + 'T00:00:00Z');
      const to = Date.parse(toInput.value + 'T00:00:00Z') + DAY;
      if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from) {
        setText(status, 'Choose a start day on or before the end day.');
        return;
      }
      h.custom = { from, to, step: stepSelect.value };
      syncHash();
      load();
    }

    function move(dir) {
      const now = clock.now();
      h.anchor = shiftAnchor(h.range, h.anchor == null ? now : h.anchor, dir);
      if (period(h.range, h.anchor).from > now) h.anchor = null;
      syncHash();
      load();
    }

    function fillSources() {
      if (!sourceSelect) return;
      const ids = [...state.meters.keys()].sort(naturalCompare);
      const key = ids.join();
      if (sourceSelect.dataset.key === key) return;
      sourceSelect.dataset.key = key;
      sourceSelect.textContent = '';
      sourceSelect.append(el('option', { value: 'site', text: 'Site (all flows)' }), ids.map((id) => el('option', { value: id, text: 'Meter ' + id })));
      sourceSelect.value = h.source;
    }

    async function load() {
      const now = clock.now();
      if (now == null) { setTimeout(load, 300); return; }
      fillSources();
      h.loadedAt = performance.now(); // also while loading: refresh() waits for this attempt
      const seq = ++h.loadSeq;
      if (h.abort) h.abort.abort();
      const abort = new AbortController();
      h.abort = abort;
      const p = period(h.range, h.range === 'custom' ? null : h.anchor == null ? now : h.anchor, h.custom);
      const stepMs = STEP_MS[p.step];
      const isCurrent = p.from <= now && now < p.to;
      setText(label, p.label);
      next.disabled = h.range === 'custom' || p.to > now;
      current.disabled = isCurrent;
      prev.setAttribute('aria-label', 'Previous ' + h.range);
      next.setAttribute('aria-label', 'Next ' + h.range);
      for (const f of [powerFig, energyFig]) {
        f.figure.dataset.state = 'loading';
        f.figure.setAttribute('aria-busy', 'true');
      }
      setText(status, 'Loading…');
      // One interval more before `from`, to know whether the first one follows a gap.
      const q = '?step=' + p.step + '&from=' + new Date(p.from - stepMs).toISOString() + '&to=' + new Date(p.to).toISOString();
      const ids = h.source === 'site'
        ? [...state.meters.values()].filter((m) => ['grid', 'pv', 'battery', 'ev'].includes(m.kind) && !m.decommissioned).map((m) => m.id)
        : [h.source];
      let results;
      try {
        results = await Promise.all(ids.map((id) => {
          h.requests++;
          return api('/meters/' + encodeURIComponent(id) + '/rollups' + q, { signal: abort.signal });
        }));
      } catch (e) {
        if (e.name === 'AbortError' || seq !== h.loadSeq) return;
        for (const f of [powerFig, energyFig]) { f.figure.dataset.state = 'error'; f.figure.removeAttribute('aria-busy'); }
        setText(status, e.status === 404 ? 'There is no meter ' + h.source + '.' : 'Could not load the history: ' + e.message);
        return;
      }
      if (seq !== h.loadSeq) return;
      const first = Math.round(p.from / stepMs), last = Math.round(p.to / stepMs);
      const idx = [];
      for (let i = first; i < last; i++) idx.push(i);
      let model, points = 0;
      if (h.source === 'site') {
        const parts = {};
        results.forEach((r, k) => {
          const kind = state.meters.get(ids[k]).kind;
          (parts[kind] = parts[kind] || []).push(indexBuckets(r.buckets, stepMs));
        });
        model = siteModel(parts, idx);
      } else {
        model = meterModel(indexBuckets(results[0].buckets, stepMs), idx);
      }
      model.idx = idx;
      model.stepMs = stepMs;
      model.step = p.step;
      model.from = p.from;
      model.to = p.to;
      model.now = now;
      points = model.power.lines[0].values.reduce((n, v) => n + (Number.isFinite(v) ? 1 : 0), 0);
      h.model = model;
      h.loadedAt = performance.now();
      h.current = isCurrent;
      const title = h.source === 'site' ? 'the site' : 'meter ' + h.source;
      for (const [f, part, what] of [[powerFig, model.power, 'Power'], [energyFig, model.energy, 'Energy']]) {
        setText(f.caption, what + ' of ' + title + ', per ' + STEP_WORDS[p.step] + (what === 'Power' ? ' (mean' + (part.band ? ', with min–max' : '') + ')' : ''));
        drawChart(f, part, model, { title: what + ' of ' + title + ', ' + p.label });
        Object.assign(f.figure.dataset, {
          source: h.source, range: h.range, step: p.step,
          from: new Date(p.from).toISOString(), to: new Date(p.to).toISOString(),
          points: String(points), requests: String(h.requests),
        });
        f.figure.removeAttribute('aria-busy');
      }
      const retention = p.step !== '1d' && p.from < now - FINE_ROLLUP_DAYS * DAY
        ? ' 15-minute and hourly rollups are kept for ' + FINE_ROLLUP_DAYS + ' days by default; use Month for older data.' : '';
      const gaps = Number(powerFig.figure.dataset.gaps || 0);
      setText(status, points === 0
        ? 'No data in this range.' + retention
        : points + ' of ' + idx.filter((i) => i * stepMs < now).length + ' intervals have data' + (gaps ? '; ' + gaps + ' gap' + (gaps > 1 ? 's' : '') + ' (hatched).' : '.') + retention);
      if (details.open) renderTable();
    }

    function renderTable() {
      const m = h.model;
      if (!m) return;
      const head = el('tr', null, el('th', { scope: 'col', text: 'Interval (UTC)' }), m.table.map(([name, , unit]) => el('th', { scope: 'col', class: 'num', text: name + (unit ? ' (' + unit + ')' : '') })));
      const body = [];
      for (let k = m.idx.length - 1; k >= 0; k--) {
        const start = m.idx[k] * m.stepMs;
        if (start > m.now) continue;
        const has = m.table.some(([, v]) => Number.isFinite(v[k]));
        body.push(el('tr', null, el('th', { scope: 'row', text: fmtInterval(start, m.stepMs) }),
          m.table.map(([, v, unit]) => el('td', { class: 'num', text: has && Number.isFinite(v[k]) ? (unit ? fmtUnit(v[k], unit) : fmtInt(v[k])) : 'no data' }))));
      }
      tableBox.textContent = '';
      tableBox.append(el('table', null, el('caption', { class: 'sr-only', text: 'History as a table, newest first' }), el('thead', null, head), el('tbody', null, body)));
    }

    const onResize = () => { if (h.model) for (const [f, part] of [[powerFig, h.model.power], [energyFig, h.model.energy]]) drawChart(f, part, h.model, {}); };
    let resizeTimer = null;
    const ro = new ResizeObserver(() => { clearTimeout(resizeTimer); resizeTimer = setTimeout(onResize, 120); });
    ro.observe(mount);

    if (opts.initial) {
      const i = opts.initial;
      if (i.source) h.source = i.source;
      if (i.custom) h.custom = i.custom;
      if (i.range) {
        h.range = i.range;
        for (const b of rangeButtons) b.setAttribute('aria-pressed', String(b.dataset.range === h.range));
        customForm.hidden = h.range !== 'custom';
        periodBox.hidden = h.range === 'custom';
        if (h.range === 'custom' && h.custom) {
          fromInput.value = fmtDate(h.custom.from);
          toInput.value = fmtDate(h.custom.to - DAY);
          stepSelect.value = h.custom.step || 'auto';
        }
      }
      if (i.anchor != null) h.anchor = i.anchor;
    }
    load();
    return {
      /** Called while the chart is shown: reloads a period that is still filling; a past
       * period only changes through its controls. */
      refresh() {
        if (h.current && h.loadedAt && performance.now() - h.loadedAt > HISTORY_REFRESH_MS) load();
      },
      set(v) {
        let changed = false;
        for (const k of ['source', 'range', 'anchor']) if (v[k] !== undefined && v[k] !== h[k]) { h[k] = v[k]; changed = true; }
        if (changed) {
          for (const b of rangeButtons) b.setAttribute('aria-pressed', String(b.dataset.range === h.range));
          customForm.hidden = h.range !== 'custom';
          periodBox.hidden = h.range === 'custom';
          if (sourceSelect) sourceSelect.value = h.source;
          load();
        } else this.refresh();
      },
      fillSources,
      destroy() { ro.disconnect(); if (h.abort) h.abort.abort(); mount.textContent = ''; },
    };
  }

  function fmtInterval(start, stepMs) {
    if (stepMs >= DAY) return fmtDate(start);
    return fmtDate(start) + ' ' + fmtTime(start, false) + '–' + fmtTime(start + stepMs, false);
  }

  function chartFigure(kind, uid) {
    const caption = el('figcaption');
    const plot = el('div', { class: 'plot' });
    const legend = el('ul', { class: 'legend' });
    const live = el('p', { class: 'sr-only', 'aria-live': 'polite' });
    const figure = el('figure', { class: 'chart', 'data-chart': kind, id: 'chart-' + kind + '-' + uid, tabindex: '0' }, caption, plot, legend, live);
    return { figure, caption, plot, legend, live, kind, uid };
  }

  // ---------------------------------------------------------------------------------------
  // SVG charts
  // ---------------------------------------------------------------------------------------
  /** "Nice" axis ticks covering [lo, hi]. */
  function ticks(lo, hi, n) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.floor(lo / step) * step; ; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
      if (v >= hi - step * 1e-9) break;
    }
    return out;
  }

  function timeTicks(from, to, width) {
    const span = to - from;
    const candidates = [HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY];
    const maxTicks = Math.max(2, Math.floor(width / 70));
    const step = candidates.find((s) => span / s <= maxTicks) || 7 * DAY;
    const out = [];
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) out.push(t);
    return { out, step };
  }

  function fmtTick(t, step) {
    const d = new Date(t);
    if (step < DAY) return d.getUTCHours() === 0 && step >= 3 * HOUR ? WEEKDAYS[d.getUTCDay()] + ' ' + d.getUTCDate() : fmtTime(t, false);
    return d.getUTCDate() + ' ' + MONTHS[d.getUTCMonth()];
  }

  /** Draws one chart. Lines are broken where an interval has no data (a new `M` in the path);
   * missing intervals before gateway now are hatched; bars are absent there. */
  function drawChart(f, part, model, { title }) {
    const width = Math.max(280, Math.round(f.plot.clientWidth || 600));
    const narrow = width < 520;
    const height = narrow ? 190 : 250;
    const m = { l: narrow ? 48 : 58, r: 8, t: 8, b: 22 };
    const iw = width - m.l - m.r, ih = height - m.t - m.b;
    const { idx, stepMs, from, to, now } = model;
    const n = idx.length;
    const x = (t) => m.l + ((t - from) / (to - from)) * iw;
    const slot = iw / n;

    // Value range over everything drawn (carried energy excluded: it must not dwarf the rest).
    let lo = 0, hi = 0;
    const consider = (v) => { if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } };
    for (const s of part.lines || []) s.values.forEach(consider);
    if (part.band) { part.band.lo.forEach(consider); part.band.hi.forEach(consider); }
    for (const s of part.bars || []) s.values.forEach(consider);
    const yt = ticks(lo, hi, narrow ? 4 : 5);
    lo = Math.min(lo, yt[0]); hi = Math.max(hi, yt[yt.length - 1]);
    const y = (v) => m.t + ih - ((v - lo) / (hi - lo || 1)) * ih;

    const root = svg('svg', { width, height, viewBox: '0 0 ' + width + ' ' + height, role: 'img' });
    const hatchId = 'hatch-' + f.kind + '-' + f.uid;
    const carryId = 'carry-' + f.kind + '-' + f.uid;
    const defs = svg('defs');
    const hatch = svg('pattern', { id: hatchId, width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
    hatch.append(svg('rect', { width: 2, height: 6, fill: 'var(--gap)' }));
    const carry = svg('pattern', { id: carryId, width: 4, height: 4, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(-45)' });
    carry.append(svg('rect', { width: 1.5, height: 4, fill: 'var(--accent)' }));
    defs.append(hatch, carry);
    root.append(defs);

    // Axes and grid.
    const axis = svg('g', { class: 'axis' });
    for (const v of yt) {
      axis.append(svg('line', { class: 'gridline', x1: m.l, x2: m.l + iw, y1: y(v), y2: y(v) }));
      const t = svg('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' });
      t.textContent = fmtUnit(v, part.unit).replace(' ', '\u202f');
      axis.append(t);
    }
    const { out: xt, step: xstep } = timeTicks(from, to, iw);
    for (const t of xt) {
      axis.append(svg('line', { x1: x(t), x2: x(t), y1: m.t + ih, y2: m.t + ih + 4 }));
      const label = svg('text', { x: x(t), y: height - 6, 'text-anchor': 'middle' });
      label.textContent = fmtTick(t, xstep);
      axis.append(label);
    }
    root.append(axis);

    // Gaps: missing intervals up to gateway now, merged into runs. Future: shaded.
    const gaps = svg('g', { class: 'gaps' });
    const primary = (part.lines && part.lines[0]) || part.bars[0];
    const missing = (k) => !Number.isFinite(primary.values[k]);
    let gapRuns = 0, run = null;
    const flush = () => {
      if (!run) return;
      const x0 = x(run.start), x1 = x(Math.min(run.end, now));
      const r = svg('rect', { class: 'gap-rect', x: x0, y: m.t, width: Math.max(1, x1 - x0), height: ih, fill: 'url(#' + hatchId + ')', 'data-from': new Date(run.start).toISOString(), 'data-to': new Date(run.end).toISOString() });
      gaps.append(r);
      gapRuns++;
      run = null;
    };
    for (let k = 0; k < n; k++) {
      const start = idx[k] * stepMs;
      if (start >= now) break;
      if (missing(k)) {
        if (run) run.end = start + stepMs; else run = { start, end: start + stepMs };
      } else flush();
    }
    flush();
    if (now < to) root.append(svg('rect', { class: 'future', x: x(Math.max(from, now)), y: m.t, width: Math.max(0, x(to) - x(Math.max(from, now))), height: ih }));
    root.append(gaps);
    if (lo < 0 && hi > 0) root.append(svg('line', { class: 'zero', x1: m.l, x2: m.l + iw, y1: y(0), y2: y(0) }));

    // Bars (energy).
    let carriedTotal = 0;
    if (part.bars) {
      const bars = svg('g', { class: 'bars' });
      const nb = part.bars.length;
      const bw = Math.max(1, (slot * 0.82) / nb);
      part.bars.forEach((s, j) => {
        const g = svg('g', { class: s.cls, 'data-series': s.name });
        s.values.forEach((v, k) => {
          if (!Number.isFinite(v)) return;
          const bx = m.l + k * slot + slot * 0.09 + j * bw;
          const top = y(Math.max(0, v)), bottom = y(Math.min(0, v));
          g.append(svg('rect', { x: bx, y: top, width: bw, height: Math.max(v === 0 ? 0 : 0.5, bottom - top) }));
          const c = s.carried ? s.carried[k] : 0;
          if (c) {
            carriedTotal += Math.abs(c);
            // Energy used during the preceding gap: stacked, hatched, clipped to the plot.
            const base = v, end = v + c;
            const y0 = y(base), y1 = Math.max(m.t, Math.min(m.t + ih, y(end)));
            bars.append(svg('rect', { class: 'carried', x: bx, y: Math.min(y0, y1), width: bw, height: Math.abs(y1 - y0), fill: 'url(#' + carryId + ')', 'data-carried-wh': String(Math.abs(c)) }));
          }
        });
        bars.append(g);
      });
      root.append(bars);
    }

    // Band and lines (power).
    if (part.band) {
      const { lo: blo, hi: bhi } = part.band;
      let d = '';
      let k = 0;
      while (k < n) {
        if (!Number.isFinite(bhi[k])) { k++; continue; }
        let e = k;
        while (e + 1 < n && Number.isFinite(bhi[e + 1])) e++;
        const cx = (i) => m.l + (i + 0.5) * slot;
        let seg = 'M' + cx(k).toFixed(1) + ' ' + y(bhi[k]).toFixed(1);
        for (let i = k + 1; i <= e; i++) seg += 'L' + cx(i).toFixed(1) + ' ' + y(bhi[i]).toFixed(1);
        for (let i = e; i >= k; i--) seg += 'L' + cx(i).toFixed(1) + ' ' + y(blo[i]).toFixed(1);
        d += seg + 'Z';
        k = e + 1;
      }
      if (d) root.append(svg('path', { class: 'band ' + part.band.cls, d }));
    }
    let segments = 0;
    for (const s of part.lines || []) {
      let d = '', segs = 0, prevOk = false, pts = 0;
      s.values.forEach((v, k) => {
        if (!Number.isFinite(v)) { prevOk = false; return; }
        const px = (m.l + (k + 0.5) * slot).toFixed(1), py = y(v).toFixed(1);
        d += (prevOk ? 'L' : 'M') + px + ' ' + py;
        if (!prevOk) segs++;
        prevOk = true;
        pts++;
      });
      const path = svg('path', { class: 'line ' + s.cls, d: d || 'M0 0', 'data-series': s.name, 'data-segments': segs, 'data-points': pts });
      if (!d) path.setAttribute('visibility', 'hidden');
      root.append(path);
      // Lone points (a segment of one interval) would be invisible as a line: a dot.
      if (part.lines.length === 1 || n <= 48) {
        s.values.forEach((v, k) => {
          const alone = Number.isFinite(v) && !Number.isFinite(s.values[k - 1]) && !Number.isFinite(s.values[k + 1]);
          if (alone || (n <= 48 && Number.isFinite(v))) root.append(svg('circle', { class: 'dot ' + s.cls, cx: m.l + (k + 0.5) * slot, cy: y(v), r: 2.5 }));
        });
      }
      if (s === part.lines[0]) segments = segs;
    }

    // Hover and keyboard cursor.
    const cursor = svg('line', { class: 'cursor', y1: m.t, y2: m.t + ih, visibility: 'hidden' });
    root.append(cursor);
    const overlay = svg('rect', { x: m.l, y: m.t, width: iw, height: ih, fill: 'transparent' });
    root.append(overlay);

    const points = primary.values.reduce((a, v) => a + (Number.isFinite(v) ? 1 : 0), 0);
    const summary = (title || f.caption.textContent) + ': ' + points + ' intervals with data' + (gapRuns ? ', ' + gapRuns + ' gap' + (gapRuns > 1 ? 's' : '') : '') +
      (points ? ', from ' + fmtUnit(lo, part.unit) + ' to ' + fmtUnit(hi, part.unit) : '') + '. Use the arrow keys to read values.';
    root.setAttribute('aria-label', summary);
    f.figure.setAttribute('aria-label', summary);
    f.plot.textContent = '';
    f.plot.append(root);
    const tip = el('div', { class: 'tip', hidden: true });
    f.plot.append(tip);
    Object.assign(f.figure.dataset, { segments: String(segments), gaps: String(gapRuns), carriedWh: String(Math.round(carriedTotal)), state: points ? 'ready' : 'empty' });

    // Legend.
    f.legend.textContent = '';
    for (const s of part.lines || []) f.legend.append(el('li', null, el('span', { class: 'sw ' + s.cls }), s.name));
    if (part.band) f.legend.append(el('li', null, el('span', { class: 'sw ' + part.band.cls }), part.band.name));
    for (const s of part.bars || []) f.legend.append(el('li', null, el('span', { class: 'sw ' + s.cls }), s.name));
    f.legend.append(el('li', null, el('span', { class: 'sw gap' }), 'No data (gap)'));
    if (carriedTotal) f.legend.append(el('li', null, el('span', { class: 'sw carried' }), 'Used during the gap before (booked at the next reading)'));

    let at = -1;
    function show(k) {
      if (k < 0 || k >= n) { cursor.setAttribute('visibility', 'hidden'); tip.hidden = true; return; }
      at = k;
      const start = idx[k] * stepMs;
      const cx = m.l + (k + 0.5) * slot;
      cursor.setAttribute('x1', cx); cursor.setAttribute('x2', cx);
      cursor.setAttribute('visibility', 'visible');
      const lines = [el('strong', { text: fmtInterval(start, stepMs) + ' UTC' })];
      const series = (part.lines || []).concat(part.bars || []);
      const none = series.every((s) => !Number.isFinite(s.values[k]));
      if (start > now) lines.push(el('span', { text: 'not yet' }));
      else if (none) lines.push(el('span', { text: 'no data (gap)' }));
      else {
        for (const s of series) {
          const v = s.values[k];
          const c = s.carried ? s.carried[k] : 0;
          lines.push(el('div', null, el('span', { class: 'sw ' + s.cls }), ' ' + s.name + ': ' + (Number.isFinite(v) ? fmtUnit(part.bars && s.name === 'Export' ? -v : v, part.unit) : 'no data') +
            (c ? ' + ' + fmtUnit(Math.abs(c), part.unit) + ' used during the gap before' : '')));
        }
        if (part.band && Number.isFinite(part.band.lo[k])) lines.push(el('div', { text: 'Min ' + fmtPower(part.band.lo[k]) + ', max ' + fmtPower(part.band.hi[k]) }));
        if (part.note && part.note[k]) lines.push(el('div', { text: 'Includes energy used during a gap before' }));
      }
      tip.textContent = '';
      tip.append(...lines);
      tip.hidden = false;
      const tw = tip.offsetWidth;
      const left = cx + 12 + tw > width ? cx - 12 - tw : cx + 12;
      tip.style.left = Math.max(0, left) + 'px';
      tip.style.top = m.t + 'px';
      setText(f.live, tip.textContent);
    }
    const indexAt = (clientX) => {
      const r = root.getBoundingClientRect();
      const px = ((clientX - r.left) / r.width) * width;
      return Math.floor((px - m.l) / slot);
    };
    overlay.addEventListener('pointermove', (ev) => show(indexAt(ev.clientX)));
    overlay.addEventListener('pointerdown', (ev) => show(indexAt(ev.clientX)));
    overlay.addEventListener('pointerleave', () => show(-1));
    f.figure.onkeydown = (ev) => {
      const last = Math.max(0, Math.min(n - 1, Math.floor((now - from) / stepMs)));
      let k = at;
      if (ev.key === 'ArrowRight') k = at < 0 ? 0 : Math.min(last, at + 1);
      else if (ev.key === 'ArrowLeft') k = at < 0 ? last : Math.max(0, at - 1);
      else if (ev.key === 'Home') k = 0;
      else if (ev.key === 'End') k = last;
      else if (ev.key === 'Escape') k = -1;
      else return;
      ev.preventDefault();
      show(k);
    };
    f.figure.onblur = () => show(-1);
  }

  // ---------------------------------------------------------------------------------------
  // History view (site or any meter)
  // ---------------------------------------------------------------------------------------
  let historyView = null;
  function openHistory(params) {
    const initial = {
      source: params.get('source') || 'site',
      range: params.get('range') || 'day',
      anchor: params.get('at') ? Date.parse(params.get('at')) : null,
    };
    if (initial.range === 'custom' && params.get('from') && params.get('to')) {
      initial.custom = { from: Date.parse(params.get('from')), to: Date.parse(params.get('to')), step: params.get('step') || 'auto' };
    }
    if (historyView && ![...params.keys()].length) {
      // Back through the menu: keep what was chosen.
      historyView.refresh();
      return;
    }
    if (!historyView) {
      historyView = createHistory($('#history-main'), {
        initial,
        onChange(v) {
          const q = new URLSearchParams({ source: v.source, range: v.range });
          if (v.anchor != null) q.set('at', new Date(v.anchor).toISOString());
          if (v.range === 'custom' && v.custom) {
            q.set('from', new Date(v.custom.from).toISOString());
            q.set('to', new Date(v.custom.to).toISOString());
            q.set('step', v.custom.step);
          }
          const hash = '#/history?' + q.toString();
          if (location.hash !== hash) history.replaceState(null, '', hash);
        },
      });
    } else {
      historyView.set(initial);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Assets view
  // ---------------------------------------------------------------------------------------
  const assetCards = { version: -1, cards: new Map() };
  const ASSET_WORDS = { battery: 'Battery', pv_inverter: 'PV inverter', ev_charger: 'EV charger', load: 'Controllable load' };

  function buildAssetCards() {
    const box = $('#assets');
    box.textContent = '';
    assetCards.cards.clear();
    for (const a of state.assets.values()) {
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
      box.append(card);
      assetCards.cards.set(a.id, { card, dl, hint });
    }
    assetCards.version = state.version;
  }

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
      msg.dataset.result = e.status === 0 ? 'error' : 'rejected';
      msg.dataset.code = e.code;
      if (e.status === 401 || e.status === 403) msg.textContent = 'Not allowed: ' + e.message + '. Enter the gateway\'s write token above.';
      else if (e.status === 0) msg.textContent = 'Not sent: ' + e.message + '.';
      else msg.textContent = 'Rejected: ' + e.message + ' (' + e.code + ').';
    } finally {
      button.disabled = false;
    }
  }

  function renderAssets() {
    if (assetCards.version !== state.version) buildAssetCards();
    const now = clock.now();
    for (const a of state.assets.values()) {
      const c = assetCards.cards.get(a.id);
      if (!c) continue;
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

  function initToken() {
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

  // ---------------------------------------------------------------------------------------
  // System view
  // ---------------------------------------------------------------------------------------
  const system = { last: null, prev: null, timer: null, error: null };

  async function loadStatus() {
    try {
      const s = await api('/status');
      clock.sample(parseTime(s.now));
      system.prev = system.last;
      system.last = { s, at: performance.now() };
      system.error = null;
      if (s.site_id) setText($('#site-id'), s.site_id);
    } catch (e) {
      system.error = e;
    }
  }

  function kv(rows) {
    return el('dl', null, rows.map(([k, v]) => [el('dt', { text: k }), el('dd', { text: v == null ? '—' : String(v) })]));
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
  const fmtMicros = (u) => (u < 1000 ? u + ' µs' : u < 1e6 ? Math.round(u / 1000) + ' ms' : (u / 1e6).toFixed(1) + ' s');

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

  function renderSystem() {
    const body = $('#system-body');
    if (system.error && !system.last) {
      setText(body, 'Could not load the status: ' + system.error.message);
      return;
    }
    if (!system.last) return;
    const { s } = system.last;
    const prev = system.prev;
    const per = (get) => {
      if (!prev) return null;
      const dt = (system.last.at - prev.at) / 1000;
      return dt > 0 ? (get(s) - get(prev.s)) / dt : null;
    };
    const c = s.commit, log = s.log;
    const cmds = s.commands;
    const totalCmds = cmds.accepted + cmds.duplicates + cmds.rejected;
    const health = el('p', { class: 'health', 'aria-label': 'Health summary' },
      el('span', { class: 'badge ' + (s.ready ? 'ok' : 'bad'), text: s.ready ? 'ready' : 'not ready' }),
      s.failed ? el('span', { class: 'badge bad', text: 'failed: ' + s.failed }) : null,
      el('span', { class: 'badge ' + (log.disk_full ? 'bad' : 'ok'), text: log.disk_full ? 'disk full: appends paused' : 'disk ok' }),
      el('span', { class: 'badge ' + (s.queue.depth > s.queue.capacity * 0.8 ? 'bad' : 'ok'), text: 'queue ' + s.queue.depth + ' / ' + s.queue.capacity }),
      s.archive && s.archive.over_budget ? el('span', { class: 'badge bad', text: 'archive over budget' }) : null,
      s.shipping && s.shipping.enabled && s.shipping.backlog
        ? el('span', { class: 'badge ' + (s.shipping.last_error ? 'bad' : 'ok'), text: 'shipping backlog ' + fmtInt(s.shipping.backlog.objects) + ' objects (' + fmtBytes(s.shipping.backlog.bytes) + ')' + (s.shipping.last_error ? ', last error ' + fmtAge(s.shipping.last_error.age_s * 1000) + ' ago' : '') })
        : null,
      recoveryBadge(s.shipping),
      system.error ? el('span', { class: 'badge bad', text: 'status not updating: ' + system.error.message }) : null);
    const rate = (v, unit) => (v == null ? '—' : (v >= 100 ? Math.round(v) : v.toFixed(1)) + ' ' + unit);
    const cards = el('div', { class: 'sys' },
      el('article', { class: 'card', 'data-part': 'log' }, el('h2', { text: 'Log' }), kv([
        ['Last offset', fmtInt(s.last_offset)],
        ['Oldest offset', fmtInt(log.oldest_offset)],
        ['Segments', fmtInt(log.segments)],
        ['Segment size', fmtBytes(log.segment_bytes)],
        ['Rotations', fmtInt(log.rotations)],
        ['Disk free', fmtBytes(s.disk_free_bytes)],
        ['Entities', fmtInt(s.entities)],
        ['State digest', s.digest],
        ['Recovery at start', log.recovery.quarantined.length ? log.recovery.quarantined.length + ' file(s) quarantined'
          : log.recovery.torn_tail ? 'torn tail of ' + fmtBytes(log.recovery.torn_tail.zeroed_bytes) + ' zeroed' : 'clean'],
        ['Replayed at start', fmtInt(s.replay.events) + ' events in ' + fmtInt(s.replay.duration_ms) + ' ms'],
      ])),
      el('article', { class: 'card', 'data-part': 'commit' }, el('h2', { text: 'Commits (group commit)' }), kv([
        ['Write rounds', fmtInt(c.rounds) + ' (' + rate(per((x) => x.commit.rounds), '/s') + ')'],
        ['Records', fmtInt(c.records) + ' (' + rate(per((x) => x.commit.records), '/s') + ')'],
        ['Bytes', fmtBytes(c.bytes)],
        ['Records per round (mean)', c.mean_records_per_round.toFixed(1)],
        ['fsync mean', fmtInt(c.fsync_mean_us) + ' µs'],
        ['fsync p50', c.fsync_p50_us_le == null ? '—' : '≤ ' + fmtInt(c.fsync_p50_us_le) + ' µs'],
        ['fsync p99', c.fsync_p99_us_le == null ? '—' : '≤ ' + fmtInt(c.fsync_p99_us_le) + ' µs'],
      ]), el('h3', { class: 'muted', text: 'fsync latency' }), histogram(c.fsync_histogram_us_log2, 'fsync durations', fmtMicros),
      el('h3', { class: 'muted', text: 'Frames per write round' }), histogram(c.round_frames_histogram_log2, 'frames per round', String)),
      el('article', { class: 'card', 'data-part': 'commands' }, el('h2', { text: 'Commands' }), kv([
        ['Accepted', fmtInt(cmds.accepted)],
        ['Duplicates', fmtInt(cmds.duplicates)],
        ['Rejected', fmtInt(cmds.rejected) + (totalCmds ? ' (' + ((cmds.rejected / totalCmds) * 100).toFixed(2) + ' %)' : '')],
        ['Queue', s.queue.depth + ' of ' + s.queue.capacity],
      ])),
      el('article', { class: 'card', 'data-part': 'gateway' }, el('h2', { text: 'Gateway' }), kv([
        ['Site', s.site_id],
        ['Version', s.version],
        ['Gateway time', fmtDateTime(parseTime(s.now)) + ' UTC'],
        ['Uptime', fmtAge(s.uptime_s * 1000)],
        ['Ready', s.ready ? 'yes' : 'no'],
        ['Failure', s.failed || 'none'],
      ])),
      laterPart('Snapshots', s.snapshots),
      laterPart('Archive', s.archive),
      laterPart('Shipping', s.shipping));
    body.textContent = '';
    body.append(health, cards);
  }

  // ---------------------------------------------------------------------------------------
  // Event explorer: newest first, paged, with offsets
  // ---------------------------------------------------------------------------------------
  const explorer = { by: 'all', q: '', limit: 50, pages: [], page: null, seq: 0 };

  /** Events of an entity ending at seq `top` (newest first). */
  async function entityPage(id, top, limit) {
    if (top == null) {
      const head = await api('/entities/' + encodeURIComponent(id) + '/events?limit=0');
      top = head.highest_seq;
    }
    if (top < 1) return { events: [], next: null, info: 'No events for ' + id + '.' };
    const from = Math.max(1, top - limit + 1);
    const r = await api('/entities/' + encodeURIComponent(id) + '/events?from_seq=' + from + '&to_seq=' + top + '&limit=' + limit);
    const events = r.events.slice().reverse();
    return {
      events,
      next: from > 1 ? from - 1 : null,
      info: 'Events of ' + id + ', seq ' + from + '–' + top + ' of ' + r.highest_seq + '.',
    };
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
    const SCAN_MAX = 2000000;
    let w = tag ? Math.max(limit * 8, 2000) : limit;
    let scanned = 0;
    let found = [];
    let after = top;
    while (top >= 1) {
      after = Math.max(0, top - w);
      found = [];
      if (w > limit * 8) progress('Searching offsets ' + fmtInt(after + 1) + '–' + fmtInt(top) + ' for ' + (tag ? 'events tagged ' + tag : 'events') + '…');
      let cursor = after;
      while (cursor < top) {
        const n = Math.min(10000, top - cursor);
        const r = await api('/events?after=' + cursor + '&limit=' + n + (tag ? '&tag=' + encodeURIComponent(tag) : ''));
        for (const e of r.events) if (e.offset <= top) found.push(e);
        const reached = r.events.length < n || r.events[r.events.length - 1].offset >= top;
        if (r.last_offset <= cursor || reached) break;
        cursor = r.last_offset;
      }
      scanned += top - after;
      if (found.length >= limit || after === 0 || scanned >= SCAN_MAX) break;
      w *= 8;
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

  async function showEvents(top) {
    const seq = ++explorer.seq;
    const info = $('#events-info');
    const q = explorer.q;
    if (explorer.by !== 'all' && !q) {
      setText(info, explorer.by === 'entity' ? 'Enter a meter or asset id.' : 'Enter a tag, e.g. meter, asset, setpoint, alarm, kind:pv.');
      renderEventRows([]);
      return;
    }
    setText(info, 'Loading…');
    $('#events-table').setAttribute('aria-busy', 'true');
    try {
      const page = explorer.by === 'entity'
        ? await entityPage(q, top, explorer.limit)
        : await offsetPage(explorer.by === 'tag' ? q : null, top, explorer.limit, (words) => { if (seq === explorer.seq) setText(info, words); });
      if (seq !== explorer.seq) return;
      explorer.page = Object.assign({ top }, page);
      renderEventRows(page.events);
      $('#events-table').dataset.query = explorer.by + ':' + q + '@' + (top == null ? 'newest' : top);
      setText(info, page.info);
    } catch (e) {
      if (seq !== explorer.seq) return;
      setText(info, 'Could not load events: ' + e.message);
      renderEventRows([]);
    } finally {
      $('#events-table').removeAttribute('aria-busy');
    }
    $('#events-newer').disabled = explorer.pages.length === 0;
    $('#events-older').disabled = !(explorer.page && explorer.page.next != null);
  }

  function renderEventRows(events) {
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

  function openEvents(params) {
    const by = params.get('entity') != null ? 'entity' : params.get('tag') != null ? 'tag' : params.get('all') != null ? 'all' : null;
    const suggest = $('#events-suggest');
    suggest.textContent = '';
    const words = (by || explorer.by) === 'tag'
      ? ['meter', 'asset', 'setpoint', 'alarm', 'registration', 'system', 'archive', 'shipping', 'kind:grid', 'kind:pv', 'kind:battery', 'kind:ev', 'kind:submeter', 'kind:pv_inverter', 'kind:ev_charger']
      : [...state.meters.keys(), ...state.assets.keys()].sort(naturalCompare);
    suggest.append(...words.map((w) => el('option', { value: w })));
    if (by) {
      const q = by === 'all' ? '' : params.get(by);
      if (by !== explorer.by || q !== explorer.q || !explorer.page) {
        explorer.by = by;
        explorer.q = q;
        explorer.pages = [];
        syncEventsForm();
        showEvents(null);
      }
    } else if (!explorer.page) {
      syncEventsForm();
      showEvents(null);
    }
  }

  function syncEventsForm() {
    $('#events-by').value = explorer.by;
    $('#events-q').value = explorer.q;
    $('#events-q').disabled = explorer.by === 'all';
    $('#events-q-label').firstChild.textContent = explorer.by === 'tag' ? 'Tag ' : 'Entity ';
    $('#events-limit').value = String(explorer.limit);
  }

  function initEvents() {
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

  // ---------------------------------------------------------------------------------------
  // Routing and the refresh loop
  // ---------------------------------------------------------------------------------------
  let view = 'site';
  const TITLES = { site: 'Site now', meters: 'Meters', meter: 'Meter', history: 'History', assets: 'Assets', system: 'System', events: 'Events' };

  function route(focus) {
    const hash = location.hash.replace(/^#\/?/, '');
    const [path, query] = hash.split('?');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(query || '');
    let next = parts[0] || 'site';
    if (next === 'meters' && parts[1]) next = 'meter';
    if (!TITLES[next]) next = 'site';
    const changed = next !== view;
    view = next;
    for (const s of $$('.view')) s.hidden = s.id !== 'view-' + view;
    const navKey = view === 'meter' ? 'meters' : view;
    for (const a of $$('.nav a')) {
      if (a.dataset.nav === navKey) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = (view === 'meter' ? 'Meter ' + parts[1] : TITLES[view]) + ' · gridlog';
    if (view === 'meter') openMeter(parts[1]);
    if (view === 'history') openHistory(params);
    if (view === 'events') openEvents(params);
    if (view === 'system') { loadStatus().then(renderSystem); }
    if (view === 'meters' && Date.now() - lastToday > 2000) refreshToday();
    render();
    if (focus && changed) {
      const h1 = $('#view-' + view + ' h1');
      if (h1) h1.focus({ preventScroll: false });
    }
  }

  function render() {
    renderHeader();
    if (state.paused) return;
    if (view === 'site') renderSite();
    else if (view === 'meters') renderMeters();
    else if (view === 'meter') renderMeter();
    else if (view === 'assets') renderAssets();
  }

  let lastToday = 0;
  function refreshToday() {
    lastToday = Date.now();
    loadToday().catch(() => {});
  }

  async function start() {
    initToken();
    initEvents();
    $('#pause').addEventListener('click', () => {
      state.paused = !state.paused;
      $('#pause').setAttribute('aria-pressed', String(state.paused));
      setText($('#pause'), state.paused ? 'Resume live updates' : 'Pause live updates');
      render();
    });
    for (const sel of ['#meter-filter', '#meter-kind', '#meter-status']) $(sel).addEventListener('input', renderMeters);
    $('#meter-filters').addEventListener('submit', (ev) => ev.preventDefault());
    for (const b of $$('#meters-table th button')) {
      b.addEventListener('click', () => {
        if (meterTable.sort === b.dataset.sort) meterTable.desc = !meterTable.desc;
        else { meterTable.sort = b.dataset.sort; meterTable.desc = ['power', 'import', 'export', 'time'].includes(b.dataset.sort); }
        sortMeters();
      });
    }
    window.addEventListener('hashchange', () => route(true));
    // First data: site (clock), meters and assets in parallel; then the view. The event
    // stream opens after the first frame: on a busy site its messages would otherwise
    // compete with the first render for the main thread.
    await Promise.all([
      loadSite().catch(() => {}),
      loadMeters().catch(() => {}),
      loadAssets().catch(() => {}),
      loadStatus().catch(() => {}),
    ]);
    route(false);
    performance.mark('gridlog:first-data');
    requestAnimationFrame(() => setTimeout(() => openStream(false), 0));
    document.documentElement.dataset.ready = 'true';
    refreshToday();
    // A second clock sample soon, so a fast (demo) clock's rate is known within seconds.
    setTimeout(() => loadSite().catch(() => {}), 1600);
    setInterval(() => loadSite().catch(() => {}), SITE_REFRESH_MS);
    setInterval(() => { loadMeters().catch(() => {}); loadAssets().catch(() => {}); }, METERS_REFRESH_MS);
    setInterval(() => { if (view === 'meters' || view === 'meter') refreshToday(); }, TODAY_REFRESH_MS);
    setInterval(() => { if (view === 'system') loadStatus().then(renderSystem); }, STATUS_REFRESH_MS);
    setInterval(() => {
      render();
      if (view === 'meter' && meterView.history) meterView.history.refresh();
      if (view === 'history' && historyView) { historyView.fillSources(); historyView.refresh(); }
      if ((view === 'meters' || view === 'meter') && meterTable.sort !== 'id' && meterTable.sort !== 'kind' && Date.now() - lastSort > 5000) { lastSort = Date.now(); sortMeters(); }
    }, RENDER_MS);
  }
  let lastSort = 0;

  // Exposed for tests and for curious operators in the console; not an API.
  window.gridlog = { state, clock, net, flowsNow };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
