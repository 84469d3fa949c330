// Latent-space plot: show the image of the point under the mouse (pages/latent.py injects
// this with st.html). The plot's layout.meta.icbpl_hover names a config: thumbnail tiles
// (a grid of `columns` cells of `cell` px, `per_tile` images per tile, in image order) and
// their URLs. Each point's customdata[0] is its image index (negative: a PEDCC marker); a
// decimated plot's points carry their cell in the atlas of the drawn points as customdata[3].
(function () {
  const cfg = __ICBPL_HOVER_CONFIG__;
  const root = window.__icbplHover = window.__icbplHover || {configs: {}};
  root.configs[cfg.key] = cfg;
  if (root.installed) return;
  root.installed = true;
  const box = document.createElement('div');
  box.id = 'icbpl-hover-thumb';
  box.style.cssText = 'position:fixed;z-index:100000;pointer-events:none;display:none;background:#fff;' +
    'border:1px solid #888;border-radius:4px;padding:4px;box-shadow:0 2px 8px rgba(0,0,0,.25);' +
    'font:11px sans-serif;text-align:center';
  const pic = document.createElement('div');
  pic.style.cssText = 'width:96px;height:96px;background-repeat:no-repeat;image-rendering:pixelated';
  const cap = document.createElement('div');
  box.appendChild(pic); box.appendChild(cap); document.body.appendChild(box);
  let mx = 0, my = 0, owner = null;
  function hide() { box.style.display = 'none'; owner = null; }
  // The picture belongs to the plot it was shown for, only while the mouse is over that plot:
  // a lasso or a rerun can replace the plot without an unhover event, and the picture lives in
  // the page's body, which other pages of the app share.
  document.addEventListener('mousemove', (e) => {
    mx = e.clientX; my = e.clientY;
    if (box.style.display !== 'block') return;
    const over = e.target && e.target.closest ? e.target.closest('.js-plotly-plot') : null;
    if (!owner || !owner.isConnected || over !== owner) { hide(); return; }
    place();
  }, {passive: true});
  document.addEventListener('mousedown', hide, {passive: true, capture: true});
  document.addEventListener('mouseup', () => setTimeout(hide, 0), {passive: true, capture: true});
  window.addEventListener('popstate', hide);
  setInterval(() => { if (owner && !owner.isConnected) hide(); }, 300);
  function place() {
    // Above the cursor and above plotly's own label (which sits beside the cursor, several lines
    // tall): never over either; below both when there is no room above.
    const w = box.offsetWidth || 110, h = box.offsetHeight || 130;
    const label = owner && owner.querySelector('.hoverlayer .hovertext');
    const r = label ? label.getBoundingClientRect() : null;
    const top = r && r.height ? Math.min(my, r.top) : my, bottom = r && r.height ? Math.max(my, r.bottom) : my;
    let x = mx - w / 2, y = top - h - 8;
    if (4 > y) y = bottom + 10;
    x = Math.max(4, Math.min(x, window.innerWidth - w - 4));
    box.style.left = x + 'px'; box.style.top = y + 'px';
  }
  function show(gd, ev) {
    const key = gd.layout && gd.layout.meta && gd.layout.meta.icbpl_hover;
    const c = key && root.configs[key];
    const p = ev && ev.points && ev.points[0];
    if (!c || !p) return;
    const cd = p.customdata;
    const row = Array.isArray(cd) || (cd && cd.length !== undefined);
    const idx = Math.round(row ? cd[0] : cd);
    if (!(idx >= 0)) { hide(); return; }
    if (gd._dragging || (ev.event && ev.event.buttons)) return;   // no picture while dragging
    const cellIndex = row && cd.length > 3 ? Math.round(cd[3]) : idx;
    const tile = Math.floor(cellIndex / c.per_tile), j = cellIndex % c.per_tile;
    const url = c.urls[tile];
    if (!url) return;
    const s = 96 / c.cell;
    const abs = url.startsWith('/') ? new URL(url, window.location.origin).href : url;
    pic.style.backgroundImage = 'url("' + abs + '")';
    pic.style.backgroundSize = (c.columns * c.cell * s) + 'px auto';
    pic.style.backgroundPosition = (-(j % c.columns) * 96) + 'px ' + (-Math.floor(j / c.columns) * 96) + 'px';
    cap.textContent = 'image ' + idx;
    box.dataset.index = String(idx);
    owner = gd;
    box.style.display = 'block';
    place();
  }
  function attach() {
    document.querySelectorAll('.js-plotly-plot').forEach((gd) => {
      if (gd.__icbplHover || typeof gd.on !== 'function') return;
      gd.__icbplHover = true;
      gd.on('plotly_hover', (ev) => show(gd, ev));
      gd.on('plotly_unhover', hide);
      for (const name of ['plotly_selecting', 'plotly_selected', 'plotly_deselect', 'plotly_relayout']) {
        gd.on(name, hide);
      }
    });
  }
  setInterval(attach, 500);
  attach();
})();
