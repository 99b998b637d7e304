/* SVG charts of interval series: lines (broken where an interval has no data), a min-max
 * band, bars, hatched gaps up to gateway now, energy carried over a gap, a hover and
 * keyboard cursor with a tooltip. Hand-written: a chart library would weigh more than the
 * page and still not know gaps from zeros. */
import { el, setText, svg } from './dom.js';
import { DAY, HOUR, MONTHS, WEEKDAYS, fmtInterval, fmtPower, fmtTime, fmtUnit } from './format.js';

/** Charts at most this wide show a dot at every interval, not only at lone points. */
const DOTS_INTERVALS_MAX = 48;
/** Below this width (px) the chart is drawn for a phone: shorter, fewer ticks. */
const NARROW_PX = 520;

/** A chart's figure: caption, plot, legend and a live region for screen readers. */
export function chartFigure(kind, uid) {
  const caption = el('figcaption');
  const plot = el('div', { class: 'plot' });
  const legend = el('ul', { class: 'legend' });
  const live = el('p', { class: 'sr-only', 'aria-live': 'polite' });
  const figure = el('figure', { class: 'chart', 'data-chart': kind, id: 'chart-' + kind + '-' + uid, tabindex: '0' }, caption, plot, legend, live);
  return { figure, caption, plot, legend, live, kind, uid };
}

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

const finite = (v) => Number.isFinite(v);

/** Size, margins, scales and value range of a chart of `part` in `f`'s plot. */
function geometry(f, part, model) {
  const width = Math.max(280, Math.round(f.plot.clientWidth || 600));
  const narrow = width < NARROW_PX;
  const height = narrow ? 190 : 250;
  const m = { l: narrow ? 48 : 58, r: 8, t: 8, b: 22 };
  const iw = width - m.l - m.r, ih = height - m.t - m.b;
  const { from, to } = model;
  // Value range over everything drawn (carried energy excluded: it must not dwarf the rest).
  let lo = 0, hi = 0;
  const consider = (v) => { if (finite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } };
  for (const s of part.lines || []) s.values.forEach(consider);
  if (part.band) { part.band.lo.forEach(consider); part.band.hi.forEach(consider); }
  for (const s of part.bars || []) s.values.forEach(consider);
  const yt = ticks(lo, hi, narrow ? 4 : 5);
  lo = Math.min(lo, yt[0]); hi = Math.max(hi, yt[yt.length - 1]);
  const slot = iw / model.idx.length;
  return {
    width, height, m, iw, ih, lo, hi, yt, slot,
    x: (t) => m.l + ((t - from) / (to - from)) * iw,
    y: (v) => m.t + ih - ((v - lo) / (hi - lo || 1)) * ih,
    cx: (k) => m.l + (k + 0.5) * slot,
    hatchId: 'hatch-' + f.kind + '-' + f.uid,
    carryId: 'carry-' + f.kind + '-' + f.uid,
  };
}

