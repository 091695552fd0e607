// A workspace's files (#/files, #/files/WORKSPACE/FOLDER…): the workspaces
// the reader may use (GET /api/v1/workspaces), a folder's entries (GET
// …/files?path=), downloads (GET …/files/PATH) and uploads of several files
// at once with their progress (PUT …/files/PATH; a 413 said in plain words).
// Every listing, download and upload is the person's own file access,
// decided by the policy and recorded. Names from the workspace are hostile
// input: they go on the page as text only (dom.js) and into URLs encoded.
import { h, show, when } from '../dom.js';
import { api, csrfToken } from '../api.js';

/** The URL of a workspace file (each path segment encoded). */
export function fileUrl(workspace, path) {
  const segs = String(path).split('/').map(encodeURIComponent).join('/');
  return `/api/v1/workspaces/${encodeURIComponent(workspace)}/files/${segs}`;
}

/** A link that downloads a workspace file. */
export function downloadLink(workspace, path, label) {
  const name = String(path).split('/').pop();
  return h('a', { href: fileUrl(workspace, path), download: name, 'data-download': path }, label || path);
}

function folderHref(workspace, folder) {
  return `#/files/${encodeURIComponent(workspace)}${folder ? '/' + encodeURIComponent(folder) : ''}`;
}

function size(n) {
  if (n === undefined || n === null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 / 1024 / 1024).toFixed(1)} GB`;
}

/** A refused upload in plain words (413: the size limit, named when the server says it). */
export function uploadProblem(status, detail, file) {
  if (status === 413) {
    const m = /limit of (\d+) bytes/.exec(detail || '');
    const exact = (n) => `${size(n)}, ${Number(n).toLocaleString()} bytes`;
    const limit = m ? ` The server takes files up to ${exact(Number(m[1]))}.` : '';
    return `“${file.name}” is too large to upload (${exact(file.size)}).${limit} Nothing of it was kept.`;
  }
  if (status === 403) return `“${file.name}” was not uploaded: ${detail}`;
  return `“${file.name}” was not uploaded: ${detail || `HTTP ${status}`}`;
}

/** PUT one file with its progress (XMLHttpRequest: fetch reports no upload progress). */
function put(url, file, onProgress) {
  return new Promise((resolve) => {
    const x = new XMLHttpRequest();
    x.open('PUT', url);
    x.setRequestHeader('X-CSRF-Token', csrfToken());
    x.setRequestHeader('Content-Type', 'application/octet-stream');
    x.setRequestHeader('Accept', 'application/json');
    x.withCredentials = true;
    x.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    };
    const done = () => {
      let data = null;
      try {
        data = JSON.parse(x.responseText);
      } catch {
        data = null;
      }
      resolve({ status: x.status, data });
    };
    x.onload = done;
    x.onerror = () => resolve({ status: 0, data: { detail: 'the connection failed' } });
    x.send(file);
  });
}

function workspaceList(main) {
  const list = h('section', { 'aria-labelledby': 'ws-title', 'aria-busy': 'true' }, h('h2', { id: 'ws-title' }, 'Workspaces'));
  show(main, h('h1', {}, 'Files'), list);
  api('GET', '/api/v1/workspaces')
    .then(({ workspaces }) => {
      show(
        list,
        list.firstChild,
        workspaces.length
          ? h(
              'ul',
              { 'data-testid': 'workspaces' },
              workspaces.map((w) => h('li', {}, h('a', { href: folderHref(w.name, '') }, w.name), ` (teams ${w.teams.join(', ')})`)),
            )
          : h('p', {}, 'No workspace you may use.'),
      );
    })
    .catch((err) => show(list, list.firstChild, h('p', { class: 'problem', role: 'alert' }, `Could not list workspaces: ${err.message}`)))
    .finally(() => list.setAttribute('aria-busy', 'false'));
}

function crumbs(workspace, folder) {
  const parts = folder ? folder.split('/') : [];
  const out = [h('a', { href: folderHref(workspace, '') }, workspace)];
  parts.forEach((p, i) => {
    out.push(' / ');
    out.push(h('a', { href: folderHref(workspace, parts.slice(0, i + 1).join('/')) }, p));
  });
  return h('nav', { class: 'crumbs', 'aria-label': 'Folder' }, out);
}

export function render(main, arg) {
  if (!arg) return workspaceList(main);
  const [workspace, ...rest] = arg.split('/');
  const folder = rest.join('/');
  let left = false;

  const listing = h('section', { 'aria-labelledby': 'files-title', 'aria-busy': 'true' }, h('h2', { id: 'files-title' }, 'In this folder'));
  const chooser = h('input', { id: 'upload-files', type: 'file', multiple: true, name: 'files' });
  const progress = h('ul', { class: 'uploads', 'aria-live': 'polite', 'data-testid': 'uploads' });
  const form = h(
    'form',
    { class: 'card', 'aria-labelledby': 'upload-title' },
    h('h2', { id: 'upload-title' }, 'Upload'),
    h('label', { for: 'upload-files' }, `Files to put in ${folder || 'the workspace root'}`),
    chooser,
    h('button', { type: 'submit' }, 'Upload'),
    progress,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const files = Array.from(chooser.files || []);
    if (!files.length) return;
    show(progress);
    // One after another: a person's uploads are their own file writes, in order.
    for (const f of files) {
      const bar = h('progress', { max: f.size || 1, value: 0, 'aria-label': `Upload of ${f.name}` });
      const line = h('span', { role: 'status' }, 'Sending…');
      const item = h('li', { 'data-upload': f.name }, h('span', { class: 'name' }, f.name), ' ', bar, ' ', line);
      progress.append(item);
      const path = folder ? `${folder}/${f.name}` : f.name;
      const r = await put(fileUrl(workspace, path), f, (done, total) => {
        bar.max = total;
        bar.value = done;
      });
      if (r.status === 200 || r.status === 201) {
        bar.value = bar.max;
        show(line, `${r.status === 201 ? 'Uploaded' : 'Replaced'} (${size(r.data.bytes)}, log entry ${r.data.entry}).`);
        item.classList.add('ok');
      } else {
        item.classList.add('problem');
        line.setAttribute('role', 'alert');
        show(line, uploadProblem(r.status, r.data && r.data.detail, f));
      }
    }
    chooser.value = '';
    if (!left) load();
  });

  show(
    main,
    h('h1', {}, 'Files of ', h('code', {}, workspace)),
    crumbs(workspace, folder),
    listing,
    form,
  );

  async function load() {
    listing.setAttribute('aria-busy', 'true');
    const title = listing.firstChild;
    try {
      const q = folder ? `?path=${encodeURIComponent(folder)}` : '';
      const l = await api('GET', `/api/v1/workspaces/${encodeURIComponent(workspace)}/files${q}`);
      if (left) return;
      const rows = l.entries.map((e) =>
        h(
          'tr',
          { 'data-entry': e.path },
          h(
            'td',
            {},
            e.kind === 'dir'
              ? h('a', { href: folderHref(workspace, e.path) }, `${e.name}/`)
              : e.kind === 'file'
                ? downloadLink(workspace, e.path, e.name)
                : h('span', {}, e.name),
          ),
          h('td', {}, e.kind),
          h('td', {}, size(e.size)),
          h('td', {}, when(new Date(e.modified * 1000).toISOString())),
        ),
      );
      const head = h('tr', {}, ['Name', 'Kind', 'Size', 'Changed'].map((c) => h('th', { scope: 'col' }, c)));
      show(
        listing,
        title,
        rows.length
          ? h('div', { class: 'scroll' }, h('table', { 'data-testid': 'files' }, h('thead', {}, head), h('tbody', {}, rows)))
          : h('p', {}, 'This folder is empty.'),
        l.unlisted ? h('p', { class: 'hint' }, `${l.unlisted} entries are not shown: their names cannot be put to policy.`) : null,
        h('p', { class: 'hint' }, `This listing is log entry ${l.entry}.`),
      );
    } catch (err) {
      show(listing, title, h('p', { class: 'problem', role: 'alert' }, `Could not list this folder: ${err.message}`));
    }
    listing.setAttribute('aria-busy', 'false');
  }
  load();
  return () => {
    left = true;
  };
}
