// gridshare investor dashboard: plain JS over the public API (/v1/...), uPlot for the chart.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { devices: new Map(), cursor: null, selected: null, chart: null, poolDevices: new Map() };

// ----- formatting -----
const nf0 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const money = (minor, currency = "HKD") =>
  minor == null ? "–" : `${currency} ${(minor / 100).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
function units(str, decimals, digits = 2) {
  // Decimal string of base units -> human amount, exact for big values (BigInt).
  if (str == null) return "–";
  const v = BigInt(str), base = 10n ** BigInt(decimals);
  const whole = v / base, frac = (v % base).toString().padStart(decimals, "0").slice(0, digits);
  return `${whole.toLocaleString("en-US")}${digits ? "." + frac : ""}`;
}
const energy = (wh) => (wh == null ? "–" : wh >= 1e6 ? `${nf1.format(wh / 1e6)} MWh` : `${nf1.format(wh / 1000)} kWh`);
const power = (w) => (w == null ? "–" : w >= 1000 ? `${nf1.format(w / 1000)} kW` : `${nf0.format(w)} W`);
const short = (hex, n = 6) => (hex ? `${hex.slice(0, n + 2)}…${hex.slice(-4)}` : "–");
function ago(ts) {
  if (!ts) return "never";
  const s = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}
const utc = (ts) => new Date(ts).toISOString().replace("T", " ").slice(0, 16);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const typeLabel = { charging_pile: "EV charging", pv_plant: "Solar PV", battery_swap: "Battery swap" };

async function api(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error?.message || `${res.status} ${res.statusText}`);
  return body;
}

// ----- health -----
async function loadHealth() {
  const el = $("#health");
  try {
    const res = await fetch("/health");
    const h = await res.json();
    const down = ["db", "broker", "chain"].filter((k) => !h[k].ok);
    el.className = `pill ${down.length ? "warn" : "ok"}`;
    el.textContent = down.length ? `degraded: ${down.join(", ")}` : "all systems ok";
    el.title = ["db", "broker", "chain"].map((k) => `${k}: ${h[k].detail}`).join("\n");
  } catch {
    el.className = "pill bad";
    el.textContent = "API unreachable";
  }
}

// ----- pools -----
async function loadPools() {
  const { items } = await api("/v1/pools");
  const box = $("#pools");
  if (!items.length) {
    box.innerHTML = '<div class="empty">No pools yet. Provision some with <code>gridshare devices provision</code>.</div>';
    return [];
  }
  box.innerHTML = items.map(poolCard).join("");
  for (const sel of ["#device-pool", "#att-pool"]) {
    const el = $(sel), keep = el.value;
    el.innerHTML = (sel === "#device-pool" ? '<option value="">All pools</option>' : "") +
      items.map((p) => `<option value="${esc(p.name)}">${esc(p.name)}</option>`).join("");
    if (keep) el.value = keep;
  }
  return items;
}

function poolCard(p) {
  const r = p.revenue;
  const d = r ? r.stablecoin_decimals : 6;
  let bar = "";
  if (r && BigInt(r.investor_attested) > 0n) {
    const pct = Number((BigInt(r.funded) * 1000n) / BigInt(r.investor_attested)) / 10;
    bar = `<div class="bar"><span style="width:${pct}%"></span></div>
      <div class="bar-legend"><span>${pct.toFixed(1)}% of attested funded</span><span>owed ${units(r.owed, d)}</span></div>`;
  }
  return `<article class="card ${esc(p.device_type)}">
    <h3>${esc(p.name)} <span class="badge">${esc(p.token_symbol || "no token")}</span></h3>
    <div class="sub">${typeLabel[p.device_type] || p.device_type} · ${p.devices_online}/${p.devices} devices online ·
      investors ${(p.share_bps / 100).toFixed(0)}% · epoch ${p.latest_epoch ?? "–"}</div>
    <div class="figures">
      <div class="fig"><div class="label">Revenue attested</div><div class="value">${r ? money(r.attested_minor, r.currency) : "–"}</div></div>
      <div class="fig"><div class="label">Investor share attested</div><div class="value">${r ? units(r.investor_attested, d) : "–"}</div></div>
      <div class="fig"><div class="label">Funded</div><div class="value">${r ? units(r.funded, d) : "–"}</div></div>
      <div class="fig"><div class="label">Distributed · claimed</div><div class="value">${r ? `${units(r.distributed, d)} · ${units(r.claimed, d)}` : "–"}</div></div>
      <div class="fig"><div class="label">Token supply</div><div class="value">${p.token_supply ? units(p.token_supply, p.token_decimals, 0) : "–"}</div></div>
      <div class="fig"><div class="label">Token</div><div class="value mono">${short(p.token_address)}</div></div>
    </div>
    ${bar}
    ${p.chain_ok ? "" : '<p class="hint">Chain figures unavailable right now.</p>'}
  </article>`;
}

// ----- devices -----
function deviceRow(d) {
  const soc = d.soc_pct == null ? "–" :
    `<span class="soc"><span class="track"><span style="width:${Math.min(100, d.soc_pct)}%"></span></span>${nf0.format(d.soc_pct)}%</span>`;
  return `<td><div class="mono"><span class="dot ${d.online ? "on" : ""}" title="${d.online ? "online" : "offline"}"></span>${esc(d.device_id)}</div>
      <div class="cell-sub">${esc(d.pool)}</div></td>
    <td>${d.online
      ? `<span class="badge ${esc(d.status || "")}">${esc(d.status || "unknown")}</span>`
      : `<span class="badge offline" title="last reported: ${esc(d.status || "nothing")}">offline</span>`}</td>
    <td class="num">${power(d.power_w)}</td>
    <td>${soc}</td>
    <td class="num">${energy(d.energy_wh_total)}</td>
    <td class="num">${money(d.revenue_minor_total, d.currency)}</td>
    <td title="${esc(d.last_seen || "")}">${ago(d.last_seen)}</td>`;
}

async function loadDevices(append = false) {
  const params = new URLSearchParams({ limit: "100" });
  if ($("#device-pool").value) params.set("pool", $("#device-pool").value);
  if ($("#device-status").value) params.set("status", $("#device-status").value);
  if (append && state.cursor) params.set("cursor", state.cursor);
  const page = await api(`/v1/devices?${params}`);
  const body = $("#devices tbody");
  if (!append) { body.innerHTML = ""; state.devices.clear(); }
  for (const d of page.items) {
    const tr = document.createElement("tr");
    tr.dataset.device = d.device_id;
    tr.innerHTML = deviceRow(d);
    tr.addEventListener("click", () => selectDevice(d.device_id));
    if (d.device_id === state.selected) tr.classList.add("selected");
    body.appendChild(tr);
    state.devices.set(d.device_id, d);
  }
  if (!state.devices.size) body.innerHTML = '<tr><td colspan="7" class="empty">No devices match.</td></tr>';
  state.cursor = page.next_cursor;
  $("#more-devices").hidden = !page.next_cursor;
  $("#device-count").textContent = `${state.devices.size} device${state.devices.size === 1 ? "" : "s"} shown`;
  if (!state.selected && page.items.length) selectDevice(page.items[0].device_id);
}

function applyUpdate(u) {
  const d = state.devices.get(u.device_id);
  if (!d) return;
  Object.assign(d, u);
  const tr = document.querySelector(`tr[data-device="${CSS.escape(u.device_id)}"]`);
  if (!tr) return;
  tr.innerHTML = deviceRow(d);
  tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash");
}

// ----- income chart -----
async function selectDevice(id) {
  state.selected = id;
  document.querySelectorAll("#devices tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.device === id));
  $("#chart-device").textContent = `· ${id}`;
  await drawChart();
}

async function drawChart() {
  const id = state.selected;
  if (!id) return;
  const [days, bucket] = $("#chart-range").value.split("|");
  const end = new Date();
  const start = new Date(end.getTime() - Number(days) * 86400e3);
  const q = `start=${start.toISOString()}&end=${end.toISOString()}&bucket=${bucket}`;
  const box = $("#chart");
  box.dataset.drawn = "false";
  let income, tele;
  try {
    [income, tele] = await Promise.all([
      api(`/v1/devices/${encodeURIComponent(id)}/income?${q}`),
      api(`/v1/devices/${encodeURIComponent(id)}/telemetry?${q}`),
    ]);
  } catch (e) {
    box.innerHTML = `<div class="empty">${esc(e.message)}</div>`;
    return;
  }
  if (id !== state.selected) return;
  const xs = income.points.map((p) => new Date(p.start).getTime() / 1000);
  const revenue = income.points.map((p) => p.revenue_minor / 100);
  const kwh = tele.points.map((p) => p.energy_wh / 1000);
  const totalWh = tele.points.reduce((a, p) => a + p.energy_wh, 0);
  const best = Math.max(0, ...income.points.map((p) => p.revenue_minor));
  $("#chart-summary").innerHTML = `
    <div class="kpi"><div class="label">Revenue in range</div><div class="value">${money(income.total_minor, income.currency)}</div></div>
    <div class="kpi"><div class="label">Energy in range</div><div class="value">${energy(totalWh)}</div></div>
    <div class="kpi"><div class="label">Best ${bucket} bucket</div><div class="value">${money(best, income.currency)}</div></div>`;
  box.innerHTML = "";
  if (state.chart) state.chart.destroy();
  const width = Math.max(320, box.clientWidth || 600);
  state.chart = new uPlot({
    width, height: 300,
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true }, hkd: { auto: true, range: (u, min, max) => [0, Math.max(1, max * 1.1)] }, kwh: { auto: true, range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [
      { stroke: "#64748b", grid: { stroke: "#eef2f7" } },
      { scale: "hkd", stroke: "#64748b", grid: { stroke: "#eef2f7" }, values: (u, v) => v.map((x) => nf0.format(x)), label: income.currency, size: 60 },
      { scale: "kwh", side: 1, stroke: "#64748b", grid: { show: false }, label: "kWh", size: 50 },
    ],
    series: [
      {},
      { label: `Revenue (${income.currency})`, scale: "hkd", stroke: "#10b981", fill: "rgba(16,185,129,.35)", paths: uPlot.paths.bars({ size: [0.8, 40] }), value: (u, v) => (v == null ? "–" : v.toFixed(2)) },
      { label: "Energy (kWh)", scale: "kwh", stroke: "#3b82f6", width: 2, value: (u, v) => (v == null ? "–" : v.toFixed(1)) },
    ],
  }, [xs, revenue, kwh], box);
  box.dataset.drawn = "true";
}

// ----- attestations and proofs -----
function settlement(a) {
  // On-chain: pending in the challenge window (with the time left), final, or vetoed.
  if (!a.settlement || a.settlement === "none") return "";
  const left = a.settlement === "pending" && a.seconds_left != null
    ? ` · ${a.seconds_left >= 3600 ? `${Math.ceil(a.seconds_left / 3600)} h` : `${Math.ceil(a.seconds_left / 60)} min`} left` : "";
  const title = a.challenge_ends ? ` title="challenge window ends ${esc(utc(a.challenge_ends))} UTC"` : "";
  return `<span class="badge ${esc(a.settlement)}"${title}>${esc(a.settlement)}${left}</span>`;
}
async function loadAttestations() {
  const pool = $("#att-pool").value;
  const body = $("#attestations tbody");
  if (!pool) { body.innerHTML = '<tr><td colspan="10" class="empty">No pools yet.</td></tr>'; return; }
  const [page, devices] = await Promise.all([api(`/v1/pools/${encodeURIComponent(pool)}/attestations?limit=50`), poolDevices(pool)]);
  if (!page.items.length) {
    body.innerHTML = '<tr><td colspan="10" class="empty">No attestations yet for this pool: the oracle attests each period once it has closed.</td></tr>';
    return;
  }
  const options = devices.map((d) => `<option value="${esc(d)}">${esc(d)}</option>`).join("");
  body.innerHTML = page.items.map((a) => `<tr>
      <td class="num">${a.epoch}</td>
      <td>${utc(a.period_start)} → ${utc(a.period_end).slice(11)}</td>
      <td class="num">${money(a.revenue_minor)}</td>
      <td class="num">${units(a.investor_amount, 6)}</td>
      <td class="num">${a.device_count}</td>
      <td class="mono" title="${esc(a.merkle_root)}">${short(a.merkle_root)}</td>
      <td title="${esc(a.signers.join("\n"))}">${a.signers.length}</td>
      <td><span class="badge ${esc(a.state)}">${esc(a.state)}</span> ${settlement(a)}</td>
      <td class="mono" title="${esc(a.tx_hash || "")}">${short(a.tx_hash)}</td>
      <td><span class="verify-row"><select class="proof-device" aria-label="device">${options}</select>
        <button class="small verify" data-epoch="${a.epoch}">Check proof</button></span></td>
    </tr>`).join("");
  body.querySelectorAll("button.verify").forEach((b) => b.addEventListener("click", () => checkProof(pool, b)));
}

async function poolDevices(pool) {
  if (!state.poolDevices.has(pool)) {
    const page = await api(`/v1/devices?pool=${encodeURIComponent(pool)}&limit=500`);
    state.poolDevices.set(pool, page.items.map((d) => d.device_id));
  }
  return state.poolDevices.get(pool);
}

async function checkProof(pool, button) {
  const epoch = button.dataset.epoch;
  const device = button.parentElement.querySelector("select").value;
  const box = $("#proof");
  button.disabled = true;
  box.hidden = false;
  box.innerHTML = `<div class="verdict">Checking ${esc(device)} in epoch ${esc(epoch)} against the chain…</div>`;
  try {
    const base = `/v1/pools/${encodeURIComponent(pool)}/attestations/${epoch}/proof/${encodeURIComponent(device)}`;
    const proof = await api(base);
    const check = await api(`${base}/verify`);
    const fields = proof.fields.names.map((n, i) => `<dt>${esc(n)}</dt><dd class="mono">${esc(proof.fields.values[i])}</dd>`).join("");
    box.innerHTML = `<div class="verdict ${check.valid ? "ok" : "bad"}" id="proof-verdict" data-valid="${check.valid}">
        ${check.valid ? "✓ Proof valid" : "✗ Proof NOT valid"}: verifyLeaf on the attestation registry ${short(check.registry)}</div>
      <div class="verdict ${check.signatures_verified === check.signatures ? "ok" : "bad"}" id="signature-verdict"
        data-signatures="${check.signatures}" data-verified="${check.signatures_verified}">
        ${check.signatures_verified === check.signatures ? "✓" : "✗"} ${check.signatures_verified} of ${check.signatures}
        device signatures behind this leaf verified against the device's on-chain keys
        ${check.excluded ? ` · device excluded from this epoch: ${esc(check.excluded)}` : ""}
        ${check.signature_problems.map((p) => `<br>${esc(p)}`).join("")}</div>
      <dl>
        <dt>Device · epoch</dt><dd>${esc(device)} · ${esc(epoch)} (${esc(pool)})</dd>
        <dt>Leaf</dt><dd class="mono">${esc(proof.leaf)}</dd>
        <dt>On-chain root</dt><dd class="mono">${esc(check.onchain_root || "none")}</dd>
        <dt>Proof</dt><dd class="mono">${proof.proof.length} sibling hashes</dd>
        ${fields}
      </dl>`;
  } catch (e) {
    box.innerHTML = `<div class="verdict bad" id="proof-verdict" data-valid="false">Could not check: ${esc(e.message)}</div>`;
  } finally {
    button.disabled = false;
  }
}

// ----- portfolio (Sign-In with Ethereum through a browser wallet) -----
async function signIn() {
  const box = $("#portfolio");
  if (!window.ethereum) {
    box.textContent = "No browser wallet found: install one (it provides window.ethereum), or call POST /v1/auth/nonce and /v1/auth/login from your own client.";
    return;
  }
  try {
    const [address] = await window.ethereum.request({ method: "eth_requestAccounts" });
    const post = (path, body) => fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
      .then(async (r) => { const j = await r.json(); if (!r.ok) throw new Error(j.error?.message || r.statusText); return j; });
    const { message } = await post("/v1/auth/nonce", { address });
    const signature = await window.ethereum.request({ method: "personal_sign", params: [message, address] });
    const { token, address: who } = await post("/v1/auth/login", { message, signature });
    const res = await fetch(`/v1/investors/${who}/portfolio`, { headers: { Authorization: `Bearer ${token}` } });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error?.message || res.statusText);
    box.className = "";
    box.innerHTML = `<div class="table-wrap"><table><thead><tr><th>Pool</th><th>Token</th><th class="num">Balance</th>
      <th class="num">Share</th><th class="num">Claimable</th><th class="num">Claimed</th><th>Status</th></tr></thead><tbody>
      ${body.holdings.map((h) => `<tr><td>${esc(h.pool)}</td><td>${esc(h.token_symbol || short(h.token_address))}</td>
        <td class="num">${units(h.balance, 18, 0)}</td><td class="num">${(h.share_bps / 100).toFixed(2)}%</td>
        <td class="num">${units(h.claimable, 6)}</td><td class="num">${units(h.claimed, 6)}</td>
        <td><span class="badge ${esc(h.status)}" title="${h.status === "frozen" ? "no transfer or claim until unfrozen; revenue keeps accruing" : ""}">${esc(h.status)}</span></td></tr>`).join("")}
      </tbody></table></div><p class="hint">Signed in as <span class="mono">${esc(who)}</span>; claim with your wallet or <code>gridshare investor claim</code>.</p>`;
  } catch (e) {
    box.textContent = `Sign-in failed: ${e.message}`;
  }
}

// ----- live updates -----
function connectStream() {
  const live = $("#live");
  const es = new EventSource("/v1/stream");
  es.onopen = () => { live.className = "pill ok"; live.textContent = "● live"; };
  es.onerror = () => { live.className = "pill warn"; live.textContent = "● live: reconnecting"; };
  es.addEventListener("device", (ev) => applyUpdate(JSON.parse(ev.data)));
}

// ----- wiring -----
async function main() {
  loadHealth();
  setInterval(loadHealth, 15000);
  try { await loadPools(); } catch (e) { $("#pools").innerHTML = `<div class="empty">${esc(e.message)}</div>`; }
  setInterval(() => loadPools().catch(() => {}), 30000);
  $("#device-pool").addEventListener("change", () => loadDevices());
  $("#device-status").addEventListener("change", () => loadDevices());
  $("#more-devices").addEventListener("click", () => loadDevices(true));
  $("#chart-range").addEventListener("change", drawChart);
  $("#att-pool").addEventListener("change", loadAttestations);
  $("#signin").addEventListener("click", signIn);
  try { await loadDevices(); } catch (e) { $("#devices tbody").innerHTML = `<tr><td colspan="7" class="empty">${esc(e.message)}</td></tr>`; }
  try { await loadAttestations(); } catch (e) { $("#attestations tbody").innerHTML = `<tr><td colspan="10" class="empty">${esc(e.message)}</td></tr>`; }
  connectStream();
  window.addEventListener("resize", () => state.chart && state.chart.setSize({ width: Math.max(320, $("#chart").clientWidth), height: 300 }));
}
main();
