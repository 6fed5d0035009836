// A new claim: the officer draws the borrower's plot on the map or uploads the file the
// borrower's phone app exported, says which coordinate system it was drawn in, and reads
// the verification report: the verdict, what the plot looks like and why, its NDVI
// profile, overlaps with land already pledged, and (when consistent) an indicative value.
import L from "./leaflet-global.js";

// a file's ending -> the content type POST /v1/claims reads it as
const TYPES = {
  ".kml": "application/vnd.google-earth.kml+xml",
  ".kmz": "application/vnd.google-earth.kmz",
  ".zip": "application/zip",
  ".geojson": "application/geo+json",
  ".json": "application/geo+json",
  ".txt": "text/plain",
  ".csv": "text/plain",
};
const SYSTEMS = ["wgs84", "gcj02", "bd09", "cgcs2000"]; // worded as crs.<system>
const CLASSES = ["tea_garden", "forest", "cropland", "grass_shrub", "bare_built", "water"]; // land_class.<class>
const SPECIES = ["chinese_fir", "masson_pine", "eucalyptus", "broadleaf"];

let drawing = null; // {vertices, line, layer} while the officer draws
let claimLayer = null;

export function showClaimForm(ctx) {
  const { $, map, t, word, esc } = ctx;
  stopDrawing(map);
  const detail = $("#detail");
  delete detail.dataset.loan;
  detail.innerHTML = `
    <h2>${esc(t("ui.claim.new"))}</h2>
    <form id="claim-form" class="claim-form">
      <label>${esc(t("ui.claim.kind"))}
        <select id="claim-kind">${["tea_garden", "forest"].map((k) => `<option value="${k}">${esc(word("kind", k))}</option>`).join("")}</select></label>
      <label>${esc(t("ui.claim.owner"))} <input id="claim-owner" maxlength="200"></label>
      <label>${esc(t("ui.claim.crs"))} <select id="claim-crs">${SYSTEMS.map((v) => `<option value="${v}">${esc(word("crs", v))}</option>`).join("")}</select></label>
      <label class="tea">${esc(t("ui.claim.planted"))} <input id="claim-planted" type="number" min="1900" max="2100"></label>
      <label class="forest" hidden>${esc(t("ui.claim.species"))}
        <select id="claim-species"><option value="">${esc(t("ui.unknown"))}</option>${SPECIES.map((v) => `<option value="${v}">${esc(word("species", v))}</option>`).join("")}</select></label>
      <label class="forest" hidden>${esc(t("ui.claim.volume"))} <input id="claim-volume" type="number" min="0" step="1"></label>
      <p class="plot-source">${esc(t("ui.claim.plot"))}
        <button id="claim-draw" type="button">${esc(t("ui.claim.draw"))}</button>
        <button id="claim-finish" type="button" disabled>${esc(t("ui.claim.finish"))}</button>
        ${esc(t("ui.claim.or_upload"))} <input id="claim-file" type="file" accept="${Object.keys(TYPES).join(",")}" aria-label="${esc(t("ui.claim.file"))}"></p>
      <p id="claim-plot" class="hint">${esc(t("ui.claim.no_plot"))}</p>
      <label>${esc(t("ui.claim.as_of"))} <input id="claim-as-of" type="date"> <span class="hint">${esc(t("ui.claim.as_of_default"))}</span></label>
      <p><button id="claim-submit" type="submit">${esc(t("ui.claim.submit"))}</button></p>
    </form>
    <div id="claim-report"></div>`;
  const kind = $("#claim-kind");
  kind.addEventListener("change", () => {
    for (const el of detail.querySelectorAll(".tea")) el.hidden = kind.value !== "tea_garden";
    for (const el of detail.querySelectorAll(".forest")) el.hidden = kind.value !== "forest";
  });
  $("#claim-draw").addEventListener("click", () => startDrawing(ctx));
  $("#claim-finish").addEventListener("click", () => finishDrawing(ctx));
  $("#claim-file").addEventListener("change", () => {
    stopDrawing(map);
    const file = $("#claim-file").files[0];
    $("#claim-plot").textContent = file ? ctx.t("ui.claim.file_chosen", { name: file.name, bytes: ctx.number(file.size) }) : ctx.t("ui.claim.no_plot");
  });
  $("#claim-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitClaim(ctx);
  });
}

