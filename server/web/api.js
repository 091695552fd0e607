// The server's API (/api/v1), as the browser session uses it: the session
// cookie goes with every request by itself; every request that changes
// something carries the CSRF token in X-CSRF-Token.

const ME = 'stele.me';
let csrfInMemory = null;

/** A refused or failed request: the problem's status and detail. */
export class ApiError extends Error {
  constructor(status, detail, problem) {
    super(detail);
    this.status = status;
    this.problem = problem;
  }
}

/** The CSRF token: the readable `stele_csrf` cookie (or `__Host-stele_csrf` under TLS), else the login's. */
export function csrfToken() {
  for (const part of document.cookie.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === 'stele_csrf' || k === '__Host-stele_csrf') return decodeURIComponent(v.join('='));
  }
  return csrfInMemory || '';
}

/** Who is signed in in this tab ({user, teams, role}), or null. */
export function me() {
  try {
    return JSON.parse(sessionStorage.getItem(ME) || 'null');
  } catch {
    return null;
  }
}

function forget() {
  sessionStorage.removeItem(ME);
  csrfInMemory = null;
}

/** Call the API; the parsed JSON, or an ApiError. A 401 sends the reader to sign in. */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (r.status === 401 && !path.startsWith('/api/v1/login')) {
    forget();
    if (location.hash !== '#/login') location.hash = '#/login';
  }
  if (!r.ok) throw new ApiError(r.status, (data && data.detail) || `HTTP ${r.status}`, data);
  return data;
}

/** Sign in with a local account: a browser session (cookie + CSRF token). */
export async function login(user, password) {
  const who = await api('POST', '/api/v1/login/browser', { user, password });
  csrfInMemory = who.csrf_token;
  sessionStorage.setItem(ME, JSON.stringify({ user: who.user, teams: who.teams, role: who.role }));
  return who;
}

/** End the browser session. */
export async function logout() {
  try {
    await api('POST', '/api/v1/logout');
  } finally {
    forget();
  }
}

/**
 * Who the browser session is, from the server (`GET /api/v1/me`): after an
 * OIDC or login-link sign-in (a redirect, no body) or in a new tab.
 */
export async function whoami() {
  const who = await api('GET', '/api/v1/me');
  sessionStorage.setItem(ME, JSON.stringify({ user: who.user, teams: who.teams, role: who.role }));
  return who;
}
