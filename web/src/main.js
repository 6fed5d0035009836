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
import { LOCALES, applyStatic, choose, cny, dateNames, day, locale, money, number, pct, said, t, word } from "./i18n.js";

const KEY = "agri-api-key";
const state = { key: sessionStorage.getItem(KEY), loans: [], sort: ["loan_id", 1] };
const $ = (selector) => document.querySelector(selector);

// --- the API ------------------------------------------------------------------------

async function api(path, options = {}) {
  // problem details come back in the officer's language
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${state.key}`, "Accept-Language": locale() };
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

// --- formatting (numbers, money and dates per locale: i18n.js) ---------------------

const esc = (text) =>
  String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const status = (s) => word("status", s ?? "none");

// --- the language ------------------------------------------------------------------

applyStatic();
for (const select of document.querySelectorAll(".lang-choice")) {
  select.innerHTML = LOCALES.map((l) => `<option value="${l}"${l === locale() ? " selected" : ""}>${t(`ui.lang.${l}`)}</option>`).join("");
  select.setAttribute("aria-label", t("ui.language"));
  // remembered in this browser; a reload redraws everything in it (the key stays in the tab)
  select.addEventListener("change", () => (choose(select.value), location.reload()));
}

// --- sign in ------------------------------------------------------------------------

async function signIn(key) {
  state.key = key;
  let me;
  try {
    me = await getJSON("/v1/me");
  } catch (error) {
    sessionStorage.removeItem(KEY);
    $("#signin-error").textContent = error.status === 401 ? t("ui.signin.unknown") : t("ui.signin.failed", { error: error.message });
    return;
  }
  sessionStorage.setItem(KEY, key);
  $("#who").textContent = me.branch ? `${word("role", me.role)} · ${me.branch}` : word("role", me.role);
  $("#signin").hidden = true;
  $("#app").hidden = false;
  try {
    await start();
  } catch (error) {
    console.error(error);
    say(t("ui.load_failed", { error: error.message ?? error }));
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
$("#print").addEventListener("click", () => printReport());
$("#portfolio").addEventListener("click", () => showPortfolio());
$("#new-claim").addEventListener("click", () =>
  showClaimForm({ $, api, getJSON, map, say, esc, cny, pct, chart, seconds, t, word, said, day, money, number })
);

// --- the map ------------------------------------------------------------------------

let map, parcelLayer, farmLayer, animalLayer, plantLayer, overlay;

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
      const show = (latlng, what) => (div.textContent = `${t(what)} ${latlng.lat.toFixed(5)}, ${latlng.lng.toFixed(5)}`);
      map.on("mousemove", (e) => show(e.latlng, "ui.map.cursor"));
      map.on("moveend", () => show(map.getCenter(), "ui.map.centre"));
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
  const pledgedPlants = new Set(state.loans.flatMap((l) => (l.solar ?? []).map((s) => s.plant_id)));
  // only the branch's pledged parcels travel over the (possibly poor) line
  const ids = encodeURIComponent([...pledgedParcels].join(","));
  const [parcels, farms, plants] = await Promise.all([
    pledgedParcels.size ? getJSON(`/v1/parcels?ids=${ids}&limit=1000`) : { type: "FeatureCollection", features: [] },
    getJSON("/v1/farms"),
    pledgedPlants.size ? getJSON("/v1/plants") : [],
  ]);
  farms.features = farms.features.filter((f) => pledgedFarms.has(f.id));
  parcelLayer?.remove();
  farmLayer?.remove();
  animalLayer?.remove();
  plantLayer?.remove();
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
      layer.bindTooltip(`${f.id} · ${word("kind", f.properties.kind)} · ${t("ui.health")} ${f.properties.health_index?.toFixed(2) ?? "-"}`);
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
        }).bindTooltip(`${a.tag_id} (${word("category", a.category)})${a.verified ? "" : `: ${said(a.reason, a.reason_coded)}`}`)
      );
    }
  }
  animalLayer.addTo(map);
  // pledged rooftop plants: a sun-coloured square each
  plantLayer = L.featureGroup(
    plants
      .filter((p) => pledgedPlants.has(p.plant_id))
      .map((p) =>
        L.circleMarker([p.lat, p.lon], { radius: 7, color: "#e65100", weight: 2, fillColor: "#fbc02d", fillOpacity: 0.9 })
          .bindTooltip(`${p.plant_id} · ${t("ui.plant.kwp", { kwp: number(p.kwp, 1) })}`)
          .on("click", () => selectPlant(p.plant_id))
      )
  ).addTo(map);
  const all = L.featureGroup([parcelLayer, farmLayer, plantLayer]);
  if (all.getLayers().some((g) => g.getLayers().length)) map.fitBounds(all.getBounds(), { padding: [20, 20] });
  $("#map").dataset.parcels = parcels.features.length;
  $("#map").dataset.farms = farms.features.length;
  $("#map").dataset.plants = plantLayer.getLayers().length;
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
    legend.title = t("ui.legend_of", { scene: info.scene_id, day: day(info.acquired_at) });
    return info;
  } catch (error) {
    say(t("ui.no_overlay", { error: error.message }));
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
        <td><span class="status ${esc(v?.status ?? "none")}">${status(v?.status)}</span></td></tr>`;
    })
    .join("");
  $("#no-loans").hidden = rows.length > 0;
  const carbon = state.loans.reduce((sum, l) => sum + Number(l.latest_valuation?.carbon_t_co2e ?? 0), 0);
  const carbonLoans = state.loans.filter((l) => Number(l.latest_valuation?.carbon_t_co2e ?? 0) > 0).length;
  $("#portfolio-carbon").dataset.total = carbon.toFixed(3);
  $("#portfolio-carbon").textContent = carbon
    ? t("ui.carbon.portfolio", { t_co2e: number(carbon), loans: carbonLoans })
    : "";
  for (const tr of document.querySelectorAll("#loans tbody tr")) {
    tr.addEventListener("click", () => selectLoan(tr.dataset.loan));
    tr.addEventListener("keydown", (e) => e.key === "Enter" && selectLoan(tr.dataset.loan));
  }
}

