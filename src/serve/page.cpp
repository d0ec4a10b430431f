#include "finch/serve/page.h"

namespace finch::serve {

const char* const kIndexHtml = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>finch</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:sans-serif;max-width:960px;margin:1em auto;padding:0 1em;color:#222}
#drop{border:2px dashed #888;border-radius:8px;padding:2em;text-align:center;cursor:pointer}
#drop.over{background:#eef}
.cols{display:flex;gap:2em;flex-wrap:wrap;margin-top:1em}
.row{display:flex;align-items:center;gap:.5em;margin:.2em 0}
.row .name{width:14em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar{background:#1f77b4;height:12px}
.view{position:relative;display:inline-block}
.view img{width:320px;image-rendering:pixelated;display:block}
#box{position:absolute;border:2px solid #0f0;display:none}
#status{color:#555;margin-top:.5em}.error{color:#a11}
table{border-collapse:collapse;font-size:.9em}td{border:1px solid #ddd;padding:2px 6px}
</style></head><body>
<h1>finch</h1>
<p id="model">loading model&hellip;</p>
<div id="drop">Drop a photo here, or <label><u>choose a file</u>
<input type="file" id="file" accept="image/*" style="position:absolute;opacity:0;width:1px;height:1px"></label></div>
<div id="status"></div>
<div class="cols">
 <div><h2>Top 5</h2><div id="results"></div><p>Top-1: <b id="top1"></b></p></div>
 <div><h2>Where the model looks</h2><div class="view"><img id="overlay" alt="Grad-CAM overlay"><div id="box"></div></div>
  <p id="explained"></p></div>
 <div id="similar-box" style="display:none"><h2>Most similar</h2><table id="similar"></table></div>
</div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let hasGallery = false;
fetch("/v1/model").then(r => r.json()).then(m => {
  hasGallery = !!m.gallery;
  $("model").textContent = `${m.arch.backbone} + ${m.arch.head}, ${m.classes.length} classes, ` +
    `${m.input_size} px` + (m.gallery ? `, gallery of ${m.gallery.items} items` : "");
}).catch(() => { $("model").textContent = "model information unavailable"; });
function status(text, error) { $("status").textContent = text; $("status").className = error ? "error" : ""; }
async function post(path, file) {
  const r = await fetch(path, {method: "POST", body: file,
                               headers: {"Content-Type": file.type || "application/octet-stream"}});
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
async function classify(file) {
  status("classifying " + file.name + "\u2026");
  $("results").innerHTML = ""; $("top1").textContent = ""; $("box").style.display = "none";
  try {
    const p = await post("/v1/predict?topk=5", file);
    for (const c of p.topk) {
      const row = document.createElement("div"); row.className = "row";
      const name = document.createElement("span"); name.className = "name"; name.textContent = c.class;
      const bar = document.createElement("span"); bar.className = "bar"; bar.style.width = Math.max(1, 200 * c.prob) + "px";
      const pct = document.createElement("span"); pct.textContent = (100 * c.prob).toFixed(1) + "%";
      row.append(name, bar, pct); $("results").append(row);
    }
    $("top1").textContent = p.topk[0].class;
    const e = await post("/v1/explain?format=json", file);
    $("overlay").src = "data:image/png;base64," + e.overlay_png;
    const s = 320 / e.input_size[0], b = e.input_box;
    Object.assign($("box").style, {left: b.x * s + "px", top: b.y * s + "px",
      width: b.width * s + "px", height: b.height * s + "px", display: "block"});
    $("explained").textContent = `Grad-CAM of ${e.class} (${(100 * e.prob).toFixed(1)}%)`;
    if (hasGallery) {
      const g = await post("/v1/search?k=5", file);
      $("similar-box").style.display = "block"; $("similar").innerHTML = "";
      for (const n of g.neighbours) {
        const tr = document.createElement("tr");
        for (const v of [n.class, n.score.toFixed(3), n.path]) {
          const td = document.createElement("td"); td.textContent = v; tr.append(td);
        }
        $("similar").append(tr);
      }
    }
    status("done");
  } catch (err) { status("error: " + err.message, true); }
}
$("file").addEventListener("change", (ev) => { if (ev.target.files[0]) classify(ev.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over");
  if (ev.dataTransfer.files[0]) classify(ev.dataTransfer.files[0]); });
</script></body></html>
)HTML";

}  // namespace finch::serve
