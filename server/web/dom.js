// Building the page. Every piece of data (from the model, files, the log
// or people) goes in as text nodes or textContent, never as markup, so
// `<img onerror=…>` in a file name is only characters on the screen.

/** An element: `attrs` are fixed attributes (`class`, `text`, `on…` handlers). */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = printable(v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(printable(String(c))));
  }
  return e;
}

/**
 * Text with its control characters made visible: terminal escapes
 * (ESC [31m …), other C0/C1 controls and bidirectional overrides show as
 * `\x1b`, `\u202e`, … instead of acting on the display. Newlines and tabs stay.
 */
export function printable(s) {
  return String(s).replace(
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => {
      const n = c.codePointAt(0);
      return n < 0x100 ? '\\x' + n.toString(16).padStart(2, '0') : '\\u' + n.toString(16).padStart(4, '0');
    },
  );
}

/** Replace what `parent` holds with `children`. */
export function show(parent, ...children) {
  parent.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/** A time as the reader's local date and time (the ISO text if it does not parse). */
export function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}
