// The reviewer's desk: the sessions the reader may read (GET
// /api/v1/audit/sessions) with the filters a reviewer asks — user, start
// date, outcome, denials, approvals — each with its facts from the log,
// paged; and the signed export of a time range (GET /api/v1/audit/export),
// with the verifier key and the offline command. A session opens its
// timeline (pages/timeline.js).
import { h, show, when } from '../dom.js';
import { api } from '../api.js';
import { download } from './review_download.js';

const PAGE = 50;

function field(id, label, input) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), input);
}

function choice(id, options) {
  return h('select', { id, name: id }, options.map(([v, t]) => h('option', { value: v }, t)));
}

export function render(main) {
  const user = h('input', { id: 'f-user', name: 'user', autocomplete: 'off' });
  const since = h('input', { id: 'f-since', name: 'since', type: 'date' });
  const until = h('input', { id: 'f-until', name: 'until', type: 'date' });
  const outcome = choice('f-outcome', [
    ['', 'Any'],
    ['ended', 'Ended'],
    ['failed', 'Failed'],
    ['paused', 'Paused'],
    ['running', 'Running'],
    ['waiting_approval', 'Waiting for approval'],
  ]);
  const yesNo = [
    ['', 'Any'],
    ['yes', 'Yes'],
    ['no', 'No'],
  ];
  const denials = choice('f-denials', yesNo);
  const approvals = choice('f-approvals', yesNo);
  const filters = h(
    'form',
    { class: 'card filters', 'aria-labelledby': 'filters-title' },
    h('h2', { id: 'filters-title' }, 'Filter'),
    h(
      'div',
      { class: 'fields' },
      field('f-user', 'User', user),
      field('f-since', 'Started from', since),
      field('f-until', 'Started until', until),
      field('f-outcome', 'Outcome', outcome),
      field('f-denials', 'Has denials', denials),
      field('f-approvals', 'Has approvals', approvals),
    ),
    h('button', { type: 'submit' }, 'Apply filters'),
  );
  const list = h('section', { 'aria-labelledby': 'review-list-title', 'aria-busy': 'true' });
  const query = (from) => {
    const q = new URLSearchParams();
    for (const [k, el] of [
      ['user', user],
      ['since', since],
      ['until', until],
      ['outcome', outcome],
      ['denials', denials],
      ['approvals', approvals],
    ]) {
      if (el.value) q.set(k, el.value);
    }
    q.set('limit', String(PAGE));
    if (from) q.set('from', String(from));
    return q;
  };
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    load(list, query(0));
  });
  show(main, h('h1', {}, 'Review'), filters, list, rangeExport());
  load(list, query(0));
}

async function load(list, q) {
  const title = h('h2', { id: 'review-list-title' }, 'Sessions');
  list.setAttribute('aria-busy', 'true');
  try {
    const { sessions, next } = await api('GET', `/api/v1/audit/sessions?${q}`);
    if (!sessions.length) {
      show(list, title, h('p', { role: 'status', 'data-testid': 'no-review-sessions' }, 'No sessions you may read match.'));
    } else {
      const rows = sessions.map((s) =>
        h(
          'tr',
          { 'data-session': s.id },
          h('td', {}, h('a', { href: `#/review/${encodeURIComponent(s.id)}` }, s.id)),
          h('td', {}, s.owner),
          h('td', {}, s.workspace),
          h('td', {}, s.state),
          h('td', {}, when(s.created)),
          h('td', { class: 'num' }, String(s.entries)),
          h('td', { class: s.denials ? 'num deny' : 'num', 'data-testid': 'denials' }, String(s.denials)),
          h('td', { class: 'num', 'data-testid': 'approvals' }, String(s.approvals)),
        ),
      );
      const head = h(
        'tr',
        {},
        ['Session', 'Owner', 'Workspace', 'Outcome', 'Started', 'Entries', 'Denials', 'Approvals'].map((c) => h('th', { scope: 'col' }, c)),
      );
      const more =
        next !== null && next !== undefined
          ? h('button', { type: 'button', onclick: () => { const q2 = new URLSearchParams(q); q2.set('from', String(next)); load(list, q2); } }, 'Next page')
          : null;
      show(
        list,
        title,
        h('p', { role: 'status', class: 'hint' }, `${sessions.length} session(s) on this page.`),
        h('div', { class: 'scroll' }, h('table', { 'data-testid': 'review-sessions' }, h('thead', {}, head), h('tbody', {}, rows))),
        more,
      );
    }
  } catch (err) {
    show(list, title, h('p', { class: 'problem', role: 'alert' }, `Could not list sessions: ${err.message}`));
  }
  list.setAttribute('aria-busy', 'false');
}

/** The signed export of a time range, its key and the offline command. */
function rangeExport() {
  const since = h('input', { id: 'x-since', name: 'since', type: 'date', required: true });
  const until = h('input', { id: 'x-until', name: 'until', type: 'date', required: true });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'range-title' },
    h('h2', { id: 'range-title' }, 'Export a time range'),
    h('p', { class: 'hint' }, 'Every entry of the range, every team: the log’s readers (admins) may export it.'),
    h('div', { class: 'fields' }, field('x-since', 'From (inclusive)', since), field('x-until', 'Until (inclusive)', until)),
    h('button', { type: 'submit' }, 'Download the signed export'),
    out,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ since: since.value, until: until.value });
    await download(`/api/v1/audit/export?${q}`, out);
  });
  return form;
}
