// Sign in with a local account (POST /api/v1/login/browser), or with the
// identity provider when the server has one (GET /api/v1/login/methods
// says so; the link goes through GET /api/v1/oidc/login to the provider,
// which sends the browser back to the sessions list).
import { h, show } from '../dom.js';
import { api, login } from '../api.js';

export function render(main) {
  const user = h('input', { id: 'login-user', name: 'user', autocomplete: 'username', required: true });
  const password = h('input', {
    id: 'login-password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const problem = h('p', { class: 'problem', role: 'alert' });
  const form = h(
    'form',
    { class: 'card narrow', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in'),
    h('label', { for: 'login-user' }, 'User name'),
    user,
    h('label', { for: 'login-password' }, 'Password'),
    password,
    h('button', { type: 'submit' }, 'Sign in'),
    problem,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    show(problem);
    try {
      await login(user.value, password.value);
      location.hash = '#/sessions';
    } catch (err) {
      show(problem, `Not signed in: ${err.message}`);
      password.select();
    }
  });
  const other = h('div', { class: 'card narrow other-login', 'data-testid': 'other-login', hidden: true });
  show(main, form, other);
  user.focus();
  api('GET', '/api/v1/login/methods')
    .then((m) => {
      if (!m || !m.oidc) return;
      show(
        other,
        h('p', {}, 'Or, with your organisation’s account:'),
        h('a', { class: 'button', href: m.oidc.login, 'data-testid': 'oidc-login' }, `Sign in with ${m.oidc.name}`),
      );
      other.hidden = false;
    })
    .catch(() => {});
}
