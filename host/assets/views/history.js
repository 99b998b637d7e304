/* History view: the site's or any meter's history, its choice kept in the URL. */
import { $ } from '../dom.js';
import { createHistory } from '../history.js';

let component = null;

/** The URL fragment of a history choice. */
function fragment(v) {
  const q = new URLSearchParams({ source: v.source, range: v.range });
  if (v.anchor != null) q.set('at', new Date(v.anchor).toISOString());
  if (v.range === 'custom' && v.custom) {
    q.set('from', new Date(v.custom.from).toISOString());
    q.set('to', new Date(v.custom.to).toISOString());
    q.set('step', v.custom.step);
  }
  return '#/history?' + q.toString();
}

/** The choice a URL's parameters ask for. */
function fromParams(params) {
  const initial = {
    source: params.get('source') || 'site',
    range: params.get('range') || 'day',
    anchor: params.get('at') ? Date.parse(params.get('at')) : null,
  };
  if (initial.range === 'custom' && params.get('from') && params.get('to')) {
    initial.custom = { from: Date.parse(params.get('from')), to: Date.parse(params.get('to')), step: params.get('step') || 'auto' };
  }
  return initial;
}

export function openHistory(params) {
  const initial = fromParams(params);
  if (component && ![...params.keys()].length) {
    // Back through the menu: keep what was chosen.
    component.refresh();
    return;
  }
  if (component) {
    component.set(initial);
    return;
  }
  component = createHistory($('#history-main'), {
    initial,
    onChange(v) {
      const hash = fragment(v);
      if (location.hash !== hash) history.replaceState(null, '', hash);
    },
  });
}

/** Called on every render tick while the view is shown. */
export function tickHistory() {
  if (!component) return;
  component.fillSources();
  component.refresh();
}
