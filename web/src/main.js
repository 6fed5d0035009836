// The loan officer's page. Everything goes through the same /v1 API as any client, with
// the officer's key; the server's role and branch rules decide what is shown.
import L from "./leaflet-global.js";
import "leaflet.markercluster";
import uPlot from "uplot";
import "leaflet/dist/leaflet.css";
import "leaflet.markercluster/dist/MarkerCluster.css";
import "leaflet.markercluster/dist/MarkerCluster.Default.css";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { showClaimForm } from "./claims.js";

const KEY = "agri-api-key";
const state = { key: sessionStorage.getItem(KEY), loans: [], sort: ["loan_id", 1] };
const $ = (selector) => document.querySelector(selector);

// --- the API ------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${state.key}` };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail;
    } catch (_) {
      /* not a problem document */
    }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response;
}
const getJSON = async (path, options) => (await api(path, options)).json();
const blobURL = async (path) => URL.createObjectURL(await (await api(path)).blob());

function say(text) {
  $("#status").textContent = text;
}

// --- formatting ---------------------------------------------------------------------

const cny = (v) =>
  v == null ? "-" : Number(v).toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const pct = (v) => (v == null ? "-" : `${Math.round(Number(v) * 100)}%`);
const day = (iso) => (iso ? iso.slice(0, 10) : "-");
const esc = (text) =>
  String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const STATUS = { ok: "OK", watch: "Watch", margin_call: "Margin call" };

// --- sign in ------------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  let me;
  try {
    me = await getJSON("/v1/me");
  } catch (error) {
    sessionStorage.removeItem(KEY);
    $("#signin-error").textContent =
      error.status === 401 ? "That key is unknown or revoked." : `Cannot sign in: ${error.message}`;
    return;
  }
  sessionStorage.setItem(KEY, key);
  $("#who").textContent = me.branch ? `${me.role} · ${me.branch}` : me.role;
  $("#signin").hidden = true;
  $("#app").hidden = false;
  try {
    await start();
  } catch (error) {
    console.error(error);
    say(`Could not load everything: ${error.message ?? error}. Check the connection and reload.`);
  }
}

$("#signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("#key").value.trim());
});
$("#signout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.reload();
});
$("#print").addEventListener("click", () => window.print());
$("#portfolio").addEventListener("click", () => showPortfolio());
$("#new-claim").addEventListener("click", () =>
  showClaimForm({ $, api, getJSON, map, say, esc, cny, pct, chart, seconds })
);

// --- the map ------------------------------------------------------------------------

let map, parcelLayer, farmLayer, animalLayer, overlay;

function makeMap() {
  // No tile server: our own overlays on a plain background, so the page works offline.
  map = L.map("map", { attributionControl: false, preferCanvas: true, zoomSnap: 0.25, minZoom: 3, maxZoom: 19 });
  map.setView([25.06, 118.2], 13);
  window.agriMap = map; // for the browser tests and the console
  L.control.scale({ imperial: false }).addTo(map);
  const Coordinates = L.Control.extend({
    onAdd() {
      const div = L.DomUtil.create("div", "coordinates");
      div.id = "coordinates";
      const show = (latlng, what) => (div.textContent = `${what} ${latlng.lat.toFixed(5)}, ${latlng.lng.toFixed(5)}`);
      map.on("mousemove", (e) => show(e.latlng, "cursor"));
      map.on("moveend", () => show(map.getCenter(), "centre"));
      return div;
    },
  });
  new Coordinates({ position: "bottomright" }).addTo(map);
}

function healthColour(h) {
  if (h == null) return "#9e9e9e";
  const hue = Math.max(0, Math.min(1, h)) * 120; // red 0 .. green 120
  return `hsl(${hue}, 65%, 45%)`;
}

