// A session's live events (GET /api/v1/sessions/{id}/events): each has a
// number, 1, 2, 3, … in the session. After a dropped connection the stream
// is opened again from the last number seen (`?after=N`, what
// Last-Event-ID does), so nothing is missed; an event whose number was
// already seen is dropped, so nothing shows twice; a number that skips
// ahead means something was missed, and the stream is reopened from the
// last one seen.

/** Events handed to the page per frame. */
const BATCH = 200;

/**
 * Follow session `id`: `onEvent(event, n)` once per event in order,
 * `onState('live' | 'reconnecting' | 'ended')`; from event number `after`
 * on (a continued session's page follows on from what it shows). Returns
 * `{close(), last(), ended()}`.
 */
export function follow(id, onEvent, onState, after = 0) {
  let last = after;
  // Events are handed to the page in batches, one per frame: a long
  // session's replay (thousands of events arriving at once) then paints its
  // first steps at once instead of after the whole replay.
  const pending = [];
  let scheduled = false;
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    // A hidden tab gets no animation frames; it still keeps up.
    if (document.hidden) setTimeout(flush, 0);
    else requestAnimationFrame(flush);
  };
  function flush() {
    scheduled = false;
    for (const [ev, n] of pending.splice(0, BATCH)) {
      onEvent(ev, n);
      if (ev.event === 'end') {
        ended = true;
        onState('ended');
      }
    }
    if (pending.length) schedule();
  }
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
      pending.push([ev, n]);
      if (ev.event === 'end') {
        closed = true;
        es.close();
        window.removeEventListener('offline', offline);
        window.removeEventListener('online', online);
      }
      schedule();
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
      // What was received is still handed over, before any later follower's.
      for (const [ev, n] of pending.splice(0)) onEvent(ev, n);
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
