// Focus every visible focusable element in turn and measure its focus ring against the colours
// just inside and just outside it (WCAG 1.4.11: at least 3:1 against adjacent colours).
() => {
  const channel = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  const parse = text => {
    const m = text.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
    return {rgb: p.slice(0, 3), alpha: p.length > 3 ? p[3] : 1};
  };
  const luminance = rgb => 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2]);
  const ratio = (a, b) => {
    const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const backdrop = (x, y) => {
    for (const el of document.elementsFromPoint(x, y)) {
      const bg = parse(getComputedStyle(el).backgroundColor);
      if (bg && bg.alpha > 0.5) return bg.rgb;
    }
    return parse(getComputedStyle(document.documentElement).backgroundColor).rgb;
  };
  const describe = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (el.className ? '.' + String(el.className).split(' ').join('.') : '');
  const out = [];
  const focusable = 'a[href], button, input:not([type=hidden]), select, textarea, summary, '
    + '[tabindex]:not([tabindex="-1"])';
  for (const el of document.querySelectorAll(focusable)) {
    if (el.disabled || !el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
    el.focus();
    if (document.activeElement !== el) continue;
    el.scrollIntoView({block: 'center', inline: 'center'});
    const style = getComputedStyle(el);
    if (!el.matches(':focus-visible') || style.outlineStyle === 'none' || parseFloat(style.outlineWidth) < 2) {
      out.push({element: describe(el), ratio: 0, why: 'no visible focus ring'});
      continue;
    }
    const ring = parse(style.outlineColor).rgb, width = parseFloat(style.outlineWidth);
    const offset = parseFloat(style.outlineOffset), r = el.getBoundingClientRect();
    const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    let worst = Infinity;
    for (const d of [offset - 0.5, offset + width + 0.5]) {
      for (const [x, y] of [[r.left - d, cy], [r.right + d, cy], [cx, r.top - d], [cx, r.bottom + d]]) {
        if (x < 0 || y < 0 || x >= innerWidth || y >= innerHeight) continue;
        worst = Math.min(worst, ratio(ring, backdrop(x, y)));
      }
    }
    if (worst !== Infinity) {
      out.push({element: describe(el), ratio: Math.round(worst * 100) / 100,
                why: worst < 3 ? el.outerHTML.slice(0, 160) : ''});
    }
  }
  if (document.activeElement) document.activeElement.blur();
  return out;
}
