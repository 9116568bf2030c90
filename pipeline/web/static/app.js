// squeezedet-edge live page: one card per camera (live image + figures), refreshed from /api/stats.
// No external assets: works on a network without internet. Same-origin requests reuse the browser's
// Basic credentials, so the token is typed once.
"use strict";

const $ = (tag, attrs = {}, ...children) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v; else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c);
  return el;
};
const fmt = (v, digits = 1) => (typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "–");
const cards = new Map();

function figure(label) {
  const value = $("b", {}, "–");
  return [$("div", {}, $("span", {}, label), value), value];
}

function startImage(img, cam, mode, fps) {
  if (mode === "mjpeg") {
    // One long-lived multipart response; the server paces it and sends only the newest frame.
    img.onerror = () => setTimeout(() => { img.src = `${cam.stream}?t=${Date.now()}`; }, 2000);
    img.src = cam.stream;
    return;
  }
  // Periodically refreshed JPEG (many cameras: browsers allow ~6 open connections per host).
  const next = () => {
    const probe = new Image();
    probe.onload = () => { img.src = probe.src; setTimeout(next, 1000 / fps); };
    probe.onerror = () => setTimeout(next, 2000);
    probe.src = `${cam.latest}?t=${Date.now()}`;
  };
  next();
}

function addCamera(cam, mode, fps) {
  const img = $("img", { alt: `${cam.name} live view`, "data-camera": cam.name });
  const state = $("span", { class: "pill" }, "?");
  const [fFps, vFps] = figure("FPS");
  const [fInf, vInf] = figure("inference ms");
  const [fFrames, vFrames] = figure("frames");
  const [fDrop, vDrop] = figure("dropped");
  const counts = $("div", { class: "counts" });
  // a click opens the newest frame at full size (aiming the camera, placing zones)
  const link = $("a", { href: cam.latest, target: "_blank", title: "full-size frame" }, img);
  const card = $("section", { class: "card", id: `camera-${cam.name}` },
    $("div", { class: "title" }, $("h2", {}, cam.name), state), link,
    $("div", { class: "figures" }, fFps, fInf, fFrames, fDrop), counts);
  document.getElementById("cameras").append(card);
  cards.set(cam.name, { img, state, vFps, vInf, vFrames, vDrop, counts, colours: cam.label_colours || {} });
  startImage(img, cam, mode, fps);
}

function tag(text, colour) {
  const t = $("span", { class: "tag" });
  if (colour) {  // set through the CSSOM: the page's Content-Security-Policy forbids inline style attributes
    const sw = $("span", { class: "swatch" });
    sw.style.background = colour;
    t.append(sw);
  }
  t.append(text);
  return t;
}

function render(stats) {
  const mqtt = stats.mqtt || {};
  const pill = document.getElementById("mqtt");
  if (mqtt.enabled === false) { pill.textContent = "MQTT off"; pill.className = "pill"; }
  else { pill.textContent = mqtt.connected ? "MQTT connected" : "MQTT disconnected";
         pill.className = `pill ${mqtt.connected ? "ok" : "bad"}`; }
  document.getElementById("daemon").textContent =
    `model ${stats.model_id || "?"} · up ${fmt(stats.uptime_s, 0)} s`;
  for (const [name, cam] of Object.entries(stats.cameras || {})) {
    const c = cards.get(name);
    if (!c) continue;
    const st = cam.state || cam.source_state || "?";
    c.state.textContent = st;
    c.state.className = `pill ${st === "online" ? "ok" : st === "reconnecting" ? "warn" : "bad"}`;
    c.vFps.textContent = fmt(cam.fps);
    c.vInf.textContent = fmt(cam.inference_ms);
    c.vFrames.textContent = cam.frames ?? "–";
    c.vDrop.textContent = cam.dropped_frames ?? "–";
    const counts = cam.counts || {};
    const tags = [];
    for (const [label, n] of Object.entries(counts.labels || {})) tags.push(tag(`${label} ${n}`, c.colours[label]));
    for (const [zone, per] of Object.entries(counts.zones || {})) {
      const n = Object.values(per).reduce((a, b) => a + b, 0);
      tags.push(tag(`zone ${zone}: ${n}`));
    }
    for (const [line, per] of Object.entries(counts.lines || {})) {
      let i = 0, o = 0;
      for (const v of Object.values(per)) { i += v.in || 0; o += v.out || 0; }
      tags.push(tag(`line ${line}: in ${i} · out ${o}`));
    }
    c.counts.replaceChildren(...tags);
  }
}

async function poll() {
  try {
    const r = await fetch("/api/stats", { cache: "no-store" });
    if (r.ok) render(await r.json());
  } catch (e) { document.getElementById("daemon").textContent = "daemon unreachable"; }
  setTimeout(poll, 1000);
}

// data-live on <body>: "none" -> "some" -> "all" as camera images arrive (tests and kiosks read it).
function watchImages() {
  const imgs = [...cards.values()].map((c) => c.img);
  const loaded = imgs.filter((img) => img.naturalWidth > 0).length;
  const live = loaded === 0 ? "none" : loaded === imgs.length ? "all" : "some";
  document.body.dataset.live = live;
  document.title = `squeezedet-edge · ${loaded}/${imgs.length} live`;
  setTimeout(watchImages, 250);
}

async function main() {
  const r = await fetch("/api/cameras", { cache: "no-store" });
  const info = await r.json();
  const wanted = new URLSearchParams(location.search).get("mode");
  const mode = wanted === "jpeg" || wanted === "mjpeg" ? wanted : info.cameras.length > 4 ? "jpeg" : "mjpeg";
  for (const cam of info.cameras) addCamera(cam, mode, info.stream_fps);
  watchImages();
  poll();
}

main();
