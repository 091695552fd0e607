// The admin page (#/admin): accounts with their teams and roles, the
// workspaces and their open sessions, the policy bundle in force (its
// digest, files and contents, the result of its tests) and the server's
// health — all read-only, from GET /api/v1/admin/{users,workspaces,policy,
// health}. Each read is the policy's `admin` decision, recorded; whoever
// the policy refuses gets a 403 and this page says so.
import { h, show, when } from '../dom.js';
import { api } from '../api.js';

function table(cols, rows, testid) {
  return h(
    'div',
    { class: 'scroll' },
    h(
      'table',
      { 'data-testid': testid },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))),
    ),
  );
}

function bytes(n) {
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function sessionLink(s) {
  return h('a', { href: `#/session/${encodeURIComponent(s.id)}` }, s.id);
}

function users(u) {
  return [
    h('h2', { id: 'admin-users' }, 'Accounts'),
    h('p', { class: 'hint' }, 'Accounts are added on the server’s host (stele user add); the gate takes teams from the policy’s members file.'),
    table(
      ['Name', 'Teams', 'Role', 'Password set', 'Teams in the members file'],
      u.users.map((x) => [x.name, x.teams.join(', '), x.role, x.password ? 'yes' : 'no', x.members_file_teams.join(', ') || '—']),
      'admin-users',
    ),
  ];
}

function workspaces(w) {
  return [
    h('h2', { id: 'admin-workspaces' }, 'Workspaces'),
    table(
      ['Name', 'Folder', 'Teams', 'Open sessions'],
      w.workspaces.map((x) => [
        h('a', { href: `#/files/${encodeURIComponent(x.name)}` }, x.name),
        h('code', {}, x.path),
        x.teams.join(', '),
        x.open_sessions.length ? x.open_sessions.map((s) => h('span', {}, sessionLink(s), ` (${s.state}) `)) : '—',
      ]),
      'admin-workspaces',
    ),
  ];
}

function policy(p) {
  const t = p.tests;
  const status = t.error
    ? h('p', { class: 'problem', 'data-testid': 'policy-tests' }, `Its tests could not run: ${t.error}`)
    : t.passed + t.failed === 0
      ? h('p', { class: 'problem', 'data-testid': 'policy-tests' }, 'stele policy test: the bundle has no tests (tests/*.json)')
    : h(
        'p',
        { class: t.failed ? 'problem' : 'ok', 'data-testid': 'policy-tests' },
        `stele policy test: ${t.passed} passed, ${t.failed} failed`,
      );
  return [
    h('h2', { id: 'admin-policy' }, 'Policy bundle in force'),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Digest'),
      h('dd', {}, h('code', { 'data-testid': 'policy-digest' }, p.digest)),
      h('dt', {}, 'Folder'),
      h('dd', {}, h('code', {}, p.root)),
      h('dt', {}, 'Policies'),
      h('dd', {}, String(p.policies)),
      h('dt', {}, 'Teams'),
      h('dd', {}, p.teams.join(', ')),
    ),
    status,
    t.failures.length ? h('ul', { 'data-testid': 'policy-failures' }, t.failures.map((f) => h('li', {}, `${f.name} (${f.location}): ${f.why}`))) : null,
    h('p', { class: 'hint' }, 'Read-only: the files as they are on disk now; a change takes effect when the server restarts.'),
    h(
      'div',
      { 'data-testid': 'policy-files' },
      p.files.map((f) =>
        h(
          'details',
          { class: 'policy-file', 'data-file': f.path },
          h('summary', {}, h('code', {}, f.path), ` (${f.bytes} bytes)`),
          h('pre', {}, f.content),
          f.cut ? h('p', { class: 'hint' }, 'Cut at 256 KB.') : null,
        ),
      ),
    ),
  ];
}

function health(x) {
  return [
    h('h2', { id: 'admin-health' }, 'Server health'),
    h(
      'dl',
      { class: 'facts', 'data-testid': 'admin-health' },
      h('dt', {}, 'Ready'),
      h('dd', { class: x.ready ? 'ok' : 'problem' }, x.ready ? 'yes' : `no: ${x.problem}`),
      h('dt', {}, 'Audit log'),
      h('dd', {}, `${x.log_entries} entries, ${bytes(x.log_bytes)} (`, h('code', {}, x.log_path), ')'),
      h('dt', {}, 'Running now'),
      h('dd', {}, String(x.running)),
      h('dt', {}, 'Open sessions'),
      h('dd', {}, x.open_sessions.length ? x.open_sessions.map((s) => h('span', {}, sessionLink(s), ` (${s.state}, ${s.owner}, since ${when(s.created)}) `)) : 'none'),
      h('dt', {}, 'Version'),
      h('dd', {}, x.version),
    ),
  ];
}

export function render(main) {
  const body = h('div', { 'aria-busy': 'true' }, h('p', {}, 'Loading…'));
  show(main, h('h1', {}, 'Administration'), body);
  let left = false;
  Promise.all(['users', 'workspaces', 'policy', 'health'].map((k) => api('GET', `/api/v1/admin/${k}`)))
    .then(([u, w, p, x]) => {
      if (left) return;
      show(
        body,
        h('section', { 'aria-labelledby': 'admin-health' }, health(x)),
        h('section', { 'aria-labelledby': 'admin-users' }, users(u)),
        h('section', { 'aria-labelledby': 'admin-workspaces' }, workspaces(w)),
        h('section', { 'aria-labelledby': 'admin-policy' }, policy(p)),
      );
    })
    .catch((err) => {
      if (left) return;
      show(
        body,
        err.status === 403
          ? h(
              'div',
              { class: 'denial', role: 'alert', 'data-testid': 'admin-refused' },
              h('p', {}, h('strong', {}, 'Not for you: '), 'the administration pages are for administrators, and the policy refuses them to you (403).'),
              h('p', {}, `Why: ${err.message}`),
              err.problem && err.problem.audit_entry !== undefined ? h('p', { class: 'hint' }, `The refusal is log entry ${err.problem.audit_entry}.`) : null,
            )
          : h('p', { class: 'problem', role: 'alert' }, `Could not load: ${err.message}`),
      );
    })
    .finally(() => body.setAttribute('aria-busy', 'false'));
  return () => {
    left = true;
  };
}
