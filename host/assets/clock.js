/* The gateway's clock. Time on the page is always the gateway's, never the browser's: `now`
 * from the API, extrapolated between samples at the rate measured between them (1 on a real
 * gateway; the demo's `--speed` otherwise). */

/** Samples further apart than this (real ms) are dropped from the rate estimate. */
const RATE_WINDOW_MS = 30000;
/** The rate is estimated only from samples at least this far apart (real ms). */
const RATE_SPAN_MIN_MS = 1500;
/** Bounds of a believable clock rate (a demo runs at most at ×3600). */
const RATE_MIN = 0.01, RATE_MAX = 3600;

function createClock() {
  const samples = []; // {gw, at} where `at` is performance.now() when it was received
  const clock = {
    rate: 1,
    anchor: null,
    /** A `now` from the API. */
    sample(gw) {
      const at = performance.now();
      samples.push({ gw, at });
      while (samples.length > 2 && at - samples[1].at > RATE_WINDOW_MS) samples.shift();
      const first = samples[0];
      if (at - first.at >= RATE_SPAN_MIN_MS && gw > first.gw) {
        clock.rate = Math.min(RATE_MAX, Math.max(RATE_MIN, (gw - first.gw) / (at - first.at)));
      }
      clock.anchor = { gw, at };
    },
    /** An event's gateway time: the clock is at least there. */
    seen(gw) {
      const now = clock.now();
      if (now == null || gw > now) clock.anchor = { gw, at: performance.now() };
    },
    /** Gateway time now (ms), or null before the first sample. */
    now() {
      return clock.anchor ? clock.anchor.gw + (performance.now() - clock.anchor.at) * clock.rate : null;
    },
  };
  return clock;
}

/** The page's one gateway clock. */
export const clock = createClock();
