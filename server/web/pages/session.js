// The live session page: the model's text, each step as a card (the tool,
// its arguments, the decision with its rule and layer, the output), a
// denial in plain words, an approval inline when the reader may answer
// it, and the end. Events come from events.js (resumes without gaps or
// duplicates).
import { h, show, when } from '../dom.js';
import { api } from '../api.js';
import { follow } from '../events.js';
import { approvalCard } from './approvals.js';

const EXCERPT = 2000;

function excerpt(text) {
  const t = String(text);
  return t.length > EXCERPT ? `${t.slice(0, EXCERPT)}… (${t.length - EXCERPT} more characters)` : t;
}

function denial(d) {
  const rules = d.policies && d.policies.length ? d.policies.join(', ') : 'no rule permits it (deny by default)';
  return h(
    'div',
    { class: 'denial', role: 'note', 'data-testid': 'denial' },
    h('p', {}, h('strong', {}, 'Refused: '), `stele did not let the agent do this (${d.subject}).`),
    d.reason ? h('p', {}, `Why: ${d.reason}`) : null,
    h('p', {}, 'Rule: ', h('code', { 'data-testid': 'rule' }, rules), d.layer ? ` (layer ${d.layer})` : ''),
    d.audit_entry !== undefined && d.audit_entry !== null ? h('p', { class: 'hint' }, `Recorded as log entry ${d.audit_entry}.`) : null,
  );
}

export function render(main, id) {
  const state = h('p', { class: 'status', role: 'status', 'data-testid': 'stream-state' }, 'Connecting…');
  const head = h('div', { class: 'session-head' }, h('h1', {}, 'Session ', h('code', {}, id)), state);
  const timeline = h('ol', { class: 'timeline', 'aria-label': 'What happened', 'data-testid': 'timeline' });
  show(main, head, timeline);
  let follower = null;
  let left = false;
  let step = null; // the current step's list item
  const calls = []; // cards of tool calls waiting for their result
  const lastCard = new Map(); // tool name -> its latest card

  const add = (n, el) => {
    el.dataset.n = String(n);
    (step || timeline).append(el);
    return el;
  };
  // Into the card of the call it is about (`tool`, else the open call), else the step.
  const addToCall = (n, el, tool) => {
    const open = calls.length ? calls[calls.length - 1].card : null;
    const card = (tool && lastCard.get(tool)) || open;
    if (!card) return add(n, h('li', {}, el));
    el.dataset.n = String(n);
    card.append(el);
    return el;
  };
  const newStep = (n, label) => {
    step = h('ol', { class: 'step-items' });
    timeline.append(h('li', { class: 'step', 'data-n': String(n) }, h('h2', {}, label), step));
  };

  // Once answered (by anyone), the inline answer buttons are of no more use.
  const settleInline = () => timeline.querySelectorAll('.approval button').forEach((b) => (b.disabled = true));

  async function mayAnswer(approvalId) {
    try {
      const { approvals } = await api('GET', '/api/v1/approvals');
      return approvals.find((a) => a.approval_id === approvalId) || null;
    } catch {
      return null;
    }
  }

  function onEvent(ev, n) {
    switch (ev.event) {
      case 'start':
        timeline.append(
          h('li', { class: 'meta', 'data-n': String(n) }, `Started for ${ev.principal}; policy ${ev.policy.slice(0, 16)}`),
        );
        break;
      case 'step':
        newStep(n, `Step ${ev.n}`);
        break;
      case 'text':
        add(n, h('li', { class: 'model-text' }, h('pre', { 'data-testid': 'model-text' }, ev.text)));
        break;
      case 'tool_call': {
        const card = add(
          n,
          h(
            'li',
            { class: 'card tool', 'data-tool': ev.tool },
            h('h3', {}, 'Tool ', h('code', {}, ev.tool)),
            h('pre', { class: 'args', 'aria-label': 'Arguments' }, JSON.stringify(ev.input, null, 2)),
          ),
        );
        calls.push({ tool: ev.tool, card });
        lastCard.set(ev.tool, card);
        break;
      }
      case 'tool_result': {
        const i = calls.findIndex((c) => c.tool === ev.tool);
        const out = h(
          'div',
          { class: `result ${ev.status}`, 'data-n': String(n) },
          h('p', {}, ev.status === 'ok' ? 'Output' : 'Error'),
          h('pre', {}, excerpt(ev.text)),
        );
        if (i >= 0) calls.splice(i, 1)[0].card.append(out);
        else add(n, h('li', {}, out));
        break;
      }
      case 'decision':
        switch (ev.decision) {
          case 'deny':
            addToCall(n, h('div', {}, denial(ev)), ev.subject);
            break;
          case 'ask':
            addToCall(n, h('div', { class: 'ask' }, h('p', {}, 'Needs a person’s approval:'), h('pre', {}, ev.shown)));
            break;
          case 'granted':
            settleInline();
            addToCall(n, h('p', { class: 'granted', 'data-testid': 'granted' }, `Approved by ${ev.approver} (${ev.method}).`));
            break;
          case 'refused':
            settleInline();
            addToCall(n, h('p', { class: 'refused', 'data-testid': 'refused' }, `Refused by ${ev.approver} (${ev.method}).`));
            break;
          default:
            add(n, h('li', {}, `Decision: ${ev.decision}`));
        }
        break;
      case 'approval_requested': {
        const slot = addToCall(
          n,
          h(
            'div',
            { class: 'waiting', 'data-testid': 'approval-requested' },
            h('p', {}, `Waiting for approval (asked by ${ev.requester}, until ${when(ev.deadline)}).`),
          ),
        );
        mayAnswer(ev.approval_id).then((a) => {
          if (a && !left) slot.append(approvalCard(a));
        });
        break;
      }
      case 'retry':
        add(n, h('li', { class: 'hint' }, `Model request failed (${ev.reason}); attempt ${ev.attempt + 1} at ${when(ev.next_try_at)}.`));
        break;
      case 'stop':
        add(n, h('li', { class: 'hint' }, `The reply stopped (${ev.reason}); ${ev.action}.`));
        break;
      case 'end':
        step = null;
        timeline.append(
          h(
            'li',
            { class: `end ${ev.outcome}`, 'data-n': String(n), 'data-testid': 'end' },
            h('h2', {}, `Ended: ${ev.outcome}`),
            h('pre', {}, ev.detail),
            ev.resumable ? h('p', { class: 'hint' }, 'It can be continued.') : null,
          ),
        );
        break;
      default:
        add(n, h('li', { class: 'hint' }, `(${ev.event})`));
    }
  }

  const states = { live: 'Live', reconnecting: 'Reconnecting…', ended: 'Ended' };
  api('GET', `/api/v1/sessions/${encodeURIComponent(id)}`)
    .then(() => {
      if (left) return;
      follower = follow(id, onEvent, (s) => show(state, states[s] || s));
    })
    .catch((err) => {
      show(state);
      show(timeline, h('li', { class: 'problem', role: 'alert', 'data-testid': 'refused-view' }, `You may not see this session: ${err.message}`));
    });
  return () => {
    left = true;
    if (follower) follower.close();
  };
}