function startDrawing(ctx) {
  const { $, map } = ctx;
  stopDrawing(map);
  $("#claim-file").value = "";
  $("#claim-crs").value = "wgs84"; // the map itself is WGS84
  drawing = { vertices: [], line: L.polyline([], { color: "#6a1b9a", weight: 2 }).addTo(map), layer: null };
  drawing.onClick = (e) => {
    drawing.vertices.push(e.latlng);
    drawing.line.setLatLngs(drawing.vertices);
    $("#claim-plot").textContent = ctx.t("ui.claim.corners", { count: drawing.vertices.length });
    $("#claim-finish").disabled = drawing.vertices.length < 3;
  };
  map.on("click", drawing.onClick);
  map.getContainer().classList.add("drawing");
  $("#claim-plot").textContent = ctx.t("ui.claim.click_corners");
}

function finishDrawing(ctx) {
  const { $, map } = ctx;
  if (!drawing || drawing.vertices.length < 3) return;
  map.off("click", drawing.onClick);
  map.getContainer().classList.remove("drawing");
  drawing.line.remove();
  drawing.layer = L.polygon(drawing.vertices, { color: "#6a1b9a", dashArray: "4 3", fillOpacity: 0.1 }).addTo(map);
  drawing.done = true;
  $("#claim-finish").disabled = true;
  $("#claim-plot").textContent = ctx.t("ui.claim.drawn", { count: drawing.vertices.length });
}

function stopDrawing(map) {
  if (!drawing) return;
  map.off("click", drawing.onClick);
  map.getContainer().classList.remove("drawing");
  drawing.line?.remove();
  drawing.layer?.remove();
  drawing = null;
}

function drawnGeometry() {
  const ring = drawing.vertices.map((p) => [p.lng, p.lat]);
  return { type: "Polygon", coordinates: [[...ring, ring[0]]] };
}

function attributes($) {
  const out = {};
  if ($("#claim-kind").value === "tea_garden" && $("#claim-planted").value) out.planted_year = Number($("#claim-planted").value);
  if ($("#claim-kind").value === "forest") {
    if ($("#claim-species").value) out.species_group = $("#claim-species").value;
    if ($("#claim-volume").value) out.stand_volume_m3_per_ha = Number($("#claim-volume").value);
  }
  return out;
}

async function submitClaim(ctx) {
  const { $, api, say } = ctx;
  const file = $("#claim-file").files[0];
  const asOf = $("#claim-as-of").value ? `${$("#claim-as-of").value}T23:59:59Z` : null;
  const fields = { kind: $("#claim-kind").value, crs: $("#claim-crs").value, owner: $("#claim-owner").value || null };
  let request;
  if (file) {
    const ending = file.name.slice(file.name.lastIndexOf(".")).toLowerCase();
    const query = new URLSearchParams(
      Object.entries({ ...fields, as_of: asOf, attributes: JSON.stringify(attributes($)) }).filter(([, v]) => v)
    );
    request = { url: `/v1/claims?${query}`, body: file, type: TYPES[ending] ?? "application/octet-stream" };
  } else if (drawing?.done) {
    const body = { ...fields, attributes: attributes($), geometry: drawnGeometry(), ...(asOf ? { as_of: asOf } : {}) };
    request = { url: "/v1/claims", body: JSON.stringify(body), type: "application/json" };
  } else {
    $("#claim-report").innerHTML = `<p class="error" role="alert">${ctx.esc(ctx.t("ui.claim.need_plot"))}</p>`;
    return;
  }
  say(ctx.t("ui.claim.checking"));
  $("#claim-submit").disabled = true;
  try {
    const response = await api(request.url, { method: "POST", headers: { "content-type": request.type }, body: request.body });
    const claim = await response.json();
    stopDrawing(ctx.map);
    showReport(ctx, claim);
    say("");
  } catch (error) {
    $("#claim-report").innerHTML = `<p class="error" role="alert">${ctx.esc(ctx.t("ui.claim.refused", { error: error.message }))}</p>`;
    say("");
  } finally {
    $("#claim-submit").disabled = false;
  }
}

