/* The server's rules the page must follow (GET /api/v1/limits): when a value is stale, how
 * far back fine rollups go, the largest pages. Read from the server, never copied by hand;
 * null until loaded. */
import { api } from './api.js';

export const limits = {
  stale_after_ms: null,
  rollup_quarter_hour_days: null,
  rollup_day_days: null,
  events_limit_max: null,
  today_limit_max: null,
};

/** True once the limits have been read. */
export const limitsKnown = () => limits.stale_after_ms != null;

export async function loadLimits() {
  Object.assign(limits, await api('/limits'));
}