for (const th of document.querySelectorAll("#loans th")) {
  const sort = () => {
    state.sort = [th.dataset.sort, state.sort[0] === th.dataset.sort ? -state.sort[1] : 1];
    drawLoans();
  };
  th.addEventListener("click", sort);
  th.addEventListener("keydown", (e) => e.key === "Enter" && sort());
}

async function loadLoans() {
  state.loans = await getJSON("/v1/loans");
  drawLoans();
}

async function selectLoan(loanId) {
  say(t("ui.loading", { what: loanId }));
  const loan = state.loans.find((l) => l.loan_id === loanId);
  const [history, alerts] = await Promise.all([
    getJSON(`/v1/loans/${encodeURIComponent(loanId)}/valuations`),
    getJSON(`/v1/alerts?loan_id=${encodeURIComponent(loanId)}`),
  ]);
  const latest = history.length ? await getJSON(`/v1/valuations/${history[history.length - 1].valuation_id}`) : null;
  const detail = $("#detail");
  detail.innerHTML = `
    <h2>${esc(t("ui.loan.title", { loan: loanId, borrower: loan.borrower }))}</h2>
    <p>${esc(t("ui.loan.branch", { branch: loan.branch }))} · ${esc(t("ui.loan.principal"))} <strong>${money(loan.principal_cny)}</strong>
      <button id="revalue" type="button">${esc(t("ui.revalue"))}</button></p>
    ${latest ? valuationHTML(latest) : `<p>${esc(t("ui.not_valued"))}</p>`}
    <h3>${esc(t("ui.history"))}</h3><div id="history-chart" class="chart"></div>
    <h3>${esc(t("ui.open_alerts"))}</h3>${alertsHTML(alerts)}`;
  detail.dataset.loan = loanId;
  detail.dataset.valuation = latest?.valuation_id ?? "";
  $("#revalue").addEventListener("click", () => revalue(loanId));
  for (const a of detail.querySelectorAll("a[data-parcel]")) a.addEventListener("click", (e) => (e.preventDefault(), selectParcel(a.dataset.parcel)));
  for (const a of detail.querySelectorAll("a[data-farm]")) a.addEventListener("click", (e) => (e.preventDefault(), selectFarm(a.dataset.farm)));
  for (const a of detail.querySelectorAll("a[data-plant]")) a.addEventListener("click", (e) => (e.preventDefault(), selectPlant(a.dataset.plant)));
  historyChart(history);
  const pledged = parcelLayer?.getLayers().filter((layer) => loan.parcel_ids.includes(layer.feature.id)) || [];
  if (pledged.length) map.fitBounds(L.featureGroup(pledged).getBounds(), { padding: [30, 30], maxZoom: 16 });
  say("");
}

