/* How values are written for people: power, energy, bytes, UTC times, ages. Pure functions. */

export const MIN = 60000, HOUR = 3600000, DAY = 86400000;
export const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
export const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
export const KIND_WORDS = { grid: 'grid', pv: 'PV', battery: 'battery', ev: 'EV', load: 'load', submeter: 'sub-meter' };

const MINUS = '\u2212';
const signed = (s) => s.replace(/^-/, MINUS);

export function fmtPower(w) {
  if (w == null || !Number.isFinite(w)) return '—';
  const a = Math.abs(w);
  if (a >= 1e6) return signed((w / 1e6).toFixed(2)) + ' MW';
  if (a >= 1e5) return signed((w / 1e3).toFixed(0)) + ' kW';
  if (a >= 1e3) return signed((w / 1e3).toFixed(1)) + ' kW';
  return signed(Math.round(w).toString()) + ' W';
}

export function fmtEnergy(wh) {
  if (wh == null || !Number.isFinite(wh)) return '—';
  const a = Math.abs(wh);
  if (a >= 1e9) return signed((wh / 1e9).toFixed(2)) + ' GWh';
  if (a >= 1e6) return signed((wh / 1e6).toFixed(2)) + ' MWh';
  if (a >= 1e4) return signed((wh / 1e3).toFixed(1)) + ' kWh';
  if (a >= 1e3) return signed((wh / 1e3).toFixed(2)) + ' kWh';
  return signed(a >= 100 ? wh.toFixed(0) : wh.toFixed(1)) + ' Wh';
}

export function fmtUnit(v, unit) {
  return unit === 'Wh' ? fmtEnergy(v) : fmtPower(v);
}

export function fmtBytes(b) {
  if (b == null) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + ' ' + u[i];
}

export const fmtInt = (n) => (n == null ? '—' : Number(n).toLocaleString('en-US'));
export const fmtMicros = (u) => (u < 1000 ? u + ' µs' : u < 1e6 ? Math.round(u / 1000) + ' ms' : (u / 1e6).toFixed(1) + ' s');
const pad = (n) => String(n).padStart(2, '0');

export function fmtTime(ms, seconds = true) {
  const d = new Date(ms);
  return pad(d.getUTCHours()) + ':' + pad(d.getUTCMinutes()) + (seconds ? ':' + pad(d.getUTCSeconds()) : '');
}

export function fmtDate(ms) {
  const d = new Date(ms);
  return d.getUTCFullYear() + '-' + pad(d.getUTCMonth() + 1) + '-' + pad(d.getUTCDate());
}

export const fmtDateTime = (ms) => (ms == null ? '—' : fmtDate(ms) + ' ' + fmtTime(ms));

/** An interval of `stepMs` starting at `start`: a day, or a day and its hours. */
export function fmtInterval(start, stepMs) {
  if (stepMs >= DAY) return fmtDate(start);
  return fmtDate(start) + ' ' + fmtTime(start, false) + '–' + fmtTime(start + stepMs, false);
}

export function fmtAge(ms) {
  if (ms == null || !Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return s + ' s';
  if (s < 5400) return Math.round(s / 60) + ' min';
  if (s < 172800) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

export function fmtPct(x) {
  return x == null || !Number.isFinite(x) ? '—' : (x * 100).toFixed(0) + ' %';
}

export const parseTime = (s) => (s ? Date.parse(s) : null);
export const dayStart = (ms) => Math.floor(ms / DAY) * DAY;
export const naturalCompare = (a, b) => String(a).localeCompare(String(b), 'en', { numeric: true });
