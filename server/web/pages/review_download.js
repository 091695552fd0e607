// A signed export fetched through the API and handed to the browser as a
// download, with the verifier key and the exact offline command the
// server names (X-Stele-Verifier, X-Stele-Verify-Command) shown as text.
import { h, show } from '../dom.js';

/** The key and the command, labelled, for `out`. */
export function verifyHelp(vkey, command) {
  return h(
    'div',
    { class: 'verify-help' },
    h('p', {}, 'The log’s verifier key (compare it with the one you hold):'),
    h('pre', { 'data-testid': 'verifier' }, vkey),
    h('p', {}, 'Check the export offline:'),
    h('pre', { 'data-testid': 'verify-command' }, command),
  );
}

/** Fetch `url` (a tar export) and save it; show the result or the refusal in `out`. */
export async function download(url, out) {
  show(out, h('p', { role: 'status' }, 'Exporting…'));
  try {
    const r = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
    if (!r.ok) {
      let detail = `HTTP ${r.status}`;
      try {
        detail = (await r.json()).detail || detail;
      } catch {
        // not a problem document
      }
      show(out, h('p', { class: 'problem', role: 'alert' }, `Not exported: ${detail}`));
      return;
    }
    const name = /filename="([^"]+)"/.exec(r.headers.get('content-disposition') || '');
    const file = name ? name[1] : 'stele-export.tar';
    const blob = await r.blob();
    const a = h('a', { href: URL.createObjectURL(blob), download: file }, file);
    a.click();
    show(
      out,
      h('p', { role: 'status', 'data-testid': 'export-done' }, `Saved ${file} (${blob.size} bytes; log entry ${r.headers.get('x-stele-export-entry')}).`),
      verifyHelp(r.headers.get('x-stele-verifier') || '', r.headers.get('x-stele-verify-command') || ''),
    );
  } catch (err) {
    show(out, h('p', { class: 'problem', role: 'alert' }, `Not exported: ${err.message}`));
  }
}
