/* gridlog dashboard: plain JavaScript modules, no framework, no chart library, no build
 * step. This module starts the page: first data, routing by URL fragment, the refresh
 * timers. Module map and dependencies: host/assets/README.md.
 *
 * Data: the public API only. Live values come from /api/v1/stream (Server-Sent Events) and
 * /api/v1/site, refreshed periodically; history from /api/v1/meters/{id}/rollups; the
 * server's rules (stale age, rollup horizons) from /api/v1/limits. Time: always the
 * gateway's clock (clock.js), never the browser's. Everything shown is UTC. */
import { failures, net, watch } from './api.js';
import { clock } from './clock.js';
import { $, $$, setText } from './dom.js';
import { limitsKnown, loadLimits } from './limits.js';
import { flowsNow, loadAssets, loadMeters, loadSite, loadToday, reloadLists, state } from './live.js';
import { openStream } from './stream.js';
import { initToken, renderAssets } from './views/assets.js';
import { initAuth } from './views/auth.js';
import { initEvents, openEvents } from './views/events.js';
import { renderHeader } from './views/header.js';
import { openHistory, tickHistory } from './views/history.js';
import { openMeter, renderMeter, tickMeter } from './views/meter.js';
import { initMeters, renderMeters, tickMeters } from './views/meters.js';
import { renderSite } from './views/site.js';
import { loadStatus, renderSystem } from './views/system.js';

const SITE_REFRESH_MS = 5000;
const LISTS_REFRESH_MS = 15000;
const TODAY_REFRESH_MS = 15000;
const STATUS_REFRESH_MS = 5000;
const RENDER_MS = 500;
/** A second clock sample this soon, so a fast (demo) clock's rate is known within seconds. */
const SECOND_SAMPLE_MS = 1600;
/** Opening the Meters view reloads today's energy unless it was loaded this recently. */
const TODAY_FRESH_MS = 2000;
const TITLES = { site: 'Site now', meters: 'Meters', meter: 'Meter', history: 'History', assets: 'Assets', system: 'System', events: 'Events' };

/** The view shown, and when today's energy was last asked for. */
const page = { view: 'site', todayAt: 0 };

// An error of the page itself (a bug) is shown in the banner, not left in the console.
window.addEventListener('error', (e) => failures.set('page', e.error || new Error(e.message)));
window.addEventListener('unhandledrejection', (e) => {
  failures.set('page', e.reason instanceof Error ? e.reason : new Error(String(e.reason)));
});

const refreshSite = () => watch('site', loadSite);
const refreshStatus = () => loadStatus().then(() => { if (page.view === 'system') renderSystem(); });
function refreshToday() {
  page.todayAt = performance.now();
  return watch('today', loadToday);
}

function render() {
  renderHeader();
  if (state.paused) return;
  if (page.view === 'site') renderSite();
  else if (page.view === 'meters') renderMeters();
  else if (page.view === 'meter') renderMeter();
  else if (page.view === 'assets') renderAssets();
}

/** Shows the view the URL fragment names (`#/meters/sub-20`, `#/history?range=week`). */
function route(focus) {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || '');
  let next = parts[0] || 'site';
  if (next === 'meters' && parts[1]) next = 'meter';
  if (!TITLES[next]) next = 'site';
  const changed = next !== page.view;
  page.view = next;
  for (const s of $$('.view')) s.hidden = s.id !== 'view-' + next;
  const navKey = next === 'meter' ? 'meters' : next;
  for (const a of $$('.nav a')) {
    if (a.dataset.nav === navKey) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = (next === 'meter' ? 'Meter ' + parts[1] : TITLES[next]) + ' · gridlog';
  if (next === 'meter') openMeter(parts[1]);
  if (next === 'history') openHistory(params);
  if (next === 'events') openEvents(params);
  if (next === 'system') refreshStatus();
  if (next === 'meters' && performance.now() - page.todayAt > TODAY_FRESH_MS) refreshToday();
  render();
  if (focus && changed) {
    const h1 = $('#view-' + next + ' h1');
    if (h1) h1.focus({ preventScroll: false });
  }
}

function initPause() {
  const button = $('#pause');
  button.addEventListener('click', () => {
    state.paused = !state.paused;
    button.setAttribute('aria-pressed', String(state.paused));
    setText(button, state.paused ? 'Resume live updates' : 'Pause live updates');
    render();
  });
}

function startTimers() {
  setTimeout(refreshSite, SECOND_SAMPLE_MS);
  setInterval(refreshSite, SITE_REFRESH_MS);
  setInterval(() => {
    reloadLists();
    if (!limitsKnown()) watch('limits', loadLimits);
  }, LISTS_REFRESH_MS);
  setInterval(() => { if (page.view === 'meters' || page.view === 'meter') refreshToday(); }, TODAY_REFRESH_MS);
  setInterval(() => { if (page.view === 'system') refreshStatus(); }, STATUS_REFRESH_MS);
  setInterval(() => {
    render();
    if (page.view === 'meter') tickMeter();
    if (page.view === 'history') tickHistory();
    if (page.view === 'meters' || page.view === 'meter') tickMeters();
  }, RENDER_MS);
}

/** After a token was typed: everything the page loads, again, and the stream with it. */
function reloadAll() {
  watch('limits', loadLimits);
  refreshSite();
  reloadLists();
  refreshToday();
  refreshStatus();
  openStream(false);
}

async function start() {
  initAuth(reloadAll);
  initToken();
  initEvents();
  initMeters();
  initPause();
  window.addEventListener('hashchange', () => route(true));
  // First data: limits, site (clock), meters, assets and status in parallel; then the view.
  // The event stream opens after the first frame: on a busy site its messages would
  // otherwise compete with the first render for the main thread.
  await Promise.all([
    watch('limits', loadLimits),
    refreshSite(),
    watch('meters', loadMeters),
    watch('assets', loadAssets),
    loadStatus(),
  ]);
  route(false);
  performance.mark('gridlog:first-data');
  requestAnimationFrame(() => setTimeout(() => openStream(false), 0));
  document.documentElement.dataset.ready = 'true';
  refreshToday();
  startTimers();
}

// Exposed for tests and for curious operators in the console; not an API.
window.gridlog = { state, clock, net, flowsNow };

start();
