/* The header on every page: gateway clock, connection state, and the banner that shows
 * every failing request until it succeeds again. */
import { describeFailure, failures, net } from '../api.js';
import { clock } from '../clock.js';
import { $, el, setText } from '../dom.js';
import { fmtAge, fmtDateTime } from '../format.js';
import { limits } from '../limits.js';
import { state } from '../live.js';
import { stream } from '../stream.js';

/** The event rate shown is measured over windows of this length. */
const RATE_WINDOW_MS = 2000;
/** Unanswered requests in a row before the gateway is called unreachable. */
const UNREACHABLE_AFTER = 2;
/** Failures listed in the banner; more are counted. */
const BANNER_FAILURES_MAX = 4;

let rateWindow = { at: performance.now(), events: 0 };

function renderClock() {
  const now = clock.now();
  const node = $('#gw-clock');
  setText(node, now == null ? '—' : fmtDateTime(now) + ' UTC');
  if (now != null) node.setAttribute('datetime', new Date(now).toISOString());
  const speed = $('#gw-speed');
  const fast = Math.abs(clock.rate - 1) > 0.2;
  speed.hidden = !fast;
  if (fast) setText(speed, 'clock ×' + (clock.rate >= 10 ? Math.round(clock.rate) : clock.rate.toFixed(1)));
}

function connection() {
  const at = performance.now();
  if (at - rateWindow.at >= RATE_WINDOW_MS) {
    state.eventRate = ((state.events - rateWindow.events) * 1000) / (at - rateWindow.at);
    rateWindow = { at, events: state.events };
  }
  const s = stream.status;
  if (state.paused) return ['paused', 'Paused'];
  if (net.failures >= UNREACHABLE_AFTER) return ['offline', 'Gateway unreachable'];
  if (net.recovering) return ['recovering', 'Gateway recovering its log'];
  if (s === 'live') return [s, 'Live · ' + (state.eventRate >= 10 ? Math.round(state.eventRate) : state.eventRate.toFixed(1)) + ' events/s'];
  if (s === 'reconnecting') return [s, 'Reconnecting…'];
  if (s === 'offline') return [s, 'Stream offline, retrying'];
  return [s, 'Connecting…'];
}

/** The banner's level and headline, or null when all is well. */
function bannerHeadline() {
  if (net.failures >= UNREACHABLE_AFTER) {
    const age = limits.stale_after_ms == null ? '' : ' once older than ' + fmtAge(limits.stale_after_ms) + ' of gateway time';
    return ['error', 'The gateway does not answer. Values shown are not updating; they are marked stale' + age + '.'];
  }
  if (net.recovering) return ['warn', 'The gateway is recovering its log; the data will appear when it is ready.'];
  if (failures.size) return ['error', 'Some values are not updating:'];
  return null;
}

function renderBanner() {
  const banner = $('#banner');
  const headline = bannerHeadline();
  if (!headline) {
    banner.hidden = true;
    delete banner.dataset.failing;
    return;
  }
  const list = [...failures].map(([k, e]) => describeFailure(k, e));
  const key = headline.join('|') + '|' + list.join('|');
  banner.hidden = false;
  banner.dataset.level = headline[0];
  banner.dataset.failing = [...failures.keys()].join(' ');
  if (banner.dataset.key === key) return;
  banner.dataset.key = key;
  banner.textContent = headline[1];
  if (!list.length) return;
  const items = list.slice(0, BANNER_FAILURES_MAX).map((text) => el('li', { text }));
  if (list.length > BANNER_FAILURES_MAX) items.push(el('li', { text: 'and ' + (list.length - BANNER_FAILURES_MAX) + ' more' }));
  banner.append(el('ul', { class: 'failures' }, items));
}

export function renderHeader() {
  renderClock();
  const [s, words] = connection();
  const conn = $('#conn');
  conn.dataset.state = s;
  conn.title = state.skips ? 'The live view skipped ahead ' + state.skips + ' times: the log grew faster than this page could follow.' : '';
  setText(conn, words);
  renderBanner();
}
