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
const SYSTEMS = [
  ["wgs84", "WGS84 (GPS, Google Earth, this map)"],
  ["gcj02", "GCJ-02 (AMap/Gaode, Tencent, WeChat)"],
  ["bd09", "BD-09 (Baidu maps)"],
  ["cgcs2000", "CGCS2000 (land registry)"],
];
const VERDICT = { consistent: "Consistent", inconsistent: "Inconsistent", not_enough_evidence: "Not enough evidence" };
const CLASS = { tea_garden: "tea garden", forest: "forest", cropland: "cropland", grass_shrub: "grass or shrub", bare_built: "bare or built", water: "water" };

let drawing = null; // {vertices, line, layer} while the officer draws
let claimLayer = null;

export function showClaimForm(ctx) {
  const { $, map } = ctx;
  stopDrawing(map);
  const detail = $("#detail");
  delete detail.dataset.loan;
  detail.innerHTML = `
    <h2>New claim</h2>
    <form id="claim-form" class="claim-form">
      <label>Borrower says it is
        <select id="claim-kind"><option value="tea_garden">a tea garden</option><option value="forest">a forest</option></select></label>
      <label>Owner <input id="claim-owner" maxlength="200"></label>
      <label>Drawn in <select id="claim-crs">${SYSTEMS.map(([v, t]) => `<option value="${v}">${t}</option>`).join("")}</select></label>
      <label class="tea">Planted year <input id="claim-planted" type="number" min="1900" max="2100"></label>
      <label class="forest" hidden>Species group
        <select id="claim-species"><option value="">unknown</option><option>chinese_fir</option><option>masson_pine</option><option>eucalyptus</option><option>broadleaf</option></select></label>
      <label class="forest" hidden>Stand volume m³/ha <input id="claim-volume" type="number" min="0" step="1"></label>
      <p class="plot-source">The plot:
        <button id="claim-draw" type="button">Draw on the map</button>
        <button id="claim-finish" type="button" disabled>Finish drawing</button>
        or upload <input id="claim-file" type="file" accept="${Object.keys(TYPES).join(",")}" aria-label="plot file (KML, KMZ, zipped Shapefile, GeoJSON, lon,lat list)"></p>
      <p id="claim-plot" class="hint">No plot yet. Drawing: click the corners on the map, then Finish.</p>
      <label>Judge on the imagery up to <input id="claim-as-of" type="date"> <span class="hint">(default: today)</span></label>
      <p><button id="claim-submit" type="submit">Check the plot</button></p>
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
    $("#claim-plot").textContent = file ? `File ${file.name} (${file.size.toLocaleString()} bytes)` : "No plot yet.";
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
    $("#claim-plot").textContent = `${drawing.vertices.length} corner(s) drawn`;
    $("#claim-finish").disabled = drawing.vertices.length < 3;
  };
  map.on("click", drawing.onClick);
  map.getContainer().classList.add("drawing");
  $("#claim-plot").textContent = "Click the corners of the plot on the map.";
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
  $("#claim-plot").textContent = `Plot drawn: ${drawing.vertices.length} corners.`;
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
    $("#claim-report").innerHTML = `<p class="error" role="alert">Draw the plot on the map or choose its file first.</p>`;
    return;
  }
  say("Checking the plot against the satellite record…");
  $("#claim-submit").disabled = true;
  try {
    const response = await api(request.url, { method: "POST", headers: { "content-type": request.type }, body: request.body });
    const claim = await response.json();
    stopDrawing(ctx.map);
    showReport(ctx, claim);
    say("");
  } catch (error) {
    $("#claim-report").innerHTML = `<p class="error" role="alert">Refused: ${ctx.esc(error.message)}</p>`;
    say("");
  } finally {
    $("#claim-submit").disabled = false;
  }
}

export function showReport(ctx, claim) {
  const { $, esc, map } = ctx;
  const r = claim.report;
  const cover = r.land_cover;
  const rows = Object.keys(CLASS)
    .map((c) => `<tr data-class="${c}"><td>${CLASS[c]}</td><td class="num">${ctx.pct(cover.probabilities[c])}</td><td class="num">${ctx.pct(cover.shares[c])}</td></tr>`)
    .join("");
  const value = r.indicative_value;
  const valueHTML = value?.value_cny
    ? `<p>Indicative value of the ${esc(r.accepted_ha)} ha that look like the claim: <strong>${ctx.cny(value.value_cny)} CNY</strong>, eligible ${ctx.cny(value.eligible_value_cny)} CNY<br><span class="hint">${esc(value.formula)}</span></p>`
    : value?.reason
      ? `<p class="hint">No indicative value: ${esc(value.reason)}</p>`
      : "";
  const e = r.evidence;
  const box = $("#claim-report");
  box.dataset.verdict = r.verdict;
  box.dataset.claim = claim.claim_id;
  box.innerHTML = `
    <h3>Claim ${esc(claim.claim_id)} · <span class="verdict ${esc(r.verdict)}">${VERDICT[r.verdict]}</span></h3>
    <p id="claim-summary">${esc(r.summary)}</p>
    ${r.flags.length ? `<ul class="flags">${r.flags.map((f) => `<li>${esc(f)}</li>`).join("")}</ul>` : ""}
    <p>Measured ${Number(r.area.measured_ha).toFixed(2)} ha (drawn in ${esc(claim.crs)})${r.area.claimed_ha ? `, claimed ${esc(r.area.claimed_ha)} ha` : ""} ·
      ${e.clear_observations} clear observations ${e.first_clear ? `from ${esc(e.first_clear)} to ${esc(e.last_clear)}` : ""}${
        e.from_catalogue ? ` (${e.from_catalogue} read from the catalogue for this claim)` : ""
      } ·
      model ${esc(r.model.version)}</p>
    <table class="breakdown cover"><thead><tr><th>Looks like</th><th class="num">Probability</th><th class="num">Share of the plot</th></tr></thead><tbody>${rows}</tbody></table>
    <h3>NDVI of the plot</h3><div id="claim-chart" class="chart"></div>
    ${valueHTML}
    ${claim.state === "open" && r.verdict === "consistent"
      ? `<p><label>Parcel id <input id="claim-parcel-id" placeholder="${esc(claim.claim_id)}"></label> <button id="claim-accept" type="button">Accept as a parcel</button></p>`
      : `<p class="hint">${claim.state === "accepted" ? `Accepted as parcel ${esc(claim.parcel_id)}.` : "Only a consistent claim becomes a parcel."}</p>`}
    <p id="claim-accepted" role="status"></p>`;
  ctx.chart(
    $("#claim-chart"),
    [{ label: "plot NDVI (clear dates)", stroke: "#6a1b9a", width: 2, points: { show: true, size: 6 } }],
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
    $("#claim-accepted").textContent = `Accepted: parcel ${claim.parcel_id} can now be pledged to a loan.`;
  } catch (error) {
    $("#claim-accepted").textContent = `Not accepted: ${error.message}`;
  }
}

