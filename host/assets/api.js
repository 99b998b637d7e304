/* The gateway's public API (/api/v1/...): requests, their errors, the connection's health,
 * and the failures the page must show (none is swallowed: see `watch`). */

export const API = '/api/v1';
const TOKEN_KEY = 'gridlog.writeToken';
const READ_TOKEN_KEY = 'gridlog.readToken';

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

/** The write token, kept in this browser's localStorage (typed on the Assets page). */
export const token = {
  get() { try { return localStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; } },
  set(v) { try { v ? localStorage.setItem(TOKEN_KEY, v) : localStorage.removeItem(TOKEN_KEY); return true; } catch (_) { return false; } },
};

/** The read token, kept in this tab's sessionStorage, not localStorage: it lets whoever
 * holds it read every reading of the site, so it goes when the tab is closed instead of
 * staying in the browser's profile (and every later tab) for the next person at a shared
 * control-room PC. */
export const readToken = {
  get() { try { return sessionStorage.getItem(READ_TOKEN_KEY) || ''; } catch (_) { return ''; } },
  set(v) { try { v ? sessionStorage.setItem(READ_TOKEN_KEY, v) : sessionStorage.removeItem(READ_TOKEN_KEY); return true; } catch (_) { return false; } },
};

/** The token a read sends: the read token, else the write token (a writer may read). */
export function readingToken() {
  return readToken.get() || token.get();
}

/** Whether reads are let through: `ok`; `needed` (401: the gateway has a read token and
 * none was sent); `wrong` (403: the token sent was refused, `error` says how); `checking`
 * (a new token was given and no read has answered yet). views/auth.js shows the form
 * for it and sets `onChange`. */
export const auth = { state: 'ok', error: null, onChange: () => {} };

function setAuth(state, error) {
  if (auth.state === state && !error) return;
  auth.state = state;
  auth.error = error || null;
  auth.onChange();
}

/** A new token was typed: kept for this tab, and every read tries it from now on.
 * False if the browser does not let the page keep it. */
export function useReadToken(value) {
  if (!readToken.set(value)) return false;
  setAuth('checking');
  return true;
}

/** `method` `API + path` with a JSON `body`; the parsed JSON answer, or an `ApiError`. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const t = body !== undefined ? token.get() || readingToken() : readingToken();
  if (t) headers.Authorization = 'Bearer ' + t;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
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
  let unreadable = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { unreadable = e; }
  net.lastOk = performance.now();
  net.failures = 0;
  net.recovering = res.status === 503 && json && json.error && json.error.code === 'not_ready';
  if (!res.ok) {
    const error = new ApiError(method, path, res.status, json);
    // A read refused for its token asks the person for one (views/auth.js); writes keep
    // their own token and answer where they were asked.
    if (method === 'GET' && error.code === 'unauthorized') setAuth('needed', error);
    if (method === 'GET' && error.code === 'forbidden') setAuth('wrong', error);
    throw error;
  }
  if (method === 'GET') setAuth('ok');
  if (unreadable) throw badJson(method, path, res.status, unreadable);
  return json;
}

/** A successful answer whose body is not JSON (a proxy's page, a cut-off answer): the
 * request may have done its work, and the page cannot tell what it says. */
function badJson(method, path, status, e) {
  const error = new ApiError(method, path, status, null, 'the answer is not JSON (' + e.message + ')');
  error.code = 'bad_json';
  return error;
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