async function drawAssets() {
  // a forest pledged for its carbon is pledged land too
  const pledgedParcels = new Set(state.loans.flatMap((l) => [...l.parcel_ids, ...(l.carbon ?? []).map((c) => c.parcel_id)]));
  const pledgedFarms = new Set(state.loans.flatMap((l) => l.herds.map((h) => h.farm_id)));
  // only the branch's pledged parcels travel over the (possibly poor) line
  const ids = encodeURIComponent([...pledgedParcels].join(","));
  const [parcels, farms] = await Promise.all([
    pledgedParcels.size ? getJSON(`/v1/parcels?ids=${ids}&limit=1000`) : { type: "FeatureCollection", features: [] },
    getJSON("/v1/farms"),
  ]);
  farms.features = farms.features.filter((f) => pledgedFarms.has(f.id));
  parcelLayer?.remove();
  farmLayer?.remove();
  animalLayer?.remove();
  parcelLayer = L.geoJSON(parcels, {
    style: (f) => {
      const open = (f.properties.disturbance || "").includes("open");
      return {
        color: open ? "#d50000" : "#37474f",
        weight: open ? 3 : 1,
        fillColor: healthColour(f.properties.health_index),
        fillOpacity: 0.55,
      };
    },
    onEachFeature: (f, layer) => {
      layer.bindTooltip(`${f.id} · ${f.properties.kind} · health ${f.properties.health_index?.toFixed(2) ?? "-"}`);
      layer.on("click", () => selectParcel(f.id));
    },
  }).addTo(map);
  farmLayer = L.geoJSON(farms, {
    style: { color: "#1565c0", weight: 2, dashArray: "6 4", fillOpacity: 0.05 },
    onEachFeature: (f, layer) => {
      layer.bindTooltip(`${f.id} · ${f.properties.name ?? ""}`);
      layer.on("click", () => selectFarm(f.id));
    },
  }).addTo(map);
  animalLayer = L.markerClusterGroup({ showCoverageOnHover: false, maxClusterRadius: 40 });
  for (const farm of farms.features) {
    const { animals } = await getJSON(`/v1/farms/${encodeURIComponent(farm.id)}/animals`);
    for (const a of animals.filter((x) => x.lat != null)) {
      animalLayer.addLayer(
        L.circleMarker([a.lat, a.lon], {
          radius: 5,
          color: a.verified ? "#2e7d32" : "#ef6c00",
          fillOpacity: 0.8,
        }).bindTooltip(`${a.tag_id} (${a.category})${a.verified ? "" : `: ${a.reason}`}`)
      );
    }
  }
  animalLayer.addTo(map);
  const all = L.featureGroup([parcelLayer, farmLayer]);
  if (all.getLayers().some((g) => g.getLayers().length)) map.fitBounds(all.getBounds(), { padding: [20, 20] });
  $("#map").dataset.parcels = parcels.features.length;
  $("#map").dataset.farms = farms.features.length;
}

async function showOverlay(parcelId) {
  overlay?.remove();
  try {
    const info = await getJSON(`/v1/parcels/${encodeURIComponent(parcelId)}/ndvi-overlay`);
    overlay = L.imageOverlay(await blobURL(info.image), info.bounds, { opacity: 0.85 }).addTo(map);
    overlay.bringToBack();
    const legend = $("#legend");
    legend.src = await blobURL(info.legend);
    legend.hidden = false;
    legend.title = `NDVI of ${info.scene_id} (${day(info.acquired_at)})`;
    return info;
  } catch (error) {
    say(`No NDVI overlay: ${error.message}`);
    return null;
  }
}

// --- loans --------------------------------------------------------------------------

function sortKey(loan, key) {
  const v = loan.latest_valuation;
  return {
    loan_id: loan.loan_id,
    borrower: loan.borrower,
    principal: Number(loan.principal_cny),
    value: v ? Number(v.eligible_value_cny) : -1,
    ltv: v?.ltv ? Number(v.ltv) : Infinity,
    status: v ? ["ok", "watch", "margin_call"].indexOf(v.status) : -1,
  }[key];
}

function drawLoans() {
  const [key, dir] = state.sort;
  const rows = [...state.loans].sort((a, b) => (sortKey(a, key) > sortKey(b, key) ? dir : -dir));
  $("#loans tbody").innerHTML = rows
    .map((l) => {
      const v = l.latest_valuation;
      return `<tr data-loan="${esc(l.loan_id)}" tabindex="0">
        <td>${esc(l.loan_id)}</td><td>${esc(l.borrower)}</td>
        <td class="num">${cny(l.principal_cny)}</td><td class="num">${cny(v?.eligible_value_cny)}</td>
        <td class="num">${v?.ltv ?? "-"}</td>
        <td><span class="status ${esc(v?.status ?? "none")}">${STATUS[v?.status] ?? "not valued"}</span></td></tr>`;
    })
    .join("");
  $("#no-loans").hidden = rows.length > 0;
  const carbon = state.loans.reduce((sum, l) => sum + Number(l.latest_valuation?.carbon_t_co2e ?? 0), 0);
  const carbonLoans = state.loans.filter((l) => Number(l.latest_valuation?.carbon_t_co2e ?? 0) > 0).length;
  $("#portfolio-carbon").dataset.total = carbon.toFixed(3);
  $("#portfolio-carbon").textContent = carbon
    ? `Pledged forest carbon: ${carbon.toLocaleString("en", { maximumFractionDigits: 0 })} t CO2e in ${carbonLoans} loan(s)`
    : "";
  for (const tr of document.querySelectorAll("#loans tbody tr")) {
    tr.addEventListener("click", () => selectLoan(tr.dataset.loan));
    tr.addEventListener("keydown", (e) => e.key === "Enter" && selectLoan(tr.dataset.loan));
  }
}

