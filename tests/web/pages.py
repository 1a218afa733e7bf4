"""Web pages written for the tests, served from a temporary folder on localhost.

Every element a test reasons about has an id. `data-t="v"` marks what a user can see and act on
in the 1280x800 viewport (the expected marks); `data-t="x"` what must not be marked (hidden,
zero-size, off-screen, covered, disabled, a cross-origin frame's content). Every page records
clicks in `window.top.__clicks` (the ids on each click's path, through shadow roots),
so a test checks that clicking mark k reached element k.
"""

RECORD = """
<script>
window.top.__clicks = window.top.__clicks || [];
document.addEventListener('click', (e) => {
  // the ids on the event's path, innermost first: the click reached each of them
  window.top.__clicks.push(e.composedPath().filter((n) => n.id).map((n) => n.id));
  if (e.target.closest && e.target.closest('a[href^="#"]')) e.preventDefault();
}, true);
</script>
"""

STYLE = """
<style>
body { font: 16px sans-serif; margin: 0; padding: 20px; }
button, input, select, textarea { font: inherit; margin: 4px; }
.row { margin: 8px 0; }
</style>
"""

FORM = f"""<!doctype html><html><head><title>form</title>{STYLE}</head><body>
<h1>Sign up</h1>
<form id="f" onsubmit="event.preventDefault(); document.title = 'submitted';">
  <div class="row"><label for="name">Name</label> <input id="name" data-t="v" placeholder="Your name"></div>
  <div class="row"><label>Email <input id="email" type="email" data-t="v"></label></div>
  <div class="row"><input id="pw" type="password" data-t="v" value="secret" aria-label="Password"></div>
  <div class="row"><input id="agree" type="checkbox" data-t="v"> <span>I agree</span>
      <input id="r1" type="radio" name="r" data-t="v" aria-label="small"> <input id="r2" type="radio" name="r" data-t="v" aria-label="large"></div>
  <div class="row"><select id="size" data-t="v"><option value="s">Small</option><option value="m">Medium</option><option value="l">Large</option></select></div>
  <div class="row"><textarea id="note" data-t="v" placeholder="Notes"></textarea></div>
  <div class="row"><input id="secret" type="hidden" value="h" data-t="x">
      <button id="off" disabled data-t="x">Disabled</button>
      <button id="go" type="submit" data-t="v">Submit</button>
      <input id="reset" type="reset" value="Clear" data-t="v"></div>
  <div class="row"><a id="help" href="#help-text" data-t="v">Help</a> <a id="noref" data-t="x">not a link</a></div>
  <div class="row"><label id="fancy" data-t="v" style="cursor:pointer;border:1px solid #888;padding:2px">
      <input id="fancybox" type="checkbox" style="opacity:0;position:absolute" data-t="x"> Fancy toggle</label></div>
  <div class="row" contenteditable="true" id="editor" data-t="v" style="border:1px solid #ccc;min-height:30px">Edit me</div>
</form>
{RECORD}</body></html>"""

MENU = f"""<!doctype html><html><head><title>menu</title>{STYLE}
<style>
nav ul {{ list-style: none; display: flex; gap: 12px; padding: 0; }}
nav li {{ position: relative; }}
nav .sub {{ display: none; position: absolute; top: 24px; left: 0; background: #eee; padding: 6px; width: 140px; }}
nav li:hover .sub {{ display: block; }}
.card {{ cursor: pointer; border: 1px solid #999; width: 300px; height: 80px; margin: 10px 0; }}
</style></head><body>
<nav><ul role="menubar">
  <li><a id="m-file" role="menuitem" href="#file" data-t="v">File</a>
      <div class="sub"><a id="m-open" role="menuitem" href="#open" data-t="x">Open</a></div></li>
  <li><a id="m-edit" role="menuitem" href="#edit" data-t="v">Edit</a></li>
  <li><span id="m-view" role="menuitem" tabindex="0" data-t="v">View</span></li>
</ul></nav>
<div role="tablist"><span id="tab1" role="tab" data-t="v">Tab one</span> <span id="tab2" role="tab" data-t="v">Tab two</span></div>
<details id="det"><summary id="sum" data-t="v">More options</summary><button id="inside-det" data-t="x">Hidden until open</button></details>
<div id="card" class="card" data-t="v" onclick="this.dataset.n = (+this.dataset.n || 0) + 1">A clickable card</div>
<div id="wrap" style="cursor:pointer;display:inline-block" data-t="x"><button id="wrapped" data-t="v" style="width:200px">Wrapped button</button></div>
<div id="listener" data-t="v" style="width:120px;border:1px dashed #555">JS listener</div>
<span id="plain" data-t="x">plain text</span>
<div id="sw" role="switch" aria-checked="false" aria-label="Dark mode" data-t="v" style="width:40px;height:20px;background:#ccc"></div>
<div inert><button id="inert-btn" data-t="x">Inert</button></div>
<audio id="player" controls data-t="v" style="width:300px"></audio>
<script>document.getElementById('listener').addEventListener('click', () => {{}});</script>
{RECORD}</body></html>"""

MODAL = f"""<!doctype html><html><head><title>modal</title>{STYLE}
<style>
.backdrop {{ position: fixed; inset: 0; background: rgba(0,0,0,0.4); }}
.dialog {{ position: fixed; top: 200px; left: 400px; width: 400px; padding: 20px; background: white; }}
</style></head><body>
<button id="under1" data-t="x">Behind the modal</button>
<a id="under2" href="#x" data-t="x">Also behind</a>
<input id="under3" data-t="x">
<div class="backdrop" id="backdrop"></div>
<div class="dialog" role="dialog" aria-modal="true">
  <p>Delete the file?</p>
  <button id="ok" data-t="v" onclick="document.querySelector('.backdrop').remove(); this.parentElement.remove();">OK</button>
  <button id="cancel" data-t="v">Cancel</button>
</div>
{RECORD}</body></html>"""

