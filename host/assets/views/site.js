/* Site view: the energy-flow diagram live from the stream, and today's energy. */
import { $, $$, setText } from '../dom.js';
import { fmtDate, fmtEnergy, fmtPct, fmtPower, fmtTime, parseTime } from '../format.js';
import { flowsNow, state } from '../live.js';

/** Below this power (W) a flow is shown as idle and its line is not animated. */
const IDLE_W = 50;

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

function renderFlows(f) {
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
}

function renderToday(site, newest) {
  const t = site.today;
  for (const dd of $$('#today dd')) {
    const k = dd.dataset.total;
    let v;
    if (k === 'self_sufficiency') v = fmtPct(t.consumption_wh > 0 ? 1 - t.grid_import_wh / t.consumption_wh : null);
    else if (k === 'self_consumption') v = fmtPct(t.pv_wh > 0 ? Math.max(0, 1 - t.grid_export_wh / t.pv_wh) : null);
    else v = fmtEnergy(t[k]);
    setText(dd, v);
  }
  // The server's "today" is the UTC day of the newest reading.
  setText($('#today-date'), fmtDate(newest || parseTime(site.now)) + ' (UTC)');
}

export function renderSite() {
  const f = flowsNow();
  renderFlows(f);
  const newest = Math.max(0, ...Object.values(f.by).map((x) => x.newest || 0));
  setText($('#site-note'), newest ? 'Newest reading ' + fmtTime(newest) + ' UTC.' : '');
  if (state.site) renderToday(state.site, newest);
}
