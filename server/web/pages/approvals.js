// The approvals inbox: the pending asks the reader may answer
// (GET /api/v1/approvals), each with exactly the text the approval entry
// hashes, the requester, the session and the deadline; an answer echoes
// that text's shown_sha256 (POST /api/v1/approvals/{id}). Polled, so it
// updates while open.
import { h, show, when } from '../dom.js';
import { api } from '../api.js';

const POLL_MS = 2000;

/** One approval with its answer buttons; `done(outcome)` after a recorded answer. */
export function approvalCard(a, done) {
  const ticket = h('input', { id: `ticket-${a.approval_id}`, name: 'ticket', maxlength: 128 });
  const result = h('p', { class: 'result', role: 'status' });
  const buttons = [];
  const answer = async (outcome) => {
    buttons.forEach((b) => (b.disabled = true));
    show(result, outcome === 'granted' ? 'Approving…' : 'Refusing…');
    const body = { shown_sha256: a.shown_sha256, outcome };
    if (ticket.value.trim()) body.ticket = ticket.value.trim();
    try {
      const settled = await api('POST', `/api/v1/approvals/${encodeURIComponent(a.approval_id)}`, body);
      show(result, `${settled.state === 'granted' ? 'Approved' : 'Refused'} by ${settled.approver}.`);
      if (done) done(outcome);
    } catch (err) {
      show(result, `Not recorded: ${err.message}`);
      buttons.forEach((b) => (b.disabled = false));
    }
  };
  buttons.push(
    h('button', { type: 'button', class: 'approve', onclick: () => answer('granted') }, 'Approve'),
    h('button', { type: 'button', class: 'refuse', onclick: () => answer('refused') }, 'Refuse'),
  );
  return h(
    'article',
    { class: 'card approval', 'data-approval': a.approval_id, 'aria-label': `Approval asked by ${a.requester}` },
    h('h3', {}, 'Approval asked'),
    h('p', { class: 'hint' }, 'Exactly this text is recorded with your answer:'),
    h('pre', { class: 'shown', 'data-testid': 'shown' }, a.shown),
    h(
      'dl',
      {},
      h('dt', {}, 'Requester'),
      h('dd', { 'data-testid': 'requester' }, a.requester),
      h('dt', {}, 'Session'),
      h('dd', {}, h('a', { href: `#/session/${encodeURIComponent(a.session)}` }, a.session)),
      h('dt', {}, 'Deadline'),
      h('dd', { 'data-testid': 'deadline' }, when(a.deadline)),
    ),
    h('label', { for: `ticket-${a.approval_id}` }, 'Reference (optional, e.g. a change ticket)'),
    ticket,
    h('div', { class: 'buttons' }, buttons),
    result,
  );
}

export function render(main) {
  const status = h('p', { class: 'status', role: 'status' });
  const list = h('div', { class: 'approvals' });
  show(main, h('h1', {}, 'Approvals'), status, list);
  const cards = new Map();
  let stopped = false;
  let timer = null;
  async function poll() {
    try {
      const { approvals } = await api('GET', '/api/v1/approvals');
      const ids = new Set(approvals.map((a) => a.approval_id));
      // Keep the cards still pending (and focus and typing in them); add new ones.
      for (const [id, card] of cards) {
        if (!ids.has(id) && !card.answered) {
          card.el.remove();
          cards.delete(id);
        }
      }
      for (const a of approvals) {
        if (!cards.has(a.approval_id)) {
          const entry = { answered: false };
          entry.el = approvalCard(a, () => (entry.answered = true));
          cards.set(a.approval_id, entry);
          list.append(entry.el);
        }
      }
      const open = approvals.length;
      show(status, open ? `${open} waiting for an answer.` : 'Nothing waits for your answer.');
    } catch (err) {
      show(status, `Could not load approvals: ${err.message}`);
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
