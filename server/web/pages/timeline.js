// A session's timeline as the log records it (GET
// /api/v1/audit/sessions/{id}/timeline): every entry — model requests, tool
// calls, file accesses, connections, decisions with their rule and layer,
// approvals, redactions — with its entry index and a download of its
// inclusion proof, paged by entry index (a 100,000-entry session is read a
// page at a time, never whole). Also: run a verification of the log and
// see what it verified, and the session's signed export with the verifier
// key and the offline command.
import { h, show, when } from '../dom.js';
import { api } from '../api.js';
import { download, verifyHelp } from './review_download.js';

const PAGE = 200;
const EXCERPT = 160;

function short(v) {
  const t = typeof v === 'string' ? v : JSON.stringify(v);
  return t.length > EXCERPT ? `${t.slice(0, EXCERPT)}… (${t.length - EXCERPT} more characters)` : t;
}

/** What an entry is about, in words: its target and its data. */
function what(leaf) {
  const parts = [];
  const t = leaf.target || {};
  if (t.model) parts.push(`model ${t.provider ? `${t.provider}/` : ''}${t.model}`);
  if (t.tool) parts.push(`tool ${t.tool}`);
  if (t.program) parts.push(`program ${t.program}`);
  if (t.argv) parts.push(`argv ${JSON.stringify(t.argv)}`);
  if (t.path) parts.push(`path ${t.path}`);
  if (t.host) parts.push(`host ${t.scheme ? `${t.scheme}://` : ''}${t.host}${t.port ? `:${t.port}` : ''}`);
  for (const [k, v] of Object.entries(t)) {
    if (!['model', 'provider', 'tool', 'program', 'argv', 'path', 'host', 'scheme', 'port'].includes(k)) parts.push(`${k} ${short(v)}`);
  }
  if (leaf.outcome) parts.push(`outcome ${short(leaf.outcome)}`);
  if (leaf.data) parts.push(short(leaf.data));
  return parts.join('; ');
}

function decision(d) {
  if (!d) return '';
  const rules = d.policies && d.policies.length ? d.policies.join(', ') : 'no rule (deny by default)';
  return h(
    'div',
    { class: `decision ${d.effect}`, 'data-testid': `decision-${d.effect}` },
    h('strong', {}, d.effect),
    ' — rule ',
    h('code', { 'data-testid': 'decision-rule' }, rules),
    d.layer ? h('span', {}, ' (layer ', h('code', { 'data-testid': 'decision-layer' }, d.layer), ')') : null,
    d.reason ? h('div', { class: 'hint' }, d.reason) : null,
  );
}

/** The whole leaf, as the log holds it, drawn only when opened. */
function whole(leaf) {
  const d = h('details', {}, h('summary', {}, 'Whole entry'));
  d.addEventListener('toggle', () => {
    if (d.open && d.childElementCount === 1) d.append(h('pre', {}, JSON.stringify(leaf, null, 2)));
  });
  return d;
}

function row(e) {
  const l = e.leaf;
  const proof = `/api/v1/audit/entries/${e.index}/proof?format=tlog`;
  return h(
    'tr',
    { 'data-index': String(e.index), 'data-kind': l.kind, class: l.decision && l.decision.effect === 'deny' ? 'denied' : null },
    h('th', { scope: 'row', class: 'num' }, String(e.index)),
    h('td', { title: l.ts }, when(l.ts)),
    h('td', {}, h('code', {}, l.kind)),
    h('td', {}, l.actor && l.actor.principal ? l.actor.principal : ''),
    h('td', { class: 'what' }, what(l), whole(l)),
    h('td', {}, decision(l.decision)),
    h('td', {}, h('a', { href: proof, download: `entry-${e.index}.tlog-proof`, 'aria-label': `Inclusion proof of entry ${e.index}` }, 'Proof')),
  );
}

export function render(main, id) {
  const status = h('p', { class: 'status', role: 'status', 'data-testid': 'timeline-state' }, 'Loading…');
  const body = h('tbody', {});
  const table = h(
    'table',
    { 'data-testid': 'log-timeline', 'aria-label': 'The session’s entries in the log' },
    h('thead', {}, h('tr', {}, ['Entry', 'Time', 'Kind', 'Who', 'What', 'Decision', 'Proof'].map((c) => h('th', { scope: 'col' }, c)))),
    body,
  );
  const btn = (label, testid) => h('button', { type: 'button', disabled: true, 'data-testid': testid }, label);
  const first = btn('First page', 'page-first');
  const prev = btn('Previous page', 'page-prev');
  const next = btn('Next page', 'page-next');
  const last = btn('Last page', 'page-last');
  const pager = h('nav', { class: 'buttons pager', 'aria-label': 'Pages of the timeline' }, first, prev, next, last);
  const help = h('div', {});
  const verifyOut = h('div', { 'aria-live': 'polite' });
  const exportOut = h('div', { 'aria-live': 'polite' });
  const verifyBtn = h('button', { type: 'button' }, 'Run a verification');
  const exportBtn = h('button', { type: 'button' }, 'Download the signed export');
  show(
    main,
    h('div', { class: 'session-head' }, h('h1', {}, 'Timeline of ', h('code', {}, id)), h('a', { href: `#/session/${encodeURIComponent(id)}` }, 'Live view')),
    status,
    pager,
    h('div', { class: 'scroll' }, table),
    h('section', { class: 'card', 'aria-labelledby': 'verify-title' }, h('h2', { id: 'verify-title' }, 'Verification'), verifyBtn, verifyOut),
    h('section', { class: 'card', 'aria-labelledby': 'export-title' }, h('h2', { id: 'export-title' }, 'Signed export'), exportBtn, exportOut, help),
  );

  let cursor = { from: 0 };
  let seq = 0; // only the newest request draws (a slow page never overwrites a later one)
  async function load(c) {
    const mine = ++seq;
    cursor = c;
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (c.before !== undefined) q.set('before', String(c.before));
    else q.set('from', String(c.from));
    status.textContent = 'Loading…';
    try {
      const p = await api('GET', `/api/v1/audit/sessions/${encodeURIComponent(id)}/timeline?${q}`);
      if (mine !== seq) return;
      body.replaceChildren(...p.entries.map(row));
      const lo = p.entries.length ? p.entries[0].index : null;
      const hi = p.entries.length ? p.entries[p.entries.length - 1].index : null;
      status.textContent = p.entries.length
        ? `${p.entries.length} of this session’s ${p.total} entries: log index ${lo} to ${hi} (the session spans ${p.first} to ${p.last}).`
        : 'The log has no entries of this session.';
      first.disabled = prev.disabled = p.prev === null;
      next.disabled = last.disabled = p.next === null;
      first.onclick = () => load({ from: 0 });
      prev.onclick = () => load({ before: p.prev });
      next.onclick = () => load({ from: p.next });
      last.onclick = () => load({ before: p.last + 1 });
      if (!help.firstChild) show(help, verifyHelp(p.verifier, p.command));
    } catch (err) {
      if (mine !== seq) return;
      status.textContent = '';
      body.replaceChildren();
      show(verifyOut);
      status.after(h('p', { class: 'problem', role: 'alert', 'data-testid': 'timeline-problem' }, `Could not read the timeline: ${err.message}`));
    }
  }

  verifyBtn.addEventListener('click', async () => {
    verifyBtn.disabled = true;
    show(verifyOut, h('p', { role: 'status' }, 'Verifying every entry, checkpoint and session chain…'));
    try {
      const v = await api('GET', `/api/v1/audit/sessions/${encodeURIComponent(id)}/verify`);
      if (!v.verified) {
        show(verifyOut, h('p', { class: 'problem', role: 'alert', 'data-testid': 'verify-failed' }, `Not verified: ${v.failure}`));
      } else {
        const cp = v.checkpoint || {};
        const signers = (cp.signers || []).map((s) => `${s.name} (${s.role})`);
        const witnesses = (cp.signers || []).filter((s) => s.role === 'witness');
        show(
          verifyOut,
          h('p', { class: 'verified', role: 'status', 'data-testid': 'verify-ok' }, `Verified: ${v.entries} entries of log ${v.origin}, ${v.checkpoints} signed checkpoints; this session has ${v.session.entries} entries.`),
          h(
            'dl',
            { class: 'facts' },
            h('dt', {}, 'Newest checkpoint'),
            h('dd', { 'data-testid': 'checkpoint-size' }, `size ${cp.size}`),
            h('dt', {}, 'Root'),
            h('dd', {}, h('code', { 'data-testid': 'checkpoint-root' }, cp.root || v.root)),
            h('dt', {}, 'Signed by'),
            h('dd', {}, signers.join(', ')),
            h('dt', {}, 'Witnesses'),
            h('dd', { 'data-testid': 'witnesses' }, witnesses.length ? witnesses.map((s) => s.name).join(', ') : 'none cosigned this checkpoint'),
          ),
        );
      }
    } catch (err) {
      show(verifyOut, h('p', { class: 'problem', role: 'alert' }, `Could not verify: ${err.message}`));
    }
    verifyBtn.disabled = false;
  });
  exportBtn.addEventListener('click', () => download(`/api/v1/audit/sessions/${encodeURIComponent(id)}/export`, exportOut));

  load(cursor);
  // The table needs the width of the screen; other pages keep the column.
  main.classList.add('wide');
  return () => main.classList.remove('wide');
}
