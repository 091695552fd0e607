// A session's live events (GET /api/v1/sessions/{id}/events): each has a
// number, 1, 2, 3, … in the session. After a dropped connection the stream
// is opened again from the last number seen (`?after=N`, what
// Last-Event-ID does), so nothing is missed; an event whose number was
// already seen is dropped, so nothing shows twice; a number that skips
// ahead means something was missed, and the stream is reopened from the
// last one seen.

/**
 * Follow session `id`: `onEvent(event, n)` once per event in order,
 * `onState('live' | 'reconnecting' | 'ended')`; from event number `after`
 * on (a continued session's page follows on from what it shows). Returns
 * `{close(), last(), ended()}`.
 */
export function follow(id, onEvent, onState, after = 0) {
  let last = after;
  let ended = false;
  let es = null;
  let closed = false;
  let wait = 500;
  let timer = null;
  const url = () => `/api/v1/sessions/${encodeURIComponent(id)}/events?after=${last}`;
  const reopen = (after) => {
    if (es) es.close();
    if (closed) return;
    onState('reconnecting');
    timer = setTimeout(open, after);
  };
  function open() {
    es = new EventSource(url());
    es.onopen = () => onState('live');
    es.onmessage = (m) => {
      const n = Number(m.lastEventId);
      if (!Number.isInteger(n) || n <= last) return;
      if (n !== last + 1) {
        reopen(0);
        return;
      }
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch {
        return;
      }
      last = n;
      wait = 500;
      onEvent(ev, n);
      if (ev.event === 'end') {
        closed = true;
        ended = true;
        es.close();
        window.removeEventListener('offline', offline);
        window.removeEventListener('online', online);
        onState('ended');
      }
    };
    es.onerror = () => {
      reopen(wait);
      wait = Math.min(wait * 2, 10000);
    };
  }
  // A connection can die silently when a device changes networks: when the
  // browser says it is offline, close; when it is back, resume at once.
  const offline = () => {
    clearTimeout(timer);
    if (es) es.close();
    if (!closed) onState('reconnecting');
  };
  const online = () => {
    if (closed) return;
    clearTimeout(timer);
    wait = 500;
    open();
  };
  window.addEventListener('offline', offline);
  window.addEventListener('online', online);
  open();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      if (es) es.close();
      window.removeEventListener('offline', offline);
      window.removeEventListener('online', online);
    },
    last: () => last,
    ended: () => ended,
  };
}