for (const th of document.querySelectorAll("#loans th")) {
  th.addEventListener("click", () => {
    state.sort = [th.dataset.sort, state.sort[0] === th.dataset.sort ? -state.sort[1] : 1];
    drawLoans();
  });
}

async function loadLoans() {
  state.loans = await getJSON("/v1/loans");
  drawLoans();
}

async function selectLoan(loanId) {
  say(`Loading ${loanId}…`);
  const loan = state.loans.find((l) => l.loan_id === loanId);
  const [history, alerts] = await Promise.all([
    getJSON(`/v1/loans/${encodeURIComponent(loanId)}/valuations`),
    getJSON(`/v1/alerts?loan_id=${encodeURIComponent(loanId)}`),
  ]);
  const latest = history.length ? await getJSON(`/v1/valuations/${history[history.length - 1].valuation_id}`) : null;
  const detail = $("#detail");
  detail.innerHTML = `
    <h2>Loan ${esc(loanId)} · ${esc(loan.borrower)}</h2>
    <p>Branch ${esc(loan.branch)} · principal outstanding <strong>${cny(loan.principal_cny)} CNY</strong>
      <button id="revalue" type="button">Revalue now</button></p>
    ${latest ? valuationHTML(latest) : "<p>Not valued yet.</p>"}
    <h3>Valuation history</h3><div id="history-chart" class="chart"></div>
    <h3>Open alerts</h3>${alertsHTML(alerts)}`;
  detail.dataset.loan = loanId;
  $("#revalue").addEventListener("click", () => revalue(loanId));
  for (const a of detail.querySelectorAll("a[data-parcel]")) a.addEventListener("click", (e) => (e.preventDefault(), selectParcel(a.dataset.parcel)));
  for (const a of detail.querySelectorAll("a[data-farm]")) a.addEventListener("click", (e) => (e.preventDefault(), selectFarm(a.dataset.farm)));
  historyChart(history);
  const pledged = parcelLayer?.getLayers().filter((layer) => loan.parcel_ids.includes(layer.feature.id)) || [];
  if (pledged.length) map.fitBounds(L.featureGroup(pledged).getBounds(), { padding: [30, 30], maxZoom: 16 });
  say("");
}

function valuationHTML(v) {
  const items = v.items
    .map((i) => {
      const e = i.evidence;
      const when = e.latest_clear_image ? `clear image ${day(e.latest_clear_image)}` : e.last_reading_at ? `tags ${day(e.last_reading_at)}` : "";
      const counted = e.verified != null ? `${e.verified} of ${e.registered} verified` : "";
      const ref =
        i.kind === "herd"
          ? `<a href="#" data-farm="${esc(e.farm_id)}">${esc(i.ref)}</a>`
          : `<a href="#" data-parcel="${esc(i.ref)}">${esc(i.ref)}</a>`;
      return `<tr data-ref="${esc(i.ref)}" data-kind="${esc(i.kind)}">
        <td>${esc(i.kind)}</td><td>${ref}</td><td class="num">${cny(i.value_cny)}</td>
        <td class="num">${pct(i.haircut)}</td><td class="num eligible">${cny(i.eligible_value_cny)}</td>
        <td>${esc(i.confidence)}</td><td>${esc([when, counted].filter(Boolean).join(", "))}</td></tr>
        <tr class="formula"><td></td><td colspan="6">${esc(i.formula)}${
          e.haircut.reasons.length ? `<br><em>${esc(e.haircut.reasons.join("; "))}</em>` : ""
        }</td></tr>`;
    })
    .join("");
  return `
    <p>Valuation <code>${esc(v.valuation_id)}</code> as of ${esc(v.as_of.slice(0, 16).replace("T", " "))} UTC
      (prices ${esc(v.prices_version)}, policy ${esc(v.policy_version)}${v.illustrative_tables ? ", illustrative tables" : ""})</p>
    <table class="breakdown"><thead><tr><th>Kind</th><th>Asset</th><th class="num">Value CNY</th><th class="num">Haircut</th>
      <th class="num">Eligible CNY</th><th>Confidence</th><th>Evidence</th></tr></thead><tbody>${items}</tbody>
      <tfoot><tr><td></td><td>Total</td><td class="num" data-field="collateral">${cny(v.collateral_value_cny)}</td><td></td>
      <td class="num" data-field="eligible">${cny(v.eligible_value_cny)}</td><td colspan="2"></td></tr></tfoot></table>
    <p class="ltv">LTV <strong data-field="ltv">${esc(v.ltv ?? "n/a")}</strong> ·
      <span class="status ${esc(v.status)}" data-field="status">${STATUS[v.status]}</span>
      (watch at ${esc(v.thresholds.watch)}, margin call at ${esc(v.thresholds.margin_call)})</p>
    <p class="formula">${esc(v.formula)}</p>`;
}

