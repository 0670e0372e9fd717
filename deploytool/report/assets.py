"""The HTML report's style sheet and script, as constants (no external files, scripts or fonts)."""

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto; max-width: 1500px;
       padding: 0 1em; color: #222; line-height: 1.35; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: 0.2em; }
h2 small { font-weight: normal; color: #666; font-size: 0.7em; }
p.meta { color: #555; margin-top: 0; }
p.callout { background: #fff7e0; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; }
table { border-collapse: collapse; font-size: 12px; margin: 0.6em 0; }
th, td { border: 1px solid #d0d0d0; padding: 2px 5px; text-align: right; white-space: nowrap; }
div.scroll { overflow-x: auto; } th[title] { cursor: help; }
table.device-table thead th { white-space: normal; max-width: 7.5em; vertical-align: bottom; }
table.device-table thead th.seq { max-width: none; }
th { background: #f2f4f7; } thead th { position: sticky; top: 0; }
td.txt, th.txt { text-align: left; }
td.pass { background: #dcf2dc; } td.fail { background: #f8dada; cursor: help; } td.uncertain { background: #fff0c8; cursor: help; }
td.proj { background: #eef3fb; font-style: italic; } th.proj { background: #dfe8f7; }
th.seq { background: #e6e9ef; border-bottom: 2px solid #999; }
td.seqstart, th.seqstart { border-left: 2px solid #999; }
tbody.prec { border-top: 2px solid #999; }
tr.best td { font-weight: bold; background-color: #fffbe0; } tr.best td.pass { background: #c6ebc6; }
tr.nofit td.txt:first-child { color: #777; }
table.summary td, table.summary th { font-size: 14px; padding: 5px 9px; vertical-align: top; }
table.summary td.budget { white-space: normal; font-size: 12px; color: #444; min-width: 14em; }
td.nofits { color: #a00; text-align: left; white-space: normal; max-width: 60em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; font-size: 13px; margin: 0.4em 0; }
dl.facts dt { font-weight: bold; color: #444; } dl.facts dd { margin: 0; }
figure { margin: 1em 0; } img { max-width: 100%; } figcaption { color: #555; font-size: 13px; }
ul.notes li { margin: 0.2em 0; font-size: 13px; }
"""

# marks each plot as rendered once decoded (checked by tests in headless Chromium)
SCRIPT = """<script>/* marks each plot as rendered once decoded (checked by tests in headless Chromium) */
window.addEventListener("load", function () {
  for (const img of document.images) img.dataset.rendered = img.naturalWidth > 0 ? "yes" : "no";
  document.body.dataset.plots = String(document.images.length);
  document.body.dataset.deviceTables = String(document.querySelectorAll("table.device-table").length);
});</script>"""