// An item's formula in the officer's language: its coded steps, or as stored (older ones)
const formula = (i) =>
  i.formula_coded?.every(Boolean) ? i.formula_coded.map((c) => t(c.code, c.params)).join(t("ui.reason_sep")) : i.formula;

function valuationHTML(v) {
  const items = v.items
    .map((i) => {
      const e = i.evidence;
      const when = e.latest_clear_image
        ? t("ui.evidence.image", { day: day(e.latest_clear_image) })
        : e.last_reading_at
          ? t("ui.evidence.tags", { day: day(e.last_reading_at) })
          : "";
      const counted =
        e.verified != null
          ? t("ui.evidence.verified", { verified: e.verified, registered: e.registered })
          : e.last_30_expected_kwh
            ? t("ui.evidence.solar", { made: number(e.last_30_energy_kwh, 0), expected: number(e.last_30_expected_kwh, 0) })
            : "";
      const reasons = e.haircut.reasons.map((r, k) => said(r, e.haircut.reasons_coded?.[k]));
      const ref =
        i.kind === "herd"
          ? `<a href="#" data-farm="${esc(e.farm_id)}">${esc(i.ref)}</a>`
          : e.plant_id
            ? `<a href="#" data-plant="${esc(e.plant_id)}">${esc(i.ref)}</a>`
            : `<a href="#" data-parcel="${esc(i.ref)}">${esc(i.ref)}</a>`;
      return `<tr data-ref="${esc(i.ref)}" data-kind="${esc(i.kind)}">
        <td>${esc(word("kind", i.kind))}</td><td>${ref}</td><td class="num">${cny(i.value_cny)}</td>
        <td class="num">${pct(i.haircut)}</td><td class="num eligible">${cny(i.eligible_value_cny)}</td>
        <td>${esc(word("confidence", i.confidence))}</td><td>${esc([when, counted].filter(Boolean).join(t("ui.list_sep")))}</td></tr>
        <tr class="formula"><td></td><td colspan="6">${esc(formula(i))}${
          reasons.length ? `<br><em>${esc(reasons.join(t("ui.reason_sep")))}</em>` : ""
        }</td></tr>`;
    })
    .join("");
  return `
    <p>${esc(t("ui.valuation.id"))} <code>${esc(v.valuation_id)}</code> ${esc(
      t("ui.valuation.as_of", { at: `${day(v.as_of)} ${v.as_of.slice(11, 16)}`, prices: v.prices_version, policy: v.policy_version })
    )}${v.illustrative_tables ? esc(t("ui.valuation.illustrative")) : ""}</p>
    <p class="headline">${esc(t("report.eligible"))} <strong data-field="eligible-headline">${money(v.eligible_value_cny)}</strong></p>
    <table class="breakdown"><thead><tr><th scope="col">${esc(t("report.kind"))}</th><th scope="col">${esc(t("report.asset"))}</th>
      <th class="num" scope="col">${esc(t("report.value"))}</th><th class="num" scope="col">${esc(t("report.haircut"))}</th>
      <th class="num" scope="col">${esc(t("report.eligible_col"))}</th><th scope="col">${esc(t("report.confidence"))}</th>
      <th scope="col">${esc(t("ui.evidence"))}</th></tr></thead><tbody>${items}</tbody>
      <tfoot><tr><td></td><td>${esc(t("report.total"))}</td><td class="num" data-field="collateral">${cny(v.collateral_value_cny)}</td><td></td>
      <td class="num" data-field="eligible">${cny(v.eligible_value_cny)}</td><td colspan="2"></td></tr></tfoot></table>
    <p class="ltv">${esc(t("report.ltv"))} <strong data-field="ltv">${esc(v.ltv ?? "n/a")}</strong> ·
      <span class="status ${esc(v.status)}" data-field="status">${status(v.status)}</span>
      (${esc(t("report.thresholds", { watch: v.thresholds.watch, margin_call: v.thresholds.margin_call }))})</p>
    ${
      v.solar
        ? `<p class="dscr" data-field="dscr">${esc(
            t("ui.loan.dscr", {
              kwp: v.solar.kwp,
              p50: money(v.solar.first_year_net_p50_cny),
              p90: money(v.solar.first_year_net_p90_cny),
              service: money(v.solar.annual_debt_service_cny),
            })
          )} <strong data-field="dscr-p50">${esc(v.solar.dscr_p50 ?? "n/a")}</strong> / <strong data-field="dscr-p90">${esc(v.solar.dscr_p90 ?? "n/a")}</strong></p>`
        : ""
    }
    <p class="formula">${esc(said(v.formula, v.formula_coded))}</p>`;
}

