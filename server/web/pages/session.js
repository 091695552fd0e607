// The live session page: the model's text, each step as a card (the tool,
// its arguments, the decision with its rule and layer, the output), a
// denial in plain words, an approval inline when the reader may answer
// it, and the end. Events come from events.js (resumes without gaps or
// duplicates).
import { h, show, when } from '../dom.js';
import { api } from '../api.js';
import { follow } from '../events.js';
import { approvalCard } from './approvals.js';
import { downloadLink } from './files.js';

const STATE_POLL_MS = 2000;
const STATE_WORDS = {
  starting: 'Starting',
  running: 'Running',
  waiting_approval: 'Waiting for an approval',
  paused: 'Paused — it can be continued',
  ended: 'Ended',
  failed: 'Failed',
};

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
  // Stop / Continue and where the session stands, kept current by polling
  // its summary (another person or device may stop or continue it).
  const where = h('p', { class: 'status', role: 'status', 'data-testid': 'session-state' });
  const controlProblem = h('p', { class: 'problem', role: 'alert' });
  const controls = h('div', { class: 'controls buttons', 'data-testid': 'controls' });
  const outputs = h('section', { class: 'outputs', 'aria-labelledby': 'outputs-title', 'data-testid': 'outputs' });
  show(main, head, h('div', { class: 'card control-bar' }, where, controls, controlProblem), timeline, outputs);
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
  const sid = encodeURIComponent(id);
  let poll = null;
  let workspace = null;
  let shownState = null;
  let pausedSeen = false;

  const startFollowing = () => {
    const after = follower ? follower.last() : 0;
    if (follower) follower.close();
    follower = follow(id, onEvent, onStream, after);
  };
  function onStream(s) {
    show(state, states[s] || s);
    if (s === 'ended') refresh();
  }

  async function act(what, button) {
    button.disabled = true;
    show(controlProblem);
    try {
      await api('POST', `/api/v1/sessions/${sid}/${what}`);
      if (what === 'resume' && !left) {
        pausedSeen = false;
        startFollowing();
      }
    } catch (err) {
      show(controlProblem, `${what === 'stop' ? 'Not stopped' : 'Not continued'}: ${err.message}`);
    }
    refresh();
  }

  function drawControls(s) {
    const running = ['starting', 'running', 'waiting_approval'].includes(s.state);
    show(where, `State: ${STATE_WORDS[s.state] || s.state}`, s.detail ? ` (${s.detail})` : '');
    where.dataset.state = s.state;
    if (s.state === shownState) return;
    shownState = s.state;
    show(
      controls,
      running
        ? h('button', { type: 'button', class: 'refuse', 'data-testid': 'stop', onclick: (e) => act('stop', e.currentTarget) }, 'Stop')
        : null,
      s.state === 'paused'
        ? h('button', { type: 'button', 'data-testid': 'continue', onclick: (e) => act('resume', e.currentTarget) }, 'Continue')
        : null,
    );
  }

  async function refresh() {
    let s;
    try {
      s = await api('GET', `/api/v1/sessions/${sid}`);
    } catch {
      return;
    }
    if (left) return;
    workspace = s.workspace;
    drawControls(s);
    // Continued elsewhere (another device): once its stream ended and it was
    // seen paused, any other state means it went on (it may even have ended
    // again between two looks); follow on from what is shown. (Right after
    // an end the store may still say running: that is not a continuation.)
    const streamOver = follower && follower.ended();
    if (s.state === 'paused' && streamOver) pausedSeen = true;
    if (s.state !== 'paused' && streamOver && pausedSeen) {
      pausedSeen = false;
      startFollowing();
    }
    if (s.state === 'ended' || s.state === 'paused' || s.state === 'failed') loadOutputs();
  }

  async function loadOutputs() {
    try {
      const o = await api('GET', `/api/v1/sessions/${sid}/outputs`);
      if (left) return;
      const ws = o.workspace || workspace;
      show(
        outputs,
        h('h2', { id: 'outputs-title' }, 'Files this task wrote'),
        o.files.length
          ? h(
              'ul',
              { 'data-testid': 'output-files' },
              o.files.map((f) =>
                h(
                  'li',
                  { 'data-output': f.path },
                  downloadLink(ws, f.path),
                  h('span', { class: 'hint' }, ` — log entry ${f.result_entry}${f.bytes !== undefined ? `, ${f.bytes} bytes` : ''}`),
                ),
              ),
            )
          : h('p', { class: 'hint' }, 'Its log records no file written.'),
      );
    } catch (err) {
      show(outputs, h('p', { class: 'problem', role: 'alert' }, `Could not list its files: ${err.message}`));
    }
  }

  api('GET', `/api/v1/sessions/${sid}`)
    .then((s) => {
      if (left) return;
      workspace = s.workspace;
      drawControls(s);
      startFollowing();
      poll = setInterval(refresh, STATE_POLL_MS);
      if (s.state === 'ended' || s.state === 'paused' || s.state === 'failed') loadOutputs();
    })
    .catch((err) => {
      show(state);
      show(timeline, h('li', { class: 'problem', role: 'alert', 'data-testid': 'refused-view' }, `You may not see this session: ${err.message}`));
    });
  return () => {
    left = true;
    clearInterval(poll);
    if (follower) follower.close();
  };
}
