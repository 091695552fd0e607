// Sign in with a local account (POST /api/v1/login/browser).
import { h, show } from '../dom.js';
import { login } from '../api.js';

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
  show(main, form);
  user.focus();
}