function alertsHTML(alerts) {
  if (!alerts.length) return `<p>${esc(t("ui.none"))}</p>`;
  return `<ul class="alerts">${alerts
    .map(
      (a) =>
        `<li data-alert="${esc(a.kind)}"><strong>${esc(word("alert_kind", a.kind))}</strong> ${esc(a.subject)}: ${esc(
          said(a.detail, a)
        )} <small>${esc(t("ui.since", { day: day(a.opened_at) }))}</small></li>`
    )
    .join("")}</ul>`;
}

async function revalue(loanId) {
  say(t("ui.revaluing", { loan: loanId }));
  try {
    await api(`/v1/loans/${encodeURIComponent(loanId)}/valuations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    await loadLoans();
    await selectLoan(loanId);
    say(t("ui.revalued", { loan: loanId }));
  } catch (error) {
    say(t("ui.revalue_failed", { error: error.message }));
  }
}

// --- the PDF report of the valuation shown (server-rendered, in the page's language) ---

async function printReport() {
  const valuation = $("#detail").dataset.valuation;
  if (!valuation) {
    say(t("ui.print_choose"));
    return;
  }
  say(t("ui.print_making"));
  try {
    const url = await blobURL(`/v1/valuations/${encodeURIComponent(valuation)}/report.pdf?lang=${locale()}`);
    window.open(url, "_blank");
    $("#detail").dataset.report = url;
    say("");
  } catch (error) {
    say(t("ui.print_failed", { error: error.message }));
  }
}

// --- the branch portfolio ---------------------------------------------------------

function loanLinks(ids) {
  return ids.map((id) => `<a href="#" data-loan-link="${esc(id)}">${esc(id)}</a>`).join(", ") || "-";
}

const WORDS = { status: "status", ltv: "ltv_band", alerts: "alert_kind", ha: "kind" };

async function showPortfolio() {
  say(t("ui.loading_portfolio"));
  const p = await getJSON("/v1/portfolio");
  const rows = (entries, label) =>
    Object.entries(entries)
      .map(
        ([k, v]) =>
          `<tr data-figure="${esc(label)}:${esc(k)}"><td>${esc(word(WORDS[label], k))}</td><td class="num">${v.count ?? number(v.ha, 2)}</td><td>${
            v.oldest_days != null ? `${esc(t("ui.oldest", { days: v.oldest_days }))} · ` : ""
          }${loanLinks(v.loan_ids)}</td></tr>`
      )
      .join("");
  const detail = $("#detail");
  delete detail.dataset.loan;
  detail.dataset.valuation = "";
  detail.innerHTML = `
    <h2>${esc(t("ui.portfolio.title", { branch: p.branch ?? t("ui.all_branches") }))}</h2>
    <p>${esc(t("ui.portfolio.loans", { loans: p.loans }))} · ${esc(t("ui.col.principal"))} <strong data-figure="principal">${cny(p.principal_cny)}</strong>
      (${money(p.principal_cny)}) · ${esc(t("ui.col.eligible"))} <strong data-figure="eligible">${cny(p.eligible_value_cny)}</strong>
      (${money(p.eligible_value_cny)}) · ${esc(t("report.ltv"))} <strong>${esc(p.ltv ?? "n/a")}</strong></p>
    <h3>${esc(t("ui.portfolio.by_status"))}</h3><table class="breakdown">${rows(p.by_status, "status")}</table>
    <h3>${esc(t("report.ltv"))}</h3><table class="breakdown">${rows(p.ltv_bands, "ltv")}</table>
    <h3>${esc(t("ui.portfolio.alerts"))}</h3><table class="breakdown">${rows(p.open_alerts, "alerts") || `<tr><td>${esc(t("ui.none"))}</td></tr>`}</table>
    <h3>${esc(t("ui.portfolio.land"))}</h3><table class="breakdown">${rows(p.pledged_ha, "ha")}</table>
    <p>${esc(t("ui.portfolio.headcount"))} ${Object.entries(p.verified_headcount).map(([c, n]) => `${esc(word("category", c))} <strong>${n}</strong>`).join(" · ") || "-"}</p>
    <p>${esc(t("ui.portfolio.carbon"))} <strong data-figure="carbon">${number(p.pledged_carbon_t_co2e)}</strong> t CO2e</p>
    ${
      p.pledged_solar.loan_ids.length
        ? `<p data-figure="solar">${esc(
            t("ui.portfolio.solar", {
              kwp: number(p.pledged_solar.kwp, 1),
              made: number(p.pledged_solar.energy_30d_kwh, 0),
              expected: number(p.pledged_solar.expected_30d_kwh, 0),
            })
          )} ${esc(t("ui.portfolio.dscr_under_1"))} ${loanLinks(p.pledged_solar.dscr_p90_under_1.loan_ids)}</p>`
        : ""
    }`;
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
  const names = dateNames();
  return new uPlot(
    {
      width,
      height: 220,
      series: [{ label: t("ui.chart.time") }, ...series],
      axes: [{}, { size: 70 }],
      ...(names ? { fmtDate: (tpl) => uPlot.fmtDate(tpl, names) } : {}),
      ...extra,
    },
    data,
    el
  );
}

function historyChart(history) {
  const el = $("#history-chart");
  if (history.length === 0) {
    el.textContent = t("ui.no_valuations");
    return;
  }
  chart(
    el,
    [
      { label: t("ui.chart.eligible"), stroke: "#2e7d32", width: 2, points: { show: true } },
      { label: t("report.ltv"), stroke: "#c62828", scale: "ltv", points: { show: true } },
    ],
    [history.map((h) => seconds(h.as_of)), history.map((h) => Number(h.eligible_value_cny)), history.map((h) => (h.ltv ? Number(h.ltv) : null))],
    { axes: [{}, { size: 80 }, { scale: "ltv", side: 1, grid: { show: false } }] }
  );
}

async function selectParcel(parcelId) {
  say(t("ui.loading", { what: parcelId }));
  const [profile, info] = await Promise.all([
    getJSON(`/v1/parcels/${encodeURIComponent(parcelId)}/profile`),
    showOverlay(parcelId),
  ]);
  const detail = $("#detail");
  detail.dataset.parcel = parcelId;
  detail.dataset.valuation = "";
  const events = profile.events.length
    ? `<ul class="events">${profile.events
        .map(
          (e) =>
            `<li data-event="${esc(e.state)}">${esc(
              t("ui.event", {
                kind: word("event_kind", e.kind),
                state: word("event_state", e.state),
                start: day(e.start),
                end: e.end ? day(e.end) : t("ui.now"),
                severity: pct(e.severity),
                ha: e.affected_ha ?? "?",
                confirmed: day(e.confirmed),
                delay: e.detection_delay_days,
              })
            )}</li>`
        )
        .join("")}</ul>`
    : `<p>${esc(t("ui.no_disturbance"))}</p>`;
  const suspected = profile.suspected.length
    ? `<ul class="suspected">${profile.suspected
        .map(
          (s) =>
            `<li data-suspected="${esc(s.state)}">${esc(
              t("ui.suspected", { start: day(s.start), ha: s.affected_ha ?? "?", reason: said(s.reason, s.reason_coded) })
            )}</li>`
        )
        .join("")}</ul>`
    : "";
  const sampling = profile.sampling;
  const sure = sampling
    ? ` · ${t("ui.sampling", { count: sampling.clear_dates, window: sampling.window_days, gap: sampling.largest_gap_days ?? "-" })}`
    : "";
  detail.innerHTML = `
    <h2>${esc(t("ui.parcel.title", { parcel: parcelId, kind: word("kind", profile.kind), ha: number(profile.area_ha, 2) }))}</h2>
    <p>${esc(t("ui.parcel.health"))} <strong>${profile.health_index?.toFixed(2) ?? "-"}</strong> ${esc(t("ui.as_of", { day: day(profile.as_of) }))}<span class="sampling">${esc(sure)}</span>${
      info ? ` · ${esc(t("ui.parcel.overlay", { day: day(info.acquired_at) }))}` : ""
    }</p>
    <p id="parcel-carbon" class="carbon"></p>
    <div id="profile-chart" class="chart"></div>
    <p class="hint">${esc(t("ui.parcel.chart_hint"))}</p>
    <h3>${esc(t("ui.events"))}</h3>${events}${suspected}`;
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
    const figures = { stock: number(c.stock_t_co2e, 1), annual: number(c.annual_t_co2e, 1), reversed: number(c.reversed_t_co2e, 1) };
    el.innerHTML = `${esc(t("ui.carbon.parcel", figures))}${Number(c.reversed_t_co2e) > 0 ? `, <strong>${esc(t("ui.carbon.reversed", figures))}</strong>` : ""} <span class="hint">(${esc(
      word("species", c.species_group)
    )}, ${esc(word("age_class", c.age_class))}; ${esc(t("ui.carbon.table", { version: c.table_version }))})</span>`;
  } catch (error) {
    el.textContent = t("ui.carbon.none", { error: error.message });
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
      { label: t("ui.chart.observed"), stroke: "#212121", width: 0, points: { show: true, size: 6, fill: "#212121" }, paths: () => null },
      { label: t("ui.chart.smoothed"), stroke: "#2e7d32", width: 2, spanGaps: true, points: { show: false } },
      { label: t("ui.chart.high"), stroke: "rgba(46,125,50,0.3)", spanGaps: true, points: { show: false } },
      { label: t("ui.chart.low"), stroke: "rgba(46,125,50,0.3)", spanGaps: true, points: { show: false } },
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
  say(t("ui.loading", { what: farmId }));
  overlay?.remove();
  $("#legend").hidden = true;
  const [history, alerts] = await Promise.all([
    getJSON(`/v1/farms/${encodeURIComponent(farmId)}/headcount/history?days=14&points=15`),
    getJSON(`/v1/alerts?farm_id=${encodeURIComponent(farmId)}`),
  ]);
  const now = history.series[history.series.length - 1];
  const detail = $("#detail");
  detail.dataset.farm = farmId;
  detail.dataset.valuation = "";
  detail.innerHTML = `
    <h2>${esc(t("ui.farm.title", { farm: farmId }))}</h2>
    <table class="breakdown"><thead><tr><th scope="col">${esc(t("ui.farm.category"))}</th><th class="num" scope="col">${esc(
      t("ui.farm.verified_now")
    )}</th><th class="num" scope="col">${esc(t("report.registered"))}</th></tr></thead>
      <tbody>${Object.keys(now.registered)
        .map((c) => `<tr data-category="${esc(c)}"><td>${esc(word("category", c))}</td><td class="num">${now.verified[c]}</td><td class="num">${now.registered[c]}</td></tr>`)
        .join("")}</tbody></table>
    <p class="hint">${esc(t("report.headcount_rule"))}</p>
    <h3>${esc(t("ui.farm.history"))}</h3><div id="headcount-chart" class="chart"></div>
    <h3>${esc(t("ui.open_alerts"))}</h3>${alertsHTML(alerts)}`;
  const categories = Object.keys(now.registered);
  const colours = ["#2e7d32", "#1565c0", "#ef6c00", "#6a1b9a"];
  chart(
    $("#headcount-chart"),
    categories.map((c, i) => ({ label: word("category", c), stroke: colours[i % 4], width: 2 })),
    [history.series.map((p) => seconds(p.at)), ...categories.map((c) => history.series.map((p) => p.verified[c] ?? 0))]
  );
  const layer = farmLayer?.getLayers().find((l) => l.feature.id === farmId);
  if (layer) map.fitBounds(layer.getBounds(), { padding: [40, 40], maxZoom: 17 });
  say("");
}

// --- a rooftop plant ------------------------------------------------------------------

async function selectPlant(plantId) {
  say(t("ui.loading", { what: plantId }));
  overlay?.remove();
  $("#legend").hidden = true;
  const id = encodeURIComponent(plantId);
  const [plant, days, alerts] = await Promise.all([
    getJSON(`/v1/plants/${id}`),
    getJSON(`/v1/plants/${id}/days?limit=60`),
    getJSON(`/v1/plants/${id}/alerts`),
  ]);
  const recent = days.slice(-30);
  const made = recent.reduce((sum, d) => sum + (d.energy_kwh ?? 0), 0);
  const expected = recent.reduce((sum, d) => sum + (d.expected_kwh ?? 0), 0);
  const ratios = recent.map((d) => d.peer_ratio).filter((r) => r != null).sort((a, b) => a - b);
  const peers = ratios.length ? ratios[Math.floor(ratios.length / 2)].toFixed(2) : "-";
  const detail = $("#detail");
  detail.dataset.plant = plantId;
  detail.dataset.valuation = "";
  detail.innerHTML = `
    <h2>${esc(t("ui.plant.title", { plant: plantId, kwp: number(plant.kwp, 1), farm: plant.farm_id }))}</h2>
    <p>${esc(t("ui.plant.summary"))} <strong data-field="plant-made">${number(made, 0)}</strong> /
      <span data-field="plant-expected">${number(expected, 0)}</span> kWh · ${esc(t("ui.plant.peers", { peers }))}</p>
    <p class="hint">${esc(t("ui.plant.registered", { serial: plant.serial, tariff: plant.tariff, connected: plant.grid_connected }))}</p>
    <div id="plant-chart" class="chart"></div>
    <p class="hint">${esc(t("ui.plant.chart_hint"))}</p>
    <h3>${esc(t("ui.open_alerts"))}</h3>${alertsHTML(alerts.filter((a) => a.closed_at == null))}`;
  chart(
    $("#plant-chart"),
    [
      { label: t("ui.chart.made"), stroke: "#e65100", width: 2, points: { show: true } },
      { label: t("ui.chart.expected"), stroke: "#1565c0", dash: [6, 4] },
      { label: t("ui.chart.peers"), stroke: "#6d4c41", width: 1 },
    ],
    [
      days.map((d) => seconds(d.day)),
      days.map((d) => d.energy_kwh),
      days.map((d) => d.expected_kwh),
      // what the plant would have made yielding as its neighbours did
      days.map((d) => (d.energy_kwh != null && d.peer_ratio ? d.energy_kwh / d.peer_ratio : null)),
    ]
  );
  const marker = plantLayer?.getLayers().find((m) => m.getTooltip()?.getContent().startsWith(`${plantId} `));
  if (marker) map.setView(marker.getLatLng(), Math.max(map.getZoom(), 15));
  say("");
}

// --- start --------------------------------------------------------------------------

async function start() {
  if (!map) makeMap();
  say(t("ui.loading_loans"));
  await loadLoans();
  await drawAssets();
  say("");
  document.body.dataset.ready = "true";
}

if (state.key) signIn(state.key);