function alertsHTML(alerts) {
  if (!alerts.length) return "<p>None.</p>";
  return `<ul class="alerts">${alerts
    .map((a) => `<li data-alert="${esc(a.kind)}"><strong>${esc(a.kind)}</strong> ${esc(a.subject)}: ${esc(a.detail)} <small>since ${day(a.opened_at)}</small></li>`)
    .join("")}</ul>`;
}

async function revalue(loanId) {
  say(`Revaluing ${loanId}…`);
  try {
    await api(`/v1/loans/${encodeURIComponent(loanId)}/valuations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    await loadLoans();
    await selectLoan(loanId);
    say(`${loanId} revalued.`);
  } catch (error) {
    say(`Revaluation failed: ${error.message}`);
  }
}

// --- the branch portfolio ---------------------------------------------------------

function loanLinks(ids) {
  return ids.map((id) => `<a href="#" data-loan-link="${esc(id)}">${esc(id)}</a>`).join(", ") || "-";
}

async function showPortfolio() {
  say("Loading the portfolio…");
  const p = await getJSON("/v1/portfolio");
  const rows = (entries, label) =>
    Object.entries(entries)
      .map(([k, v]) => `<tr data-figure="${esc(label)}:${esc(k)}"><td>${esc(k)}</td><td class="num">${v.count ?? v.ha}</td><td>${v.oldest_days != null ? `oldest ${v.oldest_days} days · ` : ""}${loanLinks(v.loan_ids)}</td></tr>`)
      .join("");
  const detail = $("#detail");
  delete detail.dataset.loan;
  detail.innerHTML = `
    <h2>Portfolio · ${esc(p.branch ?? "all branches")}</h2>
    <p>${p.loans} active loans · principal <strong data-figure="principal">${cny(p.principal_cny)}</strong> CNY ·
      eligible <strong data-figure="eligible">${cny(p.eligible_value_cny)}</strong> CNY · LTV <strong>${esc(p.ltv ?? "n/a")}</strong></p>
    <h3>Loans by status</h3><table class="breakdown">${rows(p.by_status, "status")}</table>
    <h3>LTV</h3><table class="breakdown">${rows(p.ltv_bands, "ltv")}</table>
    <h3>Open alerts by kind</h3><table class="breakdown">${rows(p.open_alerts, "alerts") || "<tr><td>None.</td></tr>"}</table>
    <h3>Pledged land (ha)</h3><table class="breakdown">${rows(p.pledged_ha, "ha")}</table>
    <p>Verified headcount: ${Object.entries(p.verified_headcount).map(([c, n]) => `${esc(c)} <strong>${n}</strong>`).join(" · ") || "-"}</p>
    <p>Pledged forest carbon: <strong data-figure="carbon">${Number(p.pledged_carbon_t_co2e).toLocaleString("en")}</strong> t CO2e</p>`;
  for (const a of detail.querySelectorAll("a[data-loan-link]")) a.addEventListener("click", (e) => (e.preventDefault(), selectLoan(a.dataset.loanLink)));
  const all = parcelLayer ? L.featureGroup([parcelLayer, farmLayer]) : null;
  if (all && all.getLayers().some((g) => g.getLayers().length)) map.fitBounds(all.getBounds(), { padding: [20, 20] });
  say("");
}

// --- charts -------------------------------------------------------------------------

const seconds = (iso) => Date.parse(iso.length === 10 ? `${iso}T00:00:00Z` : iso) / 1000;

function chart(el, series, data, extra = {}) {
  el.innerHTML = "";
  const width = Math.max(320, el.clientWidth || 600);
  return new uPlot({ width, height: 220, series: [{}, ...series], axes: [{}, { size: 70 }], ...extra }, data, el);
}

function historyChart(history) {
  const el = $("#history-chart");
  if (history.length === 0) {
    el.textContent = "No valuations yet.";
    return;
  }
  chart(
    el,
    [
      { label: "eligible CNY", stroke: "#2e7d32", width: 2, points: { show: true } },
      { label: "LTV", stroke: "#c62828", scale: "ltv", points: { show: true } },
    ],
    [history.map((h) => seconds(h.as_of)), history.map((h) => Number(h.eligible_value_cny)), history.map((h) => (h.ltv ? Number(h.ltv) : null))],
    { axes: [{}, { size: 80 }, { scale: "ltv", side: 1, grid: { show: false } }] }
  );
}

async function selectParcel(parcelId) {
  say(`Loading ${parcelId}…`);
  const [profile, info] = await Promise.all([
    getJSON(`/v1/parcels/${encodeURIComponent(parcelId)}/profile`),
    showOverlay(parcelId),
  ]);
  const detail = $("#detail");
  detail.dataset.parcel = parcelId;
  const events = profile.events.length
    ? `<ul class="events">${profile.events
        .map((e) => `<li data-event="${esc(e.state)}">${esc(e.kind)} ${esc(e.state)}: from ${esc(e.start)} to ${esc(e.end ?? "now")}, severity ${pct(e.severity)}, ${e.affected_ha ?? "?"} ha affected, confirmed ${esc(e.confirmed)} (${e.detection_delay_days} days after it was first seen)</li>`)
        .join("")}</ul>`
    : "<p>No disturbance.</p>";
  const suspected = profile.suspected.length
    ? `<ul class="suspected">${profile.suspected
        .map((s) => `<li data-suspected="${esc(s.state)}">possible damage from ${esc(s.start)}, ${s.affected_ha ?? "?"} ha: ${esc(s.reason)}</li>`)
        .join("")}</ul>`
    : "";
  const sampling = profile.sampling;
  const sure = sampling
    ? ` · from ${sampling.clear_dates} clear image(s) in the last ${sampling.window_days} days, longest wait ${sampling.largest_gap_days ?? "-"} days`
    : "";
  detail.innerHTML = `
    <h2>Parcel ${esc(parcelId)} · ${esc(profile.kind)} · ${Number(profile.area_ha).toFixed(2)} ha</h2>
    <p>Health index <strong>${profile.health_index?.toFixed(2) ?? "-"}</strong> as of ${day(profile.as_of)}<span class="sampling">${esc(sure)}</span>${
      info ? ` · map shows NDVI of ${day(info.acquired_at)}` : ""
    }</p>
    <p id="parcel-carbon" class="carbon"></p>
    <div id="profile-chart" class="chart"></div>
    <p class="hint">Dots: cloud-free observations; line: smoothed NDVI; band: the parcel's usual range for the time of year.</p>
    <h3>Events</h3>${events}${suspected}`;
  profileChart(profile);
  if (profile.kind === "forest") showCarbon(parcelId);
  const layer = parcelLayer?.getLayers().find((l) => l.feature.id === parcelId);
  if (layer) {
    parcelLayer.resetStyle();
    layer.setStyle({ fillOpacity: 0.08 }); // let the NDVI overlay show through
    map.fitBounds(layer.getBounds(), { padding: [40, 40], maxZoom: 16 });
  }
  say("");
}

async function showCarbon(parcelId) {
  const el = $("#parcel-carbon");
  try {
    const c = await getJSON(`/v1/parcels/${encodeURIComponent(parcelId)}/carbon`);
    el.dataset.stock = c.stock_t_co2e;
    el.innerHTML = `Carbon: stock <strong>${Number(c.stock_t_co2e).toLocaleString("en")} t CO2e</strong>, ${Number(
      c.annual_t_co2e
    ).toLocaleString("en")} t CO2e a year${Number(c.reversed_t_co2e) > 0 ? `, <strong>${Number(c.reversed_t_co2e).toLocaleString("en")} t reversed</strong> by a disturbance` : ""} <span class="hint">(${esc(c.species_group)}, ${esc(c.age_class)}; table ${esc(c.table_version)})</span>`;
  } catch (error) {
    el.textContent = `Carbon not accounted: ${error.message}`;
  }
}

function profileChart(profile) {
  const points = new Map();
  const at = (iso) => {
    const t = seconds(iso);
    if (!points.has(t)) points.set(t, { obs: null, smooth: null, lo: null, hi: null });
    return points.get(t);
  };
  for (const o of profile.observations) if (o.ndvi_mean != null && o.valid_fraction >= 0.6) at(o.acquired_at.slice(0, 10)).obs = o.ndvi_mean;
  for (const s of profile.smoothed) at(s.date).smooth = s.ndvi;
  // the usual range reaches down by the usual dip (plucking, pruning, a hazy scene)
  for (const b of profile.baseline) Object.assign(at(b.date), { lo: b.expected - (b.allowance ?? 0) - 2 * b.spread, hi: b.expected + 2 * b.spread });
  const xs = [...points.keys()].sort((a, b) => a - b);
  const col = (k) => xs.map((x) => points.get(x)[k]);
  chart(
    $("#profile-chart"),
    [
      { label: "observed NDVI", stroke: "#212121", width: 0, points: { show: true, size: 6, fill: "#212121" }, paths: () => null },
      { label: "smoothed", stroke: "#2e7d32", width: 2, spanGaps: true, points: { show: false } },
      { label: "usual high", stroke: "rgba(46,125,50,0.3)", spanGaps: true, points: { show: false } },
      { label: "usual low", stroke: "rgba(46,125,50,0.3)", spanGaps: true, points: { show: false } },
    ],
    [xs, col("obs"), col("smooth"), col("hi"), col("lo")],
    {
      bands: [{ series: [3, 4], fill: "rgba(46,125,50,0.12)" }],
      scales: { y: { range: [-0.1, 1] } },
      hooks: { drawAxes: [(u) => shadeEvents(u, profile)] },
    }
  );
}

function shadeEvents(u, profile) {
  // disturbances as red bands behind the curves, from their start to their end (or as_of)
  const { ctx } = u;
  const top = u.bbox.top;
  const height = u.bbox.height;
  ctx.save();
  ctx.fillStyle = "rgba(213,0,0,0.12)";
  for (const e of profile.events) {
    const x0 = u.valToPos(seconds(e.start), "x", true);
    const x1 = u.valToPos(seconds(e.end ?? profile.as_of.slice(0, 10)), "x", true);
    ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
  }
  ctx.restore();
}

async function selectFarm(farmId) {
  say(`Loading ${farmId}…`);
  overlay?.remove();
  $("#legend").hidden = true;
  const [history, alerts] = await Promise.all([
    getJSON(`/v1/farms/${encodeURIComponent(farmId)}/headcount/history?days=14&points=15`),
    getJSON(`/v1/alerts?farm_id=${encodeURIComponent(farmId)}`),
  ]);
  const now = history.series[history.series.length - 1];
  const detail = $("#detail");
  detail.dataset.farm = farmId;
  detail.innerHTML = `
    <h2>Farm ${esc(farmId)}</h2>
    <table class="breakdown"><thead><tr><th>Category</th><th class="num">Verified now</th><th class="num">Registered</th></tr></thead>
      <tbody>${Object.keys(now.registered)
        .map((c) => `<tr data-category="${esc(c)}"><td>${esc(c)}</td><td class="num">${now.verified[c]}</td><td class="num">${now.registered[c]}</td></tr>`)
        .join("")}</tbody></table>
    <p class="hint">Verified: alive, seen in the last 24 h, inside the geofence, no fever.</p>
    <h3>Verified headcount, last 14 days</h3><div id="headcount-chart" class="chart"></div>
    <h3>Open alerts</h3>${alertsHTML(alerts)}`;
  const categories = Object.keys(now.registered);
  const colours = ["#2e7d32", "#1565c0", "#ef6c00", "#6a1b9a"];
  chart(
    $("#headcount-chart"),
    categories.map((c, i) => ({ label: c, stroke: colours[i % 4], width: 2 })),
    [history.series.map((p) => seconds(p.at)), ...categories.map((c) => history.series.map((p) => p.verified[c] ?? 0))]
  );
  const layer = farmLayer?.getLayers().find((l) => l.feature.id === farmId);
  if (layer) map.fitBounds(layer.getBounds(), { padding: [40, 40], maxZoom: 17 });
  say("");
}

// --- start --------------------------------------------------------------------------

async function start() {
  if (!map) makeMap();
  say("Loading loans…");
  await loadLoans();
  await drawAssets();
  say("");
  document.body.dataset.ready = "true";
}

if (state.key) signIn(state.key);