CHILD = f"""<!doctype html><html><head>{STYLE}</head><body style="padding:4px">
<button id="in-frame" data-t="v">Inside frame</button> <a id="frame-link" href="#f" data-t="v">Frame link</a>
<input id="frame-input" data-t="v" placeholder="in frame">
{RECORD}</body></html>"""

FRAMES = f"""<!doctype html><html><head><title>frames</title>{STYLE}</head><body>
<button id="top-btn" data-t="v">Top button</button>
<iframe id="same" src="child.html" style="width:600px;height:120px;border:3px solid #333;margin:10px"></iframe>
<iframe id="cross" src="{{cross}}/child.html" style="width:600px;height:120px;border:1px solid #999"></iframe>
<iframe id="nested" srcdoc='<iframe id="inner" src="child.html" style="width:560px;height:80px"></iframe>' style="width:600px;height:110px;margin-top:10px"></iframe>
{RECORD}</body></html>"""

SHADOW = f"""<!doctype html><html><head><title>shadow</title>{STYLE}</head><body>
<x-panel id="panel"></x-panel>
<x-closed id="closed"></x-closed>
<button id="light" data-t="v">Light DOM button</button>
<script>
customElements.define('x-panel', class extends HTMLElement {{
  constructor() {{
    super();
    const root = this.attachShadow({{mode: 'open'}});
    root.innerHTML = `<div><button id="sh-btn" data-t="v">Shadow button</button>
      <input id="sh-input" data-t="v" placeholder="shadow input"><x-inner id="inner-host"></x-inner>
      <button id="sh-hidden" style="display:none" data-t="x">gone</button></div>`;
  }}
}});
customElements.define('x-inner', class extends HTMLElement {{
  constructor() {{
    super();
    this.attachShadow({{mode: 'open'}}).innerHTML = '<a id="deep" href="#deep" data-t="v">Deep link</a>';
  }}
}});
customElements.define('x-closed', class extends HTMLElement {{
  constructor() {{
    super();
    this.attachShadow({{mode: 'closed'}}).innerHTML = '<button id="closed-btn">Closed root</button>';
  }}
}});
</script>
{RECORD}</body></html>"""

STICKY = f"""<!doctype html><html><head><title>sticky</title>{STYLE}
<style>
header {{ position: sticky; top: 0; height: 60px; background: #224; z-index: 10; }}
header a {{ color: white; margin: 20px; line-height: 60px; }}
.spacer {{ height: 300px; }}
</style></head><body>
<header><a id="home" href="#home" data-t="v">Home</a><a id="about" href="#about" data-t="v">About</a></header>
<div style="height:150px"></div>
<button id="scrolled-under" data-t="x">Under the header after scrolling</button>
<div style="height:150px"></div>
<button id="visible-1" data-t="v">Visible one</button>
<button id="none" style="display:none" data-t="x">display none</button>
<button id="invisible" style="visibility:hidden" data-t="x">visibility hidden</button>
<button id="transparent" style="opacity:0" data-t="x">opacity 0</button>
<button id="zero" style="width:0;height:0;padding:0;border:0;overflow:hidden" data-t="x">zero</button>
<button id="left-out" style="position:absolute;left:-500px" data-t="x">off to the left</button>
<button id="right-out" style="position:absolute;left:1500px" data-t="x">off to the right</button>
<div style="width:100px;height:30px;overflow:hidden"><div style="height:40px"></div><button id="clipped" data-t="x">clipped</button></div>
<div style="height:600px"></div>
<button id="below" data-t="x">Below the fold</button>
<div class="spacer"></div>
{RECORD}
<script>window.scrollTo(0, 215);</script>
</body></html>"""

LINKS = f"""<!doctype html><html><head><title>links</title>{STYLE}</head><body>
<a id="away" href="{{away}}/form.html" data-t="v">Elsewhere (another host)</a>
<a id="local" href="form.html" data-t="v">The form (this host)</a>
</body></html>"""

CANVAS = f"""<!doctype html><html><head><title>canvas</title>{STYLE}</head><body>
<button id="real" data-t="v">A real button</button>
<canvas id="game" width="500" height="160" style="border:1px solid #999"></canvas>
<script>
const c = document.getElementById('game'), g = c.getContext('2d');
g.fillStyle = '#fff'; g.fillRect(0, 0, 500, 160);
g.strokeStyle = '#333'; g.lineWidth = 2; g.strokeRect(40, 50, 150, 50);
g.fillStyle = '#000'; g.font = '22px sans-serif'; g.fillText('Buy now', 72, 83);
g.fillText('Level 3', 300, 83);
window.__canvasClicks = [];
c.addEventListener('click', (e) => {{ const r = c.getBoundingClientRect(); window.__canvasClicks.push([e.clientX - r.left, e.clientY - r.top]); }});
</script>
</body></html>"""

PAGES = {
    "canvas.html": CANVAS,
    "links.html": LINKS,
    "form.html": FORM,
    "menu.html": MENU,
    "modal.html": MODAL,
    "child.html": CHILD,
    "frames.html": FRAMES,
    "shadow.html": SHADOW,
    "sticky.html": STICKY,
}
