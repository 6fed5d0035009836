// The page's words in the officer's language: the same catalogues the server words its
// alerts, reasons and PDF reports from (agri_common/locales), bundled into the page.
// The language is the one the officer chose (remembered in this browser), else the
// browser's; every visible string goes through t(), none is written in the code.
import en from "../../agri_common/locales/en.json";
import zh from "../../agri_common/locales/zh-CN.json";

const CATALOGUES = { en, "zh-CN": zh };
export const LOCALES = Object.keys(CATALOGUES);
const CHOSEN = "agri-locale";
export const missing = new Set(); // keys asked for that a catalogue lacks (the tests read it)
window.agriMissing = missing;

function preferred() {
  const chosen = localStorage.getItem(CHOSEN);
  if (CATALOGUES[chosen]) return chosen;
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (base === "zh") return "zh-CN";
    if (base === "en") return "en";
  }
  return "en";
}

let current = preferred();
export const locale = () => current;

export function choose(next) {
  localStorage.setItem(CHOSEN, next);
  current = next;
}

function fill(template, params, words) {
  return template.replace(/\{(\w+)(?:\|(\w+))?\}/g, (whole, name, prefix) => {
    if (params[name] == null) return whole;
    const value = String(params[name]);
    return prefix ? words[`${prefix}.${value}`] ?? value : value;
  });
}

/** The current language's wording of ``key`` with {name} parameters filled in. */
export function t(key, params = {}) {
  const words = CATALOGUES[current];
  const template = words[key] ?? en[key];
  if (template == null || words[key] == null) missing.add(`${current}:${key}`);
  return fill(template ?? key, params, words);
}

/** A word for a machine value (a kind, status, category): the value itself if unknown. */
export const word = (prefix, value) => CATALOGUES[current][`${prefix}.${value}`] ?? String(value ?? "-");

const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;

/** A sentence the server composed: worded from its code when it has one, else as sent.
 * Instants among its parameters (ISO 8601) read as the locale's day and the minute. */
export function said(sentence, coded) {
  if (!coded?.code) return sentence ?? "";
  const params = Object.fromEntries(
    Object.entries(coded.params ?? {}).map(([k, v]) => [k, INSTANT.test(v) ? `${day(v)} ${v.slice(11, 16)} UTC` : v])
  );
  return t(coded.code, params);
}

/** Month and weekday names for the charts' time axes (uPlot.fmtDate). */
export function dateNames() {
  if (current !== "zh-CN") return undefined; // uPlot's own English names
  const months = Array.from({ length: 12 }, (_, i) => `${i + 1}月`);
  const days = ["星期日", "星期一", "星期二", "星期三", "星期四", "星期五", "星期六"];
  return { MMMM: months, MMM: months, WWWW: days, WWW: days.map((d) => d.replace("星期", "周")) };
}

// --- numbers, money and dates for the locale --------------------------------------

const tag = () => (current === "zh-CN" ? "zh-CN" : "en");
export const number = (v, digits = 0) =>
  v == null ? "-" : Number(v).toLocaleString(tag(), { minimumFractionDigits: digits, maximumFractionDigits: digits });
/** An exact CNY amount, two decimals, grouped as the locale groups. */
export const cny = (v) => (v == null ? "-" : number(v, 2));
/** A headline CNY amount: 万元 in Chinese from 10,000 yuan (as bank documents write it). */
export function money(v) {
  if (v == null) return "-";
  const n = Number(v);
  if (current === "zh-CN") return Math.abs(n) >= 10000 ? `${number(n / 10000, 2)}万元` : `${number(n, 2)}元`;
  return `CNY ${number(n, 2)}`;
}
export const pct = (v) => (v == null ? "-" : `${Math.round(Number(v) * 100)}%`);
/** A calendar day: ISO in English (what the credit file uses), 2024年12月31日 in Chinese. */
export function day(iso) {
  if (!iso) return "-";
  const d = iso.slice(0, 10);
  if (current !== "zh-CN") return d;
  const [y, m, dd] = d.split("-").map(Number);
  return `${y}年${m}月${dd}日`;
}

/** Static page text: elements marked data-i18n (text) and data-i18n-attr ("attr:key;..."). */
export function applyStatic(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      el.setAttribute(attr, t(key));
    }
  }
}
