// The app's entry: the navigation and the router. Pages are addressed by
// the fragment (#/sessions, #/session/ID, #/approvals, #/review, #/review/ID, #/login), so the
// server serves one page at `/`; each page's code is pages/<name>.js.
import { h, show } from './dom.js';
import { me, logout, whoami } from './api.js';
import * as loginPage from './pages/login.js';
import * as sessionsPage from './pages/sessions.js';
import * as sessionPage from './pages/session.js';
import * as approvalsPage from './pages/approvals.js';
import * as reviewPage from './pages/review.js';
import * as timelinePage from './pages/timeline.js';
import * as filesPage from './pages/files.js';
import * as schedulesPage from './pages/schedules.js';
import * as adminPage from './pages/admin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let leave = null;

function route() {
  const hash = location.hash || '#/sessions';
  const [, name, ...rest] = hash.split('/');
  const arg = rest.length ? decodeURIComponent(rest.join('/')) : null;
  switch (name) {
    case 'login':
      return [loginPage, null, 'login'];
    case 'session':
      return arg ? [sessionPage, arg, 'sessions'] : [sessionsPage, null, 'sessions'];
    case 'approvals':
      return [approvalsPage, null, 'approvals'];
    case 'review':
      return arg ? [timelinePage, arg, 'review'] : [reviewPage, null, 'review'];
    case 'files':
      return [filesPage, arg, 'files'];
    case 'schedules':
      return [schedulesPage, arg, 'schedules'];
    case 'admin':
      return [adminPage, arg, 'admin'];
    default:
      return [sessionsPage, null, 'sessions'];
  }
}

function drawNav(current) {
  const who = me();
  const link = (href, label, key) =>
    h('a', { href, 'aria-current': current === key ? 'page' : null }, label);
  if (current === 'login') {
    show(nav);
    return;
  }
  show(
    nav,
    link('#/sessions', 'Sessions', 'sessions'),
    link('#/approvals', 'Approvals', 'approvals'),
    link('#/review', 'Review', 'review'),
    link('#/files', 'Files', 'files'),
    link('#/schedules', 'Schedules', 'schedules'),
    who && who.role === 'admin' ? link('#/admin', 'Admin', 'admin') : null,
    who ? h('span', { class: 'who', 'data-testid': 'who' }, `${who.user} (${who.role})`) : null,
    h(
      'button',
      {
        type: 'button',
        class: 'link',
        onclick: async () => {
          await logout().catch(() => {});
          location.hash = '#/login';
        },
      },
      'Sign out',
    ),
  );
}

function render() {
  if (leave) {
    leave();
    leave = null;
  }
  const [page, arg, key] = route();
  drawNav(key);
  // Signed in by a redirect (OIDC, a login link) or in a new tab: ask who.
  if (!me() && key !== 'login') {
    whoami()
      .then(() => drawNav(key))
      .catch(() => {});
  }
  show(main);
  leave = page.render(main, arg) || null;
  main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', render);
render();