export function showReport(ctx, claim) {
  const { $, esc, map, t, word } = ctx;
  const r = claim.report;
  const words = r.words ?? r; // the sentences in the officer's language (Accept-Language)
  const cover = r.land_cover;
  const rows = CLASSES.map(
    (c) => `<tr data-class="${c}"><td>${esc(word("land_class", c))}</td><td class="num">${ctx.pct(cover.probabilities[c])}</td><td class="num">${ctx.pct(cover.shares[c])}</td></tr>`
  ).join("");
  const value = r.indicative_value;
  const valueHTML = value?.value_cny
    ? `<p>${esc(t("ui.claim.value", { ha: r.accepted_ha }))} <strong>${ctx.money(value.value_cny)}</strong>, ${esc(t("ui.claim.eligible"))} ${ctx.money(
        value.eligible_value_cny
      )}<br><span class="hint">${esc(value.formula)}</span></p>`
    : value?.reason
      ? `<p class="hint">${esc(t("ui.claim.no_value", { reason: value.reason }))}</p>`
      : "";
  const e = r.evidence;
  const box = $("#claim-report");
  box.dataset.verdict = r.verdict;
  box.dataset.claim = claim.claim_id;
  box.innerHTML = `
    <h3>${esc(t("ui.claim.title", { claim: claim.claim_id }))} · <span class="verdict ${esc(r.verdict)}">${esc(word("verdict", r.verdict))}</span></h3>
    <p id="claim-summary">${esc(words.summary)}</p>
    ${words.flags.length ? `<ul class="flags">${words.flags.map((f) => `<li>${esc(f)}</li>`).join("")}</ul>` : ""}
    <p>${esc(t("ui.claim.measured", { ha: ctx.number(r.area.measured_ha, 2), crs: word("crs", claim.crs) }))}${
      r.area.claimed_ha ? esc(t("ui.claim.claimed", { ha: r.area.claimed_ha })) : ""
    } ·
      ${esc(t("ui.claim.observations", { count: e.clear_observations }))} ${
        e.first_clear ? esc(t("ui.claim.from_to", { first: ctx.day(e.first_clear), last: ctx.day(e.last_clear) })) : ""
      }${e.from_catalogue ? ` ${esc(t("ui.claim.from_catalogue", { count: e.from_catalogue }))}` : ""} ·
      ${esc(t("ui.claim.model", { version: r.model.version }))}</p>
    <table class="breakdown cover"><thead><tr><th scope="col">${esc(t("ui.claim.looks_like"))}</th><th class="num" scope="col">${esc(
      t("ui.claim.probability")
    )}</th><th class="num" scope="col">${esc(t("ui.claim.share"))}</th></tr></thead><tbody>${rows}</tbody></table>
    <h3>${esc(t("ui.claim.ndvi"))}</h3><div id="claim-chart" class="chart"></div>
    ${valueHTML}
    ${
      claim.state === "open" && r.verdict === "consistent"
        ? `<p><label>${esc(t("ui.claim.parcel_id"))} <input id="claim-parcel-id" placeholder="${esc(claim.claim_id)}"></label> <button id="claim-accept" type="button">${esc(
            t("ui.claim.accept")
          )}</button></p>`
        : `<p class="hint">${esc(claim.state === "accepted" ? t("ui.claim.accepted_as", { parcel: claim.parcel_id }) : t("ui.claim.only_consistent"))}</p>`
    }
    <p id="claim-accepted" role="status"></p>`;
  ctx.chart(
    $("#claim-chart"),
    [{ label: t("ui.claim.chart"), stroke: "#6a1b9a", width: 2, points: { show: true, size: 6 } }],
    [e.profile.map(([d]) => ctx.seconds(d)), e.profile.map(([, v]) => v)],
    { scales: { y: { range: [-0.4, 1] } } }
  );
  claimLayer?.remove();
  claimLayer = L.geoJSON(claim.geometry, { style: { color: "#6a1b9a", weight: 2, dashArray: "4 3", fillOpacity: 0.1 } }).addTo(map);
  map.fitBounds(claimLayer.getBounds(), { padding: [40, 40], maxZoom: 16 });
  $("#claim-accept")?.addEventListener("click", () => acceptClaim(ctx, claim.claim_id));
}

async function acceptClaim(ctx, claimId) {
  const { $, api, getJSON } = ctx;
  const parcelId = $("#claim-parcel-id").value.trim();
  const query = parcelId ? `?parcel_id=${encodeURIComponent(parcelId)}` : "";
  try {
    await api(`/v1/claims/${encodeURIComponent(claimId)}/accept${query}`, { method: "POST" });
    const claim = await getJSON(`/v1/claims/${encodeURIComponent(claimId)}`);
    showReport(ctx, claim);
    $("#claim-accepted").textContent = ctx.t("ui.claim.accepted", { parcel: claim.parcel_id });
  } catch (error) {
    $("#claim-accepted").textContent = ctx.t("ui.claim.not_accepted", { error: error.message });
  }
}

