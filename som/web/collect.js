// som/web/collect.js: the interactive elements a user can see in the viewport, in document order.
// Evaluated by Playwright in the top frame as `(options) => result`; reaches same-origin iframes
// (contentDocument) and open shadow roots itself, so one round trip marks the whole page.
// Coordinates: CSS pixels of the top viewport (Python multiplies by devicePixelRatio).
(options) => {
  const MIN_PX = options.min_px ?? 2;
  const ROLES = new Set([
    "button", "link", "checkbox", "radio", "tab", "menuitem", "menuitemcheckbox", "menuitemradio",
    "option", "switch", "textbox", "searchbox", "combobox", "slider", "spinbutton", "treeitem",
    "gridcell", "listbox", "scrollbar",
  ]);
  const listeners = window.__somClickTargets; // set by the init script when som opened the page
  const textOf = (s, n = 200) => (s || "").replace(/\s+/g, " ").trim().slice(0, n);

  // ------------------------------------------------------------ what counts as interactive
  function reasonOf(el, tag) {
    // strong: the element is a control by what it is; weak: only by behaviour or style
    if (el.disabled === true || el.getAttribute("aria-disabled") === "true") return null;
    if (el.closest && el.closest("[inert]")) return null;  // inert subtrees take no input
    if (tag === "A") return el.hasAttribute("href") ? "tag" : null;
    if (tag === "BUTTON" || tag === "SELECT" || tag === "TEXTAREA") return "tag";
    if ((tag === "VIDEO" || tag === "AUDIO") && el.hasAttribute("controls")) return "tag";
    if (tag === "INPUT") return el.type === "hidden" ? null : "tag";
    if (tag === "SUMMARY") return el.parentElement && el.parentElement.tagName === "DETAILS" ? "tag" : null;
    const role = (el.getAttribute("role") || "").trim().split(/\s+/)[0];
    if (role && ROLES.has(role)) return "role";
    if (el.isContentEditable && !(el.parentElement && el.parentElement.isContentEditable)) return "editable";
    if (tag === "LABEL" && el.control && !el.control.checkVisibility?.({ opacityProperty: true, visibilityProperty: true })) return "label";
    if (el.onclick || el.hasAttribute("onclick") || (listeners && listeners.has(el))) return "handler";
    const tabindex = el.getAttribute("tabindex");
    if (tabindex !== null && parseInt(tabindex, 10) >= 0 && tag !== "BODY" && tag !== "HTML") return "tabindex";
    return "maybe-pointer"; // decided below, only for elements on screen (getComputedStyle is the cost)
  }

  function implicitRole(el, tag) {
    const role = (el.getAttribute("role") || "").trim().split(/\s+/)[0];
    if (role) return role;
    switch (tag) {
      case "A": return "link";
      case "BUTTON": case "SUMMARY": return "button";
      case "TEXTAREA": return "textbox";
      case "SELECT": return el.multiple || el.size > 1 ? "listbox" : "combobox";
      case "INPUT": {
        const t = el.type;
        if (t === "checkbox" || t === "radio") return t;
        if (["button", "submit", "reset", "image"].includes(t)) return "button";
        if (t === "range") return "slider";
        if (t === "number") return "spinbutton";
        if (t === "search") return "searchbox";
        return "textbox";
      }
    }
    return el.isContentEditable ? "textbox" : "";
  }

  function accessibleName(el, tag) {
    const doc = el.ownerDocument, root = el.getRootNode();
    const by = el.getAttribute("aria-labelledby");
    if (by) {
      const t = by.split(/\s+/).map((id) => (root.getElementById ? root.getElementById(id) : doc.getElementById(id)))
        .filter(Boolean).map((e) => e.innerText || e.textContent).join(" ");
      if (textOf(t)) return textOf(t);
    }
    const aria = el.getAttribute("aria-label");
    if (aria && textOf(aria)) return textOf(aria);
    if (el.labels && el.labels.length) {
      const t = [...el.labels].map((l) => l.innerText || l.textContent).join(" ");
      if (textOf(t)) return textOf(t);
    }
    if (tag === "INPUT" && ["button", "submit", "reset"].includes(el.type) && el.value) return textOf(el.value);
    if (tag === "IMG" || (tag === "INPUT" && el.type === "image")) { if (el.alt) return textOf(el.alt); }
    if (!["INPUT", "TEXTAREA", "SELECT"].includes(tag)) {
      const t = textOf(el.innerText || el.textContent);
      if (t) return t;
      const img = el.querySelector && el.querySelector("img[alt], svg[aria-label]");
      if (img) return textOf(img.getAttribute("alt") || img.getAttribute("aria-label"));
    }
    if (el.title) return textOf(el.title);
    if (el.placeholder) return textOf(el.placeholder);
    return "";
  }

  // ------------------------------------------------------------ selectors (relative to the element's root)
  function cssPath(el, root) {
    const parts = [];
    let e = el;
    while (e && e.nodeType === 1) {
      if (e.id && root.querySelectorAll("#" + CSS.escape(e.id)).length === 1) { parts.unshift("#" + CSS.escape(e.id)); break; }
      let part = e.localName;
      const parent = e.parentElement;
      const siblings = parent ? parent.children : (e.parentNode ? e.parentNode.children : []);
      let same = 0, index = 0;
      for (const s of siblings) if (s.localName === e.localName) { same++; if (s === e) index = same; }
      if (same > 1) part += `:nth-of-type(${index})`;
      parts.unshift(part);
      if (!parent) break;
      e = parent;
    }
    return parts.join(" > ");
  }
  function xpath(el) {
    const parts = [];
    let e = el;
    while (e && e.nodeType === 1) {
      let same = 0, index = 0;
      const siblings = e.parentNode ? e.parentNode.children : [];
      for (const s of siblings) if (s.localName === e.localName) { same++; if (s === e) index = same; }
      parts.unshift(same > 1 ? `${e.localName}[${index}]` : e.localName);
      e = e.parentElement;
    }
    return (el.getRootNode() instanceof ShadowRoot ? "./" : "/") + parts.join("/");
  }

  // ------------------------------------------------------------ hit testing across shadow roots and frames
  function frameOffset(iframe) {
    const r = iframe.getBoundingClientRect(), cs = getComputedStyle(iframe);
    return [r.left + iframe.clientLeft + parseFloat(cs.paddingLeft), r.top + iframe.clientTop + parseFloat(cs.paddingTop)];
  }
  function deepHit(x, y) {
    // (x, y): top-viewport CSS px. Returns the innermost element under the point.
    let doc = document, ox = 0, oy = 0, hit = null;
    for (let depth = 0; depth < 32; depth++) {
      let h = doc.elementFromPoint(x - ox, y - oy);
      if (!h) return hit;
      while (h.shadowRoot) {
        const inner = h.shadowRoot.elementFromPoint(x - ox, y - oy);
        if (!inner || inner === h) break;
        h = inner;
      }
      hit = h;
      if ((h.tagName === "IFRAME" || h.tagName === "FRAME")) {
        let inner = null;
        try { inner = h.contentDocument; } catch (e) { inner = null; }
        if (!inner) return hit;
        const [fx, fy] = frameOffset(h);
        ox += fx; oy += fy; doc = inner;
        continue;
      }
      return hit;
    }
    return hit;
  }
  function composedContains(el, node) {
    while (node) {
      if (node === el) return true;
      if (node.parentNode) node = node.parentNode;
      else if (node instanceof ShadowRoot) node = node.host;
      else if (node.nodeType === 9 && node.defaultView && node.defaultView.frameElement) {
        try { node = node.defaultView.frameElement; } catch (e) { return false; }
      } else return false;
      if (node instanceof ShadowRoot) node = node.host;
    }
    return false;
  }

  // ------------------------------------------------------------ find mode: re-find one element by its record
  function depthIn(e) { let d = 0; while (e) { d++; e = e.parentElement; } return d; }
  function findIn(root, css) {
    // the element at `css` relative to `root` (paths not anchored at an id start at root's top level)
    let found;
    try { found = root.querySelectorAll(css); } catch (e) { return null; }
    const anchored = css.startsWith("#");
    const steps = css.split(" > ").length;
    for (const e of found) if (e.getRootNode() === root && (anchored || depthIn(e) === steps)) return e;
    return null;
  }
  if (options.find) {
    // {find: {shadow: [host css...], css, tag, name}} -> element or a string saying what is wrong
    let root = document;
    for (const hostCss of options.find.shadow) {
      const host = findIn(root, hostCss);
      if (!host || !host.shadowRoot) return `shadow host ${hostCss} is gone`;
      root = host.shadowRoot;
    }
    const el = findIn(root, options.find.css);
    if (el && el.localName === options.find.tag) {
      const want = options.find.name;
      if (!want || accessibleName(el, el.tagName) === want) return el;
    }
    // moved or re-rendered: the one element of that tag with that accessible name
    if (options.find.name) {
      const same = [...root.querySelectorAll(options.find.tag)].filter((e) => accessibleName(e, e.tagName) === options.find.name);
      if (same.length === 1) return same[0];
    }
    if (el && el.localName === options.find.tag) return el; // same place, its text changed
    return el ? `${options.find.css} is now a <${el.localName}>` : `nothing matches ${options.find.css}`;
  }

  // ------------------------------------------------------------ walk
  const vw = window.innerWidth, vh = window.innerHeight;
  const out = [];
  const weakOnes = [];
  // pictures whose content the DOM does not describe: the vision marks' search area
  const MEDIA = new Set(["CANVAS", "IMG", "svg", "VIDEO", "EMBED", "OBJECT"]);
  const media = [];

  function visiblePoint(el, frame) {
    // first of the centre and six inner points of each client rect (inside the frame's clip)
    // whose topmost element is el or inside it; top-viewport px, or null when covered everywhere
    const clip = frame.clip;
    const pts = [[0.5, 0.5], [0.2, 0.2], [0.8, 0.2], [0.2, 0.8], [0.8, 0.8], [0.5, 0.2], [0.5, 0.8]];
    for (const r of el.getClientRects()) {
      const x1 = Math.max(r.left + frame.ox, clip[0]), y1 = Math.max(r.top + frame.oy, clip[1]);
      const x2 = Math.min(r.right + frame.ox, clip[2]), y2 = Math.min(r.bottom + frame.oy, clip[3]);
      if (x2 - x1 < MIN_PX || y2 - y1 < MIN_PX) continue;
      for (const [fx, fy] of pts) {
        const x = x1 + (x2 - x1) * fx, y = y1 + (y2 - y1) * fy;
        const h = deepHit(x, y);
        if (h && (h === el || composedContains(el, h))) return [x, y];
      }
    }
    return null;
  }

  const clipCache = new Map();
  function ancestorClip(e) {
    // the part of the local viewport e's ancestors with overflow != visible let through
    const p = e.parentElement || (e.parentNode instanceof ShadowRoot ? e.parentNode.host : null);
    if (!p) return [-Infinity, -Infinity, Infinity, Infinity];
    if (clipCache.has(p)) return clipCache.get(p);
    let c = ancestorClip(p);
    const cs = p.ownerDocument.defaultView.getComputedStyle(p);
    if (cs.overflowX !== "visible" || cs.overflowY !== "visible") {
      const r = p.getBoundingClientRect();
      c = [Math.max(c[0], r.left), Math.max(c[1], r.top), Math.min(c[2], r.right), Math.min(c[3], r.bottom)];
    }
    clipCache.set(p, c);
    return c;
  }

  function walk(root, frame) {
    // frame: {ox, oy, clip: [x1, y1, x2, y2] in top px, path: steps to this root, url}
    const elements = root.querySelectorAll("*");
    for (const el of elements) {
      const tag = el.tagName;
      if (el.shadowRoot) {
        walk(el.shadowRoot, { ...frame, path: [...frame.path, { css: cssPath(el, root), into: "shadow" }] });
      }
      if (tag === "IFRAME" || tag === "FRAME") {
        let doc = null;
        try { doc = el.contentDocument; } catch (e) { doc = null; }
        if (doc && doc.documentElement) {
          const r = el.getBoundingClientRect();
          const [fx, fy] = frameOffset(el);
          const inner = [fx + frame.ox, fy + frame.oy, fx + frame.ox + el.clientWidth, fy + frame.oy + el.clientHeight];
          const clip = [Math.max(frame.clip[0], inner[0]), Math.max(frame.clip[1], inner[1]),
                        Math.min(frame.clip[2], inner[2]), Math.min(frame.clip[3], inner[3])];
          if (clip[2] > clip[0] && clip[3] > clip[1] && r.width > 0) {
            walk(doc, { ox: frame.ox + fx, oy: frame.oy + fy, clip,
                        path: [...frame.path, { css: cssPath(el, root), into: "frame" }],
                        url: doc.location ? doc.location.href : "" });
          }
        }
        continue;
      }
      if (options.media && MEDIA.has(tag) && !(tag === "svg" && el.parentElement && el.parentElement.closest("svg"))) {
        const r = el.getBoundingClientRect();
        const box = [Math.max(r.left + frame.ox, frame.clip[0]), Math.max(r.top + frame.oy, frame.clip[1]),
                     Math.min(r.right + frame.ox, frame.clip[2]), Math.min(r.bottom + frame.oy, frame.clip[3])];
        if (box[2] - box[0] >= 16 && box[3] - box[1] >= 16 && visiblePoint(el, frame)) {
          media.push({ tag: el.localName, css: cssPath(el, root), xpath: xpath(el), path: frame.path, frame_url: frame.url, box });
        }
      }
      let reason = reasonOf(el, tag);
      if (!reason) continue;
      const r = el.getBoundingClientRect();
      const x1 = r.left + frame.ox, y1 = r.top + frame.oy, x2 = r.right + frame.ox, y2 = r.bottom + frame.oy;
      // off-screen or clipped away by its frame
      if (x2 <= frame.clip[0] || y2 <= frame.clip[1] || x1 >= frame.clip[2] || y1 >= frame.clip[3]) continue;
      if (r.width < MIN_PX || r.height < MIN_PX) continue;
      const view = el.ownerDocument.defaultView;
      if (reason === "maybe-pointer") {
        const cs = view.getComputedStyle(el);
        if (cs.cursor !== "pointer") continue;
        const p = el.parentElement;
        if (p && view.getComputedStyle(p).cursor === "pointer") continue; // inherited, not its own
        reason = "pointer";
      }
      if (el.checkVisibility && !el.checkVisibility({ opacityProperty: true, visibilityProperty: true,
                                                     checkOpacity: true, checkVisibilityCSS: true })) continue;
      const point = visiblePoint(el, frame);
      if (!point) continue; // covered by another element (or clipped by an ancestor)
      const rec = {
        tag: el.localName,
        role: implicitRole(el, tag),
        name: accessibleName(el, tag),
        text: ["INPUT", "TEXTAREA", "SELECT"].includes(tag) ? "" : textOf(el.innerText || el.textContent),
        href: tag === "A" ? el.href : null,
        value: (tag === "INPUT" && el.type !== "password") || tag === "TEXTAREA" || tag === "SELECT" ? String(el.value ?? "") : null,
        placeholder: el.getAttribute("placeholder"),
        type: tag === "INPUT" ? el.type : null,
        checked: tag === "INPUT" && (el.type === "checkbox" || el.type === "radio") ? el.checked : null,
        reason,
        css: cssPath(el, root),
        xpath: xpath(el),
        path: frame.path,
        frame_url: frame.url,
        box: [Math.max(x1, frame.clip[0]), Math.max(y1, frame.clip[1]), Math.min(x2, frame.clip[2]), Math.min(y2, frame.clip[3])],
        point,
      };
      // shrink the box to what overflow-clipping ancestors show, unless that loses the hit point
      // (a positioned descendant can escape its ancestors' clip)
      const ac = ancestorClip(el);
      const cb = [Math.max(rec.box[0], ac[0] + frame.ox), Math.max(rec.box[1], ac[1] + frame.oy),
                  Math.min(rec.box[2], ac[2] + frame.ox), Math.min(rec.box[3], ac[3] + frame.oy)];
      if (cb[0] <= point[0] && point[0] <= cb[2] && cb[1] <= point[1] && point[1] <= cb[3]) rec.box = cb;
      if (reason === "pointer" || reason === "tabindex" || reason === "handler") weakOnes.push([out.length, el]);
      rec._el = el;
      out.push(rec);
    }
  }
  walk(document, { ox: 0, oy: 0, clip: [0, 0, vw, vh], path: [], url: location.href });

  // a weak candidate (pointer style, handler, tabindex) that is mostly one of its own
  // interactive descendants is that descendant's wrapper, not a second thing to act on
  const drop = new Set();
  const area = (b) => Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);
  for (const [i, el] of weakOnes) {
    const a = area(out[i].box);
    let inside = 0;
    for (let j = 0; j < out.length; j++) {
      if (j === i || !composedContains(el, out[j]._el)) continue;
      inside++;
      const b = out[j].box, o = out[i].box;
      const inter = Math.max(0, Math.min(b[2], o[2]) - Math.max(b[0], o[0])) * Math.max(0, Math.min(b[3], o[3]) - Math.max(b[1], o[1]));
      if (inter >= 0.7 * a) { drop.add(i); break; }
    }
    // a handler on a large container holding other controls is event delegation, not a control
    if (inside > 0 && a > 0.25 * vw * vh) drop.add(i);
  }
  const elements = out.filter((_, i) => !drop.has(i)).map((r) => { delete r._el; return r; });
  // one JSON string: Playwright checks a returned object node by node (~0.5 ms per element in Python)
  return JSON.stringify({
    url: location.href, title: document.title, dpr: window.devicePixelRatio,
    viewport: [vw, vh], scroll: [window.scrollX, window.scrollY], elements, media,
  });
}
