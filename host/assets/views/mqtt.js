/* The MQTT part of the System page: the broker connection and, per source, what its
 * messages became (from /api/v1/status → mqtt). */
import { el } from '../dom.js';
import { fmtDateTime, fmtInt } from '../format.js';

/** "code 3, other 1", or "none". */
function counts(byCode) {
  const parts = Object.entries(byCode || {}).map(([code, n]) => code.replace(/_/g, ' ') + ' ' + fmtInt(n));
  return parts.length ? parts.join(', ') : 'none';
}

/** The health badge of the broker connection, or null when MQTT is off. */
export function mqttBadge(mqtt) {
  if (!mqtt) return null;
  return el('span', {
    class: 'badge ' + (mqtt.connected ? 'ok' : 'bad'),
    'data-part': 'mqtt-connection',
    text: 'MQTT ' + (mqtt.connected ? 'connected' : 'disconnected') + (mqtt.last_error ? ': ' + mqtt.last_error : ''),
  });
}

function sourceRow(source) {
  const cell = (label, text) => el('td', { 'data-label': label, text });
  return el('tr', null,
    el('th', { scope: 'row', text: source.name }),
    cell('Messages', fmtInt(source.messages)),
    cell('Stored', fmtInt(source.stored)),
    cell('Duplicates', fmtInt(source.duplicates)),
    cell('Rejected by the engine', counts(source.rejected)),
    cell('Refused', counts(source.refused)),
    cell('Last message', source.last_message_unix_ms == null ? 'never' : fmtDateTime(source.last_message_unix_ms) + ' UTC'));
}

/** The MQTT card, or null when MQTT is off on this gateway. */
export function mqttCard(mqtt) {
  if (!mqtt) return null;
  const head = el('tr', null, ['Source', 'Messages', 'Stored', 'Duplicates', 'Rejected by the engine', 'Refused', 'Last message']
    .map((h) => el('th', { scope: 'col', text: h })));
  return el('article', { class: 'card sys-wide', 'data-part': 'mqtt' },
    el('h2', { text: 'MQTT' }),
    el('p', null, mqtt.broker + ' — ' + (mqtt.connected ? 'connected' : 'disconnected') + ', '
      + fmtInt(mqtt.connections) + ' connection(s) since start, '
      + fmtInt(mqtt.unmatched_messages) + ' message(s) on no source\'s topic'
      + (mqtt.last_error ? '; last error: ' + mqtt.last_error : '')),
    el('div', { class: 'table-scroll' }, el('table', null, el('thead', null, head), el('tbody', null, mqtt.sources.map(sourceRow)))));
}
