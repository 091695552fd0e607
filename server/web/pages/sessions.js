// The sessions the reader may see (GET /api/v1/sessions) and a form to
// start a task on a workspace (POST /api/v1/sessions).
import { h, show, when } from '../dom.js';
import { api } from '../api.js';

export function render(main) {
  let loaded = Promise.resolve();
  // The workspaces the policy lets this person start a task on (GET
  // /api/v1/workspaces decides `session.start` for each): picked, not typed.
  const workspace = h('select', { id: 'start-workspace', name: 'workspace' });
  const task = h('textarea', { id: 'start-task', name: 'task', rows: 3, required: true });
  const problem = h('p', { class: 'problem', role: 'alert' });
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'start-title' },
    h('h2', { id: 'start-title' }, 'Start a task'),
    h('label', { for: 'start-workspace' }, 'Workspace'),
    workspace,
    h('label', { for: 'start-task' }, 'Task'),
    task,
    h('button', { type: 'submit' }, 'Start'),
    problem,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    show(problem);
    // A quick Start waits for the workspace list (the select is not
    // `required`, which would refuse the click while it is still empty).
    await loaded;
    if (!workspace.value) return;
    try {
      const started = await api('POST', '/api/v1/sessions', { workspace: workspace.value, task: task.value });
      location.hash = `#/session/${encodeURIComponent(started.id)}`;
    } catch (err) {
      show(problem, `Not started: ${err.message}`);
    }
  });
  const list = h('section', { 'aria-labelledby': 'list-title', 'aria-busy': 'true' }, h('h2', { id: 'list-title' }, 'Sessions'));
  show(main, h('h1', {}, 'Sessions'), form, list);
  loaded = workspaces(workspace, form, problem);
  load(list);
}

async function workspaces(select, form, problem) {
  try {
    const { workspaces: all } = await api('GET', '/api/v1/workspaces');
    show(select, ...all.map((w) => h('option', { value: w.name }, w.name)));
    if (!all.length) {
      form.querySelector('button[type=submit]').disabled = true;
      show(problem, 'No workspace you may start a task on: ask an administrator.');
    }
  } catch (err) {
    show(problem, `Could not list workspaces: ${err.message}`);
  }
}

async function load(list) {
  const title = list.firstChild;
  try {
    const { sessions } = await api('GET', '/api/v1/sessions');
    if (!sessions.length) {
      show(list, title, h('p', { 'data-testid': 'no-sessions' }, 'No sessions you may see.'));
    } else {
      const rows = sessions.map((s) =>
        h(
          'tr',
          { 'data-session': s.id },
          h('td', {}, h('a', { href: `#/session/${encodeURIComponent(s.id)}` }, s.id)),
          h('td', {}, s.owner),
          h('td', {}, s.workspace),
          h('td', {}, s.state),
          h('td', {}, s.detail || ''),
          h('td', {}, when(s.updated)),
        ),
      );
      const head = h('tr', {}, ['Session', 'Owner', 'Workspace', 'State', 'Detail', 'Updated'].map((c) => h('th', { scope: 'col' }, c)));
      show(list, title, h('div', { class: 'scroll' }, h('table', {}, h('thead', {}, head), h('tbody', {}, rows))));
    }
  } catch (err) {
    show(list, title, h('p', { class: 'problem', role: 'alert' }, `Could not list sessions: ${err.message}`));
  }
  list.setAttribute('aria-busy', 'false');
}
