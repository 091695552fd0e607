// Scheduled tasks (#/schedules, #/schedules/ID): the schedules the reader
// may manage (GET /api/v1/schedules), a form to create one (POST; the
// server's 400 names its field, and the words go next to that field),
// pause / unpause (POST …/{id}/pause|unpause) and a schedule's runs (GET
// …/{id}/runs: started with its session, missed, skipped_busy, refused,
// failed). Each of these is the policy's `schedule.manage` decision.
import { h, show, when } from '../dom.js';
import { api } from '../api.js';

const FIELDS = ['cron', 'timezone', 'workspace', 'task', 'approve'];
const OUTCOME_WORDS = {
  started: 'Started',
  missed: 'Missed (the server was down)',
  skipped_busy: 'Skipped (the previous run was still going)',
  refused: 'Refused by policy',
  failed: 'Failed',
};

function field(name, label, input, hint) {
  const problem = h('p', { class: 'field-problem', role: 'alert', id: `sch-${name}-problem`, 'data-field-problem': name });
  input.setAttribute('aria-describedby', `sch-${name}-problem`);
  return { name, input, problem, el: [h('label', { for: input.id }, label), hint ? h('p', { class: 'hint' }, hint) : null, input, problem] };
}

function createForm(onCreated) {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const f = {
    cron: field('cron', 'When (cron)', h('input', { id: 'sch-cron', name: 'cron', required: true, value: '0 7 * * 1-5' }), 'minute hour day-of-month month day-of-week, e.g. 0 7 * * 1-5 is 07:00 on weekdays'),
    timezone: field('timezone', 'Time zone', h('input', { id: 'sch-timezone', name: 'timezone', value: zone })),
    workspace: field('workspace', 'Workspace', h('select', { id: 'sch-workspace', name: 'workspace', required: true })),
    task: field('task', 'Task', h('textarea', { id: 'sch-task', name: 'task', rows: 3, required: true })),
    approve: field(
      'approve',
      'When a step needs approval',
      h(
        'select',
        { id: 'sch-approve', name: 'approve' },
        h('option', { value: 'queue' }, 'Ask in the approvals inbox (refused at its deadline)'),
        h('option', { value: 'deny' }, 'Refuse it at once'),
      ),
    ),
  };
  const problem = h('p', { class: 'problem', role: 'alert' });
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'sch-new-title', novalidate: true },
    h('h2', { id: 'sch-new-title' }, 'New schedule'),
    FIELDS.flatMap((k) => f[k].el),
    h('button', { type: 'submit' }, 'Create'),
    problem,
  );
  api('GET', '/api/v1/workspaces')
    .then(({ workspaces }) => show(f.workspace.input, workspaces.map((w) => h('option', { value: w.name }, w.name))))
    .catch(() => {});
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    FIELDS.forEach((k) => show(f[k].problem));
    show(problem);
    const body = {
      cron: f.cron.input.value,
      workspace: f.workspace.input.value,
      task: f.task.input.value,
      approve: f.approve.input.value,
    };
    if (f.timezone.input.value.trim()) body.timezone = f.timezone.input.value.trim();
    try {
      const s = await api('POST', '/api/v1/schedules', body);
      f.task.input.value = '';
      onCreated(s);
    } catch (err) {
      // "cron: …" — the server names the field; the words go next to it.
      const m = /^([a-z_]+): (.*)$/s.exec(err.message);
      if (err.status === 400 && m && f[m[1]]) {
        show(f[m[1]].problem, m[2]);
        f[m[1]].input.setAttribute('aria-invalid', 'true');
        f[m[1]].input.focus();
      } else {
        show(problem, `Not created: ${err.message}`);
      }
    }
  });
  return form;
}

function runsTable(runs) {
  if (!runs.length) return h('p', { class: 'hint' }, 'No run has been due yet.');
  const head = h('tr', {}, ['Due', 'Dealt with', 'What happened', 'Session', 'Detail', 'Log entry'].map((c) => h('th', { scope: 'col' }, c)));
  const rows = runs.map((r) =>
    h(
      'tr',
      { 'data-run-outcome': r.outcome },
      h('td', {}, when(r.due)),
      h('td', {}, when(r.at)),
      h('td', {}, OUTCOME_WORDS[r.outcome] || r.outcome),
      h('td', {}, r.session ? h('a', { href: `#/session/${encodeURIComponent(r.session)}` }, r.session) : ''),
      h('td', {}, r.detail || ''),
      h('td', {}, r.audit_entry === undefined ? '' : String(r.audit_entry)),
    ),
  );
  return h('div', { class: 'scroll' }, h('table', { 'data-testid': 'runs' }, h('thead', {}, head), h('tbody', {}, rows)));
}

function scheduleCard(s, reload) {
  const runs = h('div', { class: 'runs' });
  const problem = h('p', { class: 'problem', role: 'alert' });
  const toggle = async (what, button) => {
    button.disabled = true;
    show(problem);
    try {
      await api('POST', `/api/v1/schedules/${encodeURIComponent(s.id)}/${what}`);
      reload();
    } catch (err) {
      show(problem, `Not ${what}d: ${err.message}`);
      button.disabled = false;
    }
  };
  const showRuns = async () => {
    try {
      const r = await api('GET', `/api/v1/schedules/${encodeURIComponent(s.id)}/runs`);
      show(runs, h('h4', {}, 'Runs'), runsTable(r.runs));
    } catch (err) {
      show(runs, h('p', { class: 'problem', role: 'alert' }, `Could not list its runs: ${err.message}`));
    }
  };
  return h(
    'article',
    { class: 'card schedule', 'data-schedule': s.id, 'aria-label': `Schedule ${s.id}` },
    h('h3', {}, h('code', {}, s.cron), ` (${s.timezone || 'UTC'}) in `, h('code', {}, s.workspace)),
    h('pre', { class: 'task' }, s.task),
    h(
      'p',
      {},
      `Owner ${s.owner}; asks: ${s.approve}; `,
      s.paused
        ? h('span', { class: 'paused', 'data-testid': 'paused' }, `paused by ${s.paused.by} since ${when(s.paused.at)}`)
        : `next run ${s.next_run ? when(s.next_run) : 'never'}`,
    ),
    h(
      'div',
      { class: 'buttons' },
      s.paused
        ? h('button', { type: 'button', onclick: (e) => toggle('unpause', e.currentTarget) }, 'Unpause')
        : h('button', { type: 'button', class: 'refuse', onclick: (e) => toggle('pause', e.currentTarget) }, 'Pause'),
      h('button', { type: 'button', class: 'secondary', onclick: showRuns }, 'Runs'),
    ),
    problem,
    runs,
  );
}

export function render(main, id) {
  const list = h('section', { 'aria-labelledby': 'sch-list-title', 'aria-busy': 'true' }, h('h2', { id: 'sch-list-title' }, 'Schedules'));
  let left = false;
  async function load() {
    const title = list.firstChild;
    try {
      const { schedules } = await api('GET', '/api/v1/schedules');
      if (left) return;
      const shown = id ? schedules.filter((s) => s.id === id) : schedules;
      show(
        list,
        title,
        shown.length ? shown.map((s) => scheduleCard(s, load)) : h('p', { 'data-testid': 'no-schedules' }, 'No schedules you may manage.'),
      );
    } catch (err) {
      show(list, title, h('p', { class: 'problem', role: 'alert' }, `Could not list schedules: ${err.message}`));
    }
    list.setAttribute('aria-busy', 'false');
  }
  show(main, h('h1', {}, 'Scheduled tasks'), list, id ? null : createForm(() => load()));
  load();
  return () => {
    left = true;
  };
}
