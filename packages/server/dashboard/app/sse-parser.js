/** @typedef {{ type: string, data: string, id: string | null }} SseEvent */

/**
 * Parses the text/event-stream framing (WHATWG HTML §9.2.6) from a stream of text chunks that
 * may split lines anywhere. onEvent({ type, data, id }) per dispatched event; comments are skipped.
 * @param {(event: SseEvent) => void} onEvent
 * @returns {(chunk: string) => void}
 */
export function createSseParser(onEvent) {
  let buf = '';
  let type = '';
  /** @type {string[]} */
  let data = [];
  /** @type {string | null} */
  let id = null;
  return (chunk) => {
    buf += chunk;
    let nl = buf.search(/\r\n|\r|\n/);
    while (nl >= 0) {
      // A CR at the very end may be the first half of a CRLF split across chunks: wait for more.
      if (buf[nl] === '\r' && nl === buf.length - 1) break;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
      if (line === '') {
        if (data.length) onEvent({ type: type || 'message', data: data.join('\n'), id });
        type = '';
        data = [];
      } else if (!line.startsWith(':')) {
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        let value = c < 0 ? '' : line.slice(c + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'event') type = value;
        else if (field === 'data') data.push(value);
        else if (field === 'id') id = value;
      }
      nl = buf.search(/\r\n|\r|\n/);
    }
  };
}
