/* The gateway's public API (/api/v1/...): requests, their errors, the connection's health,
 * and the failures the page must show (none is swallowed: see `watch`). */

export const API = '/api/v1';
const TOKEN_KEY = 'gridlog.writeToken';

/** A failed request: `status` 0 when the gateway did not answer; `code` and `message` from
 * the JSON error body otherwise. */
export class ApiError extends Error {
  constructor(method, path, status, body, fallback) {
    const e = (body && body.error) || {};
    super(e.message || fallback || 'HTTP ' + status);
    this.method = method;
    this.path = path;
    this.status = status;
    this.code = e.code || (status ? 'http_' + status : 'unreachable');
    this.field = e.field;
  }
}

/** The connection: consecutive unanswered requests, and whether the gateway said it is still
 * recovering its log. */
export const net = { failures: 0, lastOk: null, recovering: false, requests: 0 };

/** What failed and has not succeeded since, by what the page was doing (`watch`'s key). */
export const failures = new Map();

/** The write token, kept in this browser's localStorage. */
export const token = {
  get() { try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; } },
  set(v) { try { v ? localStorage.setItem(TOKEN_KEY, v) : localStorage.removeItem(TOKEN_KEY); return true; } catch (_) { return false; } },
};

/** `method` `API + path` with a JSON `body`; the parsed JSON answer, or an `ApiError`. */
export async function api(path, { method = 'GET', body, signal } = {}) {
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
    throw new ApiError(method, path, 0, null, 'the gateway does not answer (' + e.message + ')');
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  net.lastOk = performance.now();
  net.failures = 0;
  net.recovering = res.status === 503 && json && json.error && json.error.code === 'not_ready';
  if (!res.ok) throw new ApiError(method, path, res.status, json);
  return json;
}

/** Runs `task` (an async function) for the page's own refreshes, whose failure no control
 * shows: a failure is recorded under `key` for the banner until the next run of the same
 * key succeeds. Resolves to the task's value, or undefined after a failure. */
export async function watch(key, task) {
  try {
    const value = await task();
    failures.delete(key);
    return value;
  } catch (e) {
    if (e.name === 'AbortError') return undefined;
    failures.set(key, e);
    return undefined;
  }
}

/** A failure in words: which request, and what the gateway said; for an error of the page
 * itself (a bug), what the page was doing (`key`) and the error. */
export function describeFailure(key, e) {
  if (!(e instanceof ApiError)) return key + ': page error: ' + (e && e.message);
  const what = e.method + ' ' + API + e.path;
  if (e.status === 0) return what + ': ' + e.message;
  return what + ': ' + e.status + ' ' + e.code + ': ' + e.message;
}
