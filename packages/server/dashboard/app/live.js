/**
 * Live updates: the server's Server-Sent Events stream, read with fetch() rather than EventSource
 * because EventSource cannot send an Authorization header (and a token in the URL would land in
 * access logs). Reconnects with backoff and resends Last-Event-ID; after a reconnect every page
 * reloads its data, since events may have been missed.
 */
import { createParser } from 'eventsource-parser';
import { tokenStore } from './api.js';

const STREAM = '/api/v1/events';
const listeners = new Set();
const statusListeners = new Set();
let status = 'connecting';
let controller = null;
let lastEventId = null;

function setStatus(s) {
  status = s;
  for (const l of statusListeners) l(s);
}

export function liveStatus() {
  return status;
}

export function onLiveStatus(fn) {
  statusListeners.add(fn);
  return () => statusListeners.delete(fn);
}

/** fn({ type, data }) for every event; type 'resync' after a (re)connect. Returns an unsubscribe. */
export function onLive(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(ev) {
  for (const l of listeners) {
    try {
      l(ev);
    } catch (e) {
      console.error('live listener failed', e);
    }
  }
}

async function runOnce(signal) {
  const headers = { accept: 'text/event-stream', authorization: `Bearer ${tokenStore.get()}` };
  if (lastEventId) headers['last-event-id'] = lastEventId;
  const res = await fetch(STREAM, { headers, signal, cache: 'no-store' });
  if (!res.ok || !res.body)
    throw Object.assign(new Error(`stream answered ${res.status}`), { status: res.status });
  setStatus('live');
  emit({ type: 'resync', data: null });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = createParser({
    onEvent: (ev) => {
      if (ev.id) lastEventId = ev.id;
      let data = ev.data;
      try {
        data = JSON.parse(ev.data);
      } catch {}
      // Either `event: device.state` + `data: {...}`, or an unnamed event carrying { type, ts, data }.
      const type = ev.event ?? 'message';
      if (type === 'message' && data && typeof data.type === 'string')
        emit({ type: data.type, data: data.data ?? {} });
      else emit({ type, data });
    },
  });
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    parser.feed(value);
  }
}

/** Starts the stream (idempotent); stop() ends it, e.g. on sign-out. */
export function startLive() {
  if (controller) return;
  controller = new AbortController();
  const { signal } = controller;
  (async () => {
    let delay = 500;
    while (!signal.aborted) {
      try {
        await runOnce(signal);
        delay = 500;
      } catch (e) {
        if (signal.aborted) return;
        if (e.status === 401) {
          setStatus('denied');
          return;
        }
      }
      if (signal.aborted) return;
      setStatus('reconnecting');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  })();
}

export function stopLive() {
  controller?.abort();
  controller = null;
  lastEventId = null;
  setStatus('connecting');
}
