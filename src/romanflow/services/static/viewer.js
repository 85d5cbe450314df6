// romanflow sky viewer: the survey's HiPS per band and in colour, product footprints, catalog sources
// loaded by cone search as the view moves, and for a clicked source its catalog row, its cutouts in
// every band (SODA) and its light curve from forced photometry. Everything comes from this server.
import A from "./vendor/aladin.js";

const base = new URL(".", document.baseURI);  // the server's root, whatever path it is mounted under
const url = (path) => new URL(path, base).href;
const $ = (id) => document.getElementById(id);

const state = {
  aladin: null, config: null, sources: null, footprints: null, lastCone: null, coneTimer: null,
  renderStart: performance.now(), firstRender: null,
};
window.romanflowViewer = state;  // for tests and the console

function status(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function getJSON(path) {
  const response = await fetch(url(path));
  if (!response.ok) {
    let detail = "";
    try { detail = (await response.json()).error || ""; } catch { /* not JSON */ }
    throw new Error(`${path}: HTTP ${response.status} ${detail}`);
  }
  return response.json();
}

// ------------------------------------------------------------------ coordinates
export function parseCoordinates(text) {
  const t = text.trim().replace(/,/g, " ");
  const parts = t.split(/[\s:hdms°'"]+/).filter((p) => p.length);
  if (parts.length === 2) {
    const ra = Number(parts[0]), dec = Number(parts[1]);
    if (Number.isFinite(ra) && Number.isFinite(dec) && dec >= -90 && dec <= 90) return [((ra % 360) + 360) % 360, dec];
  }
  if (parts.length === 6) {
    const n = parts.map(Number);
    if (n.every(Number.isFinite)) {
      const sign = parts[3].startsWith("-") ? -1 : 1;
      const ra = 15 * (n[0] + n[1] / 60 + n[2] / 3600);
      const dec = sign * (Math.abs(n[3]) + n[4] / 60 + n[5] / 3600);
      if (ra >= 0 && ra < 360 && Math.abs(dec) <= 90) return [ra, dec];
    }
  }
  return null;
}

// ------------------------------------------------------------------ surveys
function surveyLayer(tree) {
  return A.imageHiPS(url(tree.url), {
    name: tree.title, imgFormat: "png", maxOrder: tree.order, cooFrame: "equatorial",
  });
}

function showSurvey(name) {
  const tree = state.config.hips.find((t) => t.name === name);
  if (!tree) return;
  state.aladin.setBaseImageLayer(surveyLayer(tree));
  state.currentSurvey = name;
}

// ------------------------------------------------------------------ footprints and sources
async function loadFootprints(ra, dec, radius) {
  const data = await getJSON(`viewer/footprints?ra=${ra}&dec=${dec}&radius=${radius}`);
  state.footprints.removeAll();
  for (const item of data.footprints) {
    if (!item.s_region) continue;
    try {
      const shapes = A.footprintsFromSTCS(item.s_region, {
        color: item.level === "L3" ? "#4fc3f7" : "#ffb74d", lineWidth: 1,
      });
      state.footprints.addFootprints(shapes);
    } catch (err) {
      console.warn(`footprint of ${item.obs_id} not drawn: ${err}`);
    }
  }
  state.footprintCount = data.footprints.length;
}

async function loadSources(ra, dec, radius) {
  const data = await getJSON(`viewer/sources?ra=${ra}&dec=${dec}&radius=${radius}&maxrec=5000`);
  const col = Object.fromEntries(data.columns.map((c, i) => [c, i]));
  const sources = data.rows.map((row) => {
    const record = Object.fromEntries(data.columns.map((c, i) => [c, row[i]]));
    return A.source(row[col.ra], row[col.dec], record);
  });
  state.sources.removeAll();
  state.sources.addSources(sources);
  state.sourceCount = sources.length;
  status(`${sources.length} sources within ${(radius * 60).toFixed(2)}′`);
}

function viewCone() {
  const [ra, dec] = state.aladin.getRaDec();
  const fov = state.aladin.getFov();
  const radius = Math.min(0.5, 0.5 * Math.hypot(fov[0], fov[1]));
  return [ra, dec, radius];
}

function scheduleCone() {
  clearTimeout(state.coneTimer);
  state.coneTimer = setTimeout(refreshCone, 250);
}

async function refreshCone() {
  const [ra, dec, radius] = viewCone();
  const key = `${ra.toFixed(5)} ${dec.toFixed(5)} ${radius.toFixed(5)}`;
  if (key === state.lastCone) return;
  state.lastCone = key;
  try {
    const jobs = [];
    if ($("show-sources").checked) jobs.push(loadSources(ra, dec, radius));
    if ($("show-footprints").checked) jobs.push(loadFootprints(ra, dec, radius));
    await Promise.all(jobs);
    state.coneDone = (state.coneDone || 0) + 1;
  } catch (err) {
    status(String(err.message || err), true);
  }
}

// ------------------------------------------------------------------ a clicked source
function fillRow(columns, row) {
  const table = $("source-row");
  table.replaceChildren();
  columns.forEach((name, i) => {
    const tr = table.insertRow();
    tr.insertCell().textContent = name;
    const v = row[i];
    tr.insertCell().textContent = typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(8) : String(v);
  });
}

async function showCutouts(ra, dec, token) {
  const box = $("cutouts");
  const images = await getJSON(`viewer/images?ra=${ra}&dec=${dec}`);
  if (token !== state.selectionToken) return;  // another source was clicked meanwhile
  box.replaceChildren();
  for (const image of images.images) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.width = 128; img.height = 128;
    img.alt = `${image.band} cutout`;
    img.dataset.band = image.band;
    const id = encodeURIComponent(`ivo://romanflow/${image.obs_id}`);
    const circle = encodeURIComponent(`${ra} ${dec} ${3 / 3600}`);
    img.src = url(`soda/sync?ID=${id}&CIRCLE=${circle}&RESPONSEFORMAT=image/png`);
    const caption = document.createElement("figcaption");
    caption.textContent = image.band;
    figure.append(img, caption);
    box.append(figure);
  }
  if (!images.images.length) box.textContent = "no mosaic covers this position";
}

const BAND_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

export function lightCurveSVG(points, width = 380, height = 220) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "light curve");
  const m = { l: 58, r: 10, t: 10, b: 34 };
  const day0 = Math.floor(Math.min(...points.map((p) => p.mjd)));
  const t = points.map((p) => p.mjd - day0), f = points.map((p) => p.flux);
  const lo = points.map((p) => p.flux - (p.flux_err || 0)), hi = points.map((p) => p.flux + (p.flux_err || 0));
  let t0 = Math.min(...t), t1 = Math.max(...t);
  if (t1 - t0 < 1e-6) { t0 -= 0.01; t1 += 0.01; }
  let f0 = Math.min(...lo), f1 = Math.max(...hi);
  if (f1 - f0 <= 0) { f0 -= 1; f1 += 1; }
  const pad = 0.08 * (f1 - f0); f0 -= pad; f1 += pad;
  const X = (v) => m.l + ((v - t0) / (t1 - t0)) * (width - m.l - m.r);
  const Y = (v) => height - m.b - ((v - f0) / (f1 - f0)) * (height - m.t - m.b);
  const el = (name, attrs, text) => {
    const e = document.createElementNS(ns, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e); return e;
  };
  el("line", { x1: m.l, y1: height - m.b, x2: width - m.r, y2: height - m.b, stroke: "#333" });
  el("line", { x1: m.l, y1: m.t, x2: m.l, y2: height - m.b, stroke: "#333" });
  for (const v of [f0 + pad, (f0 + f1) / 2, f1 - pad]) {
    el("text", { x: m.l - 4, y: Y(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#333" }, v.toPrecision(4));
  }
  for (const v of [t0, t1]) {
    el("text", { x: X(v), y: height - m.b + 14, "text-anchor": v === t0 ? "start" : "end", "font-size": 10, fill: "#333" },
       t1 - t0 < 0.1 ? v.toFixed(5) : v.toFixed(2));
  }
  el("text", { x: (width + m.l) / 2, y: height - 4, "text-anchor": "middle", "font-size": 11, fill: "#333" }, `MJD − ${day0}`);
  el("text", { x: 12, y: height / 2, transform: `rotate(-90 12 ${height / 2})`, "text-anchor": "middle", "font-size": 11, fill: "#333" }, "PSF flux (nJy)");
  const bands = [...new Set(points.map((p) => p.band))];
  points.forEach((p) => {
    const colour = BAND_COLOURS[bands.indexOf(p.band) % BAND_COLOURS.length];
    const tp = p.mjd - day0;
    if (p.flux_err) el("line", { x1: X(tp), x2: X(tp), y1: Y(p.flux - p.flux_err), y2: Y(p.flux + p.flux_err), stroke: colour });
    el("circle", { cx: X(tp), cy: Y(p.flux), r: 3.5, fill: colour, class: "point", "data-band": p.band });
  });
  bands.forEach((b, i) => {
    el("text", { x: width - m.r - 4, y: m.t + 12 + 13 * i, "text-anchor": "end", "font-size": 11,
                 fill: BAND_COLOURS[i % BAND_COLOURS.length] }, b);
  });
  return svg;
}

async function showLightCurve(ra, dec, token) {
  const box = $("lightcurve");
  box.textContent = "loading…";
  const data = await getJSON(`viewer/lightcurve?ra=${ra}&dec=${dec}`);
  if (token !== state.selectionToken) return;
  box.replaceChildren();
  if (!data.points.length) { box.textContent = "no forced photometry at this position"; return; }
  box.append(lightCurveSVG(data.points));
}

async function selectSource(record) {
  $("details").hidden = false;
  $("source-title").textContent = `${record.catalog_obs_id} row ${record.row_index}`;
  state.selected = record;
  const token = (state.selectionToken = (state.selectionToken || 0) + 1);
  try {
    const row = await getJSON(`viewer/row?catalog=${encodeURIComponent(record.catalog_obs_id)}&row=${record.row_index}`);
    if (token !== state.selectionToken) return;
    fillRow(row.columns, row.rows[0]);
    await Promise.all([showCutouts(record.ra, record.dec, token), showLightCurve(record.ra, record.dec, token)]);
    if (token === state.selectionToken) state.detailsShown = (state.detailsShown || 0) + 1;
  } catch (err) {
    status(String(err.message || err), true);
  }
}

// ------------------------------------------------------------------ start
async function main() {
  state.config = await getJSON("viewer/config.json");
  await A.init;
  const cfg = state.config;
  const first = cfg.hips.find((t) => t.colour) || cfg.hips[0];
  const options = {
    target: `${cfg.ra} ${cfg.dec}`, fov: cfg.fov || 0.1, projection: "TAN", cooFrame: "ICRS",
    showReticle: false, showCooGrid: false, showSimbadPointerControl: false, showShareControl: false,
    showContextMenu: false, showProjectionControl: false, showFullscreenControl: false, showSettingsControl: false,
    showLayersControl: false, showCooGridControl: false, showStatusBar: false, showFrame: false,
    showGotoControl: false, hipsList: [], log: false,
  };
  if (first) options.survey = url(first.url);
  state.aladin = A.aladin("#aladin", options);
  if (first) showSurvey(first.name);

  const select = $("survey");
  for (const tree of cfg.hips) {
    const opt = document.createElement("option");
    opt.value = tree.name; opt.textContent = tree.colour ? `colour (${tree.band})` : tree.name;
    select.append(opt);
  }
  if (first) select.value = first.name;
  select.addEventListener("change", () => showSurvey(select.value));

  state.footprints = A.graphicOverlay({ name: "footprints", color: "#4fc3f7", lineWidth: 1 });
  state.aladin.addOverlay(state.footprints);
  state.sources = A.catalog({ name: "sources", sourceSize: 12, color: "#ff4081", shape: "circle" });
  state.aladin.addCatalog(state.sources);

  state.aladin.on("objectClicked", (object) => {
    if (object && object.data && object.data.catalog_obs_id !== undefined) selectSource(object.data);
  });
  state.aladin.on("positionChanged", scheduleCone);
  state.aladin.on("zoomChanged", scheduleCone);
  $("show-sources").addEventListener("change", (e) => { state.sources[e.target.checked ? "show" : "hide"](); state.lastCone = null; scheduleCone(); });
  $("show-footprints").addEventListener("change", (e) => { state.footprints[e.target.checked ? "show" : "hide"](); state.lastCone = null; scheduleCone(); });
  $("close-details").addEventListener("click", () => { $("details").hidden = true; });
  $("goto").addEventListener("submit", (event) => {
    event.preventDefault();
    const where = parseCoordinates($("coords").value);
    if (!where) { status(`not coordinates: ${$("coords").value}`, true); return; }
    state.aladin.gotoRaDec(where[0], where[1]);
    status(`centred on ${where[0].toFixed(5)} ${where[1].toFixed(5)}`);
    scheduleCone();
  });
  state.selectSource = selectSource;
  state.ready = true;
  state.readyAt = performance.now() - state.renderStart;
  await refreshCone();
  if (!cfg.hips.length) status("no HiPS tree in this archive yet (romanflow hips ... -o <archive root>/hips)");
}

main().catch((err) => { status(String(err.message || err), true); console.error(err); });
