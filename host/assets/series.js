/* History as chart series: the period a range covers, rollup buckets by interval, and the
 * models the charts draw (one meter, or the site from its meters). Pure functions. */
import { DAY, HOUR, MIN, MONTHS, dayStart, fmtDate, parseTime } from './format.js';

export const STEP_MS = { '15m': 15 * MIN, '1h': HOUR, '1d': DAY };
export const STEP_WORDS = { '15m': '15 minutes', '1h': 'hour', '1d': 'day' };
/** Most intervals drawn: a custom range beyond this takes a coarser step. */
const INTERVALS_MAX = 3000;
/** The meter kinds the site's history sums. */
export const SITE_KINDS = ['grid', 'pv', 'battery', 'ev'];

/** The period of `range` containing `at` (UTC): [from, to) and its rollup step. */
export function period(range, at, custom) {
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
  if (span / STEP_MS[step] > INTERVALS_MAX) step = span / HOUR > INTERVALS_MAX ? '1d' : '1h';
  return { from, to, step, label: fmtDate(from) + ' – ' + fmtDate(to - DAY) };
}

/** The anchor of the period `dir` (±1) periods away. */
export function shiftAnchor(range, at, dir) {
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
export function indexBuckets(buckets, stepMs) {
  const byIndex = new Map();
  for (const b of buckets) byIndex.set(Math.round(parseTime(b.start) / stepMs), b);
  const hours = stepMs / HOUR;
  const tol = (x) => Math.max(0.5, x * 0.01);
  for (const [i, b] of byIndex) {
    b.carriedImport = 0;
    b.carriedExport = 0;
    if (byIndex.has(i - 1)) continue;
    const maxImport = Math.max(0, b.max_w) * hours;
    const maxExport = Math.max(0, -b.min_w) * hours;
    if (b.import_wh - maxImport > tol(maxImport)) b.carriedImport = b.import_wh - maxImport;
    if (b.export_wh - maxExport > tol(maxExport)) b.carriedExport = b.export_wh - maxExport;
  }
  return byIndex;
}

/** Chart models of one meter: power (mean, min-max band) and energy (import up, export
 * down); NaN where an interval has no bucket. */
export function meterModel(byIndex, idx) {
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

/** Per-interval sums over the site's meters of one kind; NaN where one of them has no
 * bucket (a gap of the series), 0 without such meters (the grid is required). */
function siteSeries(parts, idx) {
  const series = (fn) => {
    const out = new Float64Array(idx.length);
    idx.forEach((i, k) => { out[k] = fn(i); });
    return out;
  };
  const sum = (kind, fn) => series((i) => {
    const list = parts[kind] || [];
    if (!list.length) return kind === 'grid' ? NaN : 0;
    let total = 0;
    for (const byIndex of list) {
      const b = byIndex.get(i);
      if (!b) return NaN;
      total += fn(b);
    }
    return total;
  });
  const carried = (i) => SITE_KINDS.some((k) => (parts[k] || []).some((m) => {
    const b = m.get(i);
    return b && (b.carriedImport > 0 || b.carriedExport > 0);
  }));
  return { series, sum, carried };
}

/** Chart models of the site from its grid, PV, battery and EV meters. An interval where a
 * meter the series needs has no bucket is a gap of that series. */
export function siteModel(parts, idx) {
  const { series, sum, carried } = siteSeries(parts, idx);
  const ownImp = (b) => b.import_wh - b.carriedImport;
  const ownExp = (b) => b.export_wh - b.carriedExport;
  const gridW = sum('grid', (b) => b.avg_w);
  const pvW = sum('pv', (b) => -b.avg_w);
  const batW = sum('battery', (b) => b.avg_w);
  const evW = sum('ev', (b) => b.avg_w);
  const consW = gridW.map((g, k) => g + pvW[k] - batW[k]);
  const gridImp = sum('grid', ownImp);
  const gridExp = sum('grid', ownExp);
  const pvWh = sum('pv', (b) => ownExp(b) - ownImp(b));
  const batChg = sum('battery', ownImp);
  const batDis = sum('battery', ownExp);
  const evWh = sum('ev', ownImp);
  const consWh = gridImp.map((g, k) => g - gridExp[k] + pvWh[k] - batChg[k] + batDis[k]);
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
      note: series((i) => (carried(i) ? 1 : 0)),
    },
    table: [
      ['Consumption', consW, 'W'], ['PV', pvW, 'W'], ['Grid', gridW, 'W'], ['Battery', batW, 'W'], ['EV', evW, 'W'],
      ['Consumption', consWh, 'Wh'], ['PV production', pvWh, 'Wh'], ['Grid import', gridImp, 'Wh'], ['Grid export', gridExp, 'Wh'],
      ['Battery charged', batChg, 'Wh'], ['Battery discharged', batDis, 'Wh'], ['EV', evWh, 'Wh'],
    ],
  };
}