function patterns(g) {
  const defs = svg('defs');
  const hatch = svg('pattern', { id: g.hatchId, width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
  hatch.append(svg('rect', { width: 2, height: 6, fill: 'var(--gap)' }));
  const carry = svg('pattern', { id: g.carryId, width: 4, height: 4, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(-45)' });
  carry.append(svg('rect', { width: 1.5, height: 4, fill: 'var(--accent)' }));
  defs.append(hatch, carry);
  return defs;
}

function axes(g, part, model) {
  const { m, iw, ih, x, y } = g;
  const axis = svg('g', { class: 'axis' });
  for (const v of g.yt) {
    axis.append(svg('line', { class: 'gridline', x1: m.l, x2: m.l + iw, y1: y(v), y2: y(v) }));
    const t = svg('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' });
    t.textContent = fmtUnit(v, part.unit).replace(' ', '\u202f');
    axis.append(t);
  }
  const { out: xt, step: xstep } = timeTicks(model.from, model.to, iw);
  for (const t of xt) {
    axis.append(svg('line', { x1: x(t), x2: x(t), y1: m.t + ih, y2: m.t + ih + 4 }));
    const label = svg('text', { x: x(t), y: g.height - 6, 'text-anchor': 'middle' });
    label.textContent = fmtTick(t, xstep);
    axis.append(label);
  }
  return axis;
}

/** Missing intervals of `primary` up to gateway now, merged into runs: [start, end). */
function gapRuns(primary, model) {
  const { idx, stepMs, now } = model;
  const runs = [];
  let run = null;
  for (let k = 0; k < idx.length; k++) {
    const start = idx[k] * stepMs;
    if (start >= now) break;
    if (!finite(primary.values[k])) {
      if (run) run.end = start + stepMs; else runs.push(run = { start, end: start + stepMs });
    } else run = null;
  }
  return runs;
}

/** Hatched gaps, the future shaded, the zero line; returns the number of gaps. */
function drawGaps(root, g, primary, model) {
  const { m, ih, x } = g;
  const { from, to, now } = model;
  const gaps = svg('g', { class: 'gaps' });
  const runs = gapRuns(primary, model);
  for (const run of runs) {
    const x0 = x(run.start), x1 = x(Math.min(run.end, now));
    gaps.append(svg('rect', { class: 'gap-rect', x: x0, y: m.t, width: Math.max(1, x1 - x0), height: ih, fill: 'url(#' + g.hatchId + ')', 'data-from': new Date(run.start).toISOString(), 'data-to': new Date(run.end).toISOString() }));
  }
  if (now < to) root.append(svg('rect', { class: 'future', x: x(Math.max(from, now)), y: m.t, width: Math.max(0, x(to) - x(Math.max(from, now))), height: ih }));
  root.append(gaps);
  if (g.lo < 0 && g.hi > 0) root.append(svg('line', { class: 'zero', x1: m.l, x2: m.l + g.iw, y1: g.y(0), y2: g.y(0) }));
  return runs.length;
}

/** Energy bars, with what was used during a preceding gap stacked and hatched; returns the
 * carried energy drawn (Wh). */
function drawBars(root, g, bars) {
  const { m, ih, y, slot } = g;
  const group = svg('g', { class: 'bars' });
  const bw = Math.max(1, (slot * 0.82) / bars.length);
  let carriedTotal = 0;
  bars.forEach((s, j) => {
    const series = svg('g', { class: s.cls, 'data-series': s.name });
    s.values.forEach((v, k) => {
      if (!finite(v)) return;
      const bx = m.l + k * slot + slot * 0.09 + j * bw;
      const top = y(Math.max(0, v)), bottom = y(Math.min(0, v));
      series.append(svg('rect', { x: bx, y: top, width: bw, height: Math.max(v === 0 ? 0 : 0.5, bottom - top) }));
      const c = s.carried ? s.carried[k] : 0;
      if (!c) return;
      carriedTotal += Math.abs(c);
      const y0 = y(v), y1 = Math.max(m.t, Math.min(m.t + ih, y(v + c)));
      group.append(svg('rect', { class: 'carried', x: bx, y: Math.min(y0, y1), width: bw, height: Math.abs(y1 - y0), fill: 'url(#' + g.carryId + ')', 'data-carried-wh': String(Math.abs(c)) }));
    });
    group.append(series);
  });
  root.append(group);
  return carriedTotal;
}

/** The min-max band: one closed path per run of intervals with data. */
function drawBand(root, g, band) {
  const { y, cx } = g;
  const { lo, hi } = band;
  const n = hi.length;
  let d = '';
  for (let k = 0; k < n;) {
    if (!finite(hi[k])) { k++; continue; }
    let e = k;
    while (e + 1 < n && finite(hi[e + 1])) e++;
    let seg = 'M' + cx(k).toFixed(1) + ' ' + y(hi[k]).toFixed(1);
    for (let i = k + 1; i <= e; i++) seg += 'L' + cx(i).toFixed(1) + ' ' + y(hi[i]).toFixed(1);
    for (let i = e; i >= k; i--) seg += 'L' + cx(i).toFixed(1) + ' ' + y(lo[i]).toFixed(1);
    d += seg + 'Z';
    k = e + 1;
  }
  if (d) root.append(svg('path', { class: 'band ' + band.cls, d }));
}

/** One line per series, broken where an interval has no data (a new `M`); dots where a
 * point would be invisible. Returns the first line's number of segments. */
function drawLines(root, g, lines) {
  const { y, cx } = g;
  let segments = 0;
  for (const s of lines) {
    const n = s.values.length;
    let d = '', segs = 0, prevOk = false, pts = 0;
    s.values.forEach((v, k) => {
      if (!finite(v)) { prevOk = false; return; }
      d += (prevOk ? 'L' : 'M') + cx(k).toFixed(1) + ' ' + y(v).toFixed(1);
      if (!prevOk) segs++;
      prevOk = true;
      pts++;
    });
    const path = svg('path', { class: 'line ' + s.cls, d: d || 'M0 0', 'data-series': s.name, 'data-segments': segs, 'data-points': pts });
    if (!d) path.setAttribute('visibility', 'hidden');
    root.append(path);
    if (lines.length === 1 || n <= DOTS_INTERVALS_MAX) {
      s.values.forEach((v, k) => {
        const alone = finite(v) && !finite(s.values[k - 1]) && !finite(s.values[k + 1]);
        if (alone || (n <= DOTS_INTERVALS_MAX && finite(v))) root.append(svg('circle', { class: 'dot ' + s.cls, cx: cx(k), cy: y(v), r: 2.5 }));
      });
    }
    if (s === lines[0]) segments = segs;
  }
  return segments;
}

function drawLegend(f, part, carried) {
  const item = (cls, name) => el('li', null, el('span', { class: 'sw ' + cls }), name);
  f.legend.textContent = '';
  for (const s of part.lines || []) f.legend.append(item(s.cls, s.name));
  if (part.band) f.legend.append(item(part.band.cls, part.band.name));
  for (const s of part.bars || []) f.legend.append(item(s.cls, s.name));
  f.legend.append(item('gap', 'No data (gap)'));
  if (carried) f.legend.append(item('carried', 'Used during the gap before (booked at the next reading)'));
}

/** The tooltip's lines for interval `k`. */
function tipLines(part, model, k) {
  const start = model.idx[k] * model.stepMs;
  const lines = [el('strong', { text: fmtInterval(start, model.stepMs) + ' UTC' })];
  const series = (part.lines || []).concat(part.bars || []);
  if (start > model.now) return lines.concat(el('span', { text: 'not yet' }));
  if (series.every((s) => !finite(s.values[k]))) return lines.concat(el('span', { text: 'no data (gap)' }));
  for (const s of series) {
    const v = s.values[k];
    const c = s.carried ? s.carried[k] : 0;
    lines.push(el('div', null, el('span', { class: 'sw ' + s.cls }), ' ' + s.name + ': ' + (finite(v) ? fmtUnit(part.bars && s.name === 'Export' ? -v : v, part.unit) : 'no data') +
      (c ? ' + ' + fmtUnit(Math.abs(c), part.unit) + ' used during the gap before' : '')));
  }
  if (part.band && finite(part.band.lo[k])) lines.push(el('div', { text: 'Min ' + fmtPower(part.band.lo[k]) + ', max ' + fmtPower(part.band.hi[k]) }));
  if (part.note && part.note[k]) lines.push(el('div', { text: 'Includes energy used during a gap before' }));
  return lines;
}

/** Hover, touch and arrow keys move a cursor and a tooltip over the intervals. */
function attachCursor(f, root, g, part, model) {
  const { m, ih, slot, width } = g;
  const n = model.idx.length;
  const cursor = svg('line', { class: 'cursor', y1: m.t, y2: m.t + ih, visibility: 'hidden' });
  const overlay = svg('rect', { x: m.l, y: m.t, width: g.iw, height: ih, fill: 'transparent' });
  root.append(cursor, overlay);
  const tip = el('div', { class: 'tip', hidden: true });
  f.plot.append(tip);
  let at = -1;
  const show = (k) => {
    if (k < 0 || k >= n) { cursor.setAttribute('visibility', 'hidden'); tip.hidden = true; return; }
    at = k;
    const cx = g.cx(k);
    cursor.setAttribute('x1', cx); cursor.setAttribute('x2', cx);
    cursor.setAttribute('visibility', 'visible');
    tip.textContent = '';
    tip.append(...tipLines(part, model, k));
    tip.hidden = false;
    const tw = tip.offsetWidth;
    tip.style.left = Math.max(0, cx + 12 + tw > width ? cx - 12 - tw : cx + 12) + 'px';
    tip.style.top = m.t + 'px';
    setText(f.live, tip.textContent);
  };
  const indexAt = (clientX) => {
    const r = root.getBoundingClientRect();
    return Math.floor((((clientX - r.left) / r.width) * width - m.l) / slot);
  };
  overlay.addEventListener('pointermove', (ev) => show(indexAt(ev.clientX)));
  overlay.addEventListener('pointerdown', (ev) => show(indexAt(ev.clientX)));
  overlay.addEventListener('pointerleave', () => show(-1));
  f.figure.onkeydown = (ev) => {
    const last = Math.max(0, Math.min(n - 1, Math.floor((model.now - model.from) / model.stepMs)));
    const keys = { ArrowRight: at < 0 ? 0 : Math.min(last, at + 1), ArrowLeft: at < 0 ? last : Math.max(0, at - 1), Home: 0, End: last, Escape: -1 };
    if (!(ev.key in keys)) return;
    ev.preventDefault();
    show(keys[ev.key]);
  };
  f.figure.onblur = () => show(-1);
}

/** Draws one chart of `part` (power or energy of `model`) into figure `f`. Missing
 * intervals before gateway now are hatched; lines break and bars are absent there. */
export function drawChart(f, part, model, { title }) {
  const g = geometry(f, part, model);
  const root = svg('svg', { width: g.width, height: g.height, viewBox: '0 0 ' + g.width + ' ' + g.height, role: 'img' });
  root.append(patterns(g), axes(g, part, model));
  const primary = (part.lines && part.lines[0]) || part.bars[0];
  const gaps = drawGaps(root, g, primary, model);
  const carried = part.bars ? drawBars(root, g, part.bars) : 0;
  if (part.band) drawBand(root, g, part.band);
  const segments = drawLines(root, g, part.lines || []);
  const points = primary.values.reduce((a, v) => a + (finite(v) ? 1 : 0), 0);
  const summary = (title || f.caption.textContent) + ': ' + points + ' intervals with data' + (gaps ? ', ' + gaps + ' gap' + (gaps > 1 ? 's' : '') : '') +
    (points ? ', from ' + fmtUnit(g.lo, part.unit) + ' to ' + fmtUnit(g.hi, part.unit) : '') + '. Use the arrow keys to read values.';
  root.setAttribute('aria-label', summary);
  f.figure.setAttribute('aria-label', summary);
  f.plot.textContent = '';
  f.plot.append(root);
  Object.assign(f.figure.dataset, { segments: String(segments), gaps: String(gaps), carriedWh: String(Math.round(carried)), state: points ? 'ready' : 'empty' });
  drawLegend(f, part, carried);
  attachCursor(f, root, g, part, model);
}
