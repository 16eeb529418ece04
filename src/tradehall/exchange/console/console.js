// Tradehall console: one symbol's depth ladder, recent trades, last price and VWAP, live over
// /ws/market. No dependencies, no build step. Book rule (docs/exchange-market-data.md): apply a
// diff only if first_sequence == sequence + 1; ignore older ones; on a gap, resubscribe.
"use strict";

const DEPTH = 10;
const MAX_TRADES = 30;
const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  symbol: null,
  seq: null,            // book sequence of what we show; null until a snapshot arrives
  bids: new Map(),      // price (cents) -> [quantity, orders]
  asks: new Map(),
  trades: [],
  vwapTimer: null,
  retry: 500,
};

const cents = (price) => Math.round(price * 100);
const fmt = (c) => (c / 100).toFixed(2);

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.dataset.state = kind;
}

function send(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

function watch(symbol) {
  symbol = symbol.trim();
  if (!symbol) return;
  if (state.symbol && state.symbol !== symbol) send({ op: "unsubscribe", symbol: state.symbol });
  state.symbol = symbol;
  state.seq = null;
  state.bids.clear();
  state.asks.clear();
  state.trades = [];
  $("watched").textContent = symbol;
  $("last").textContent = "-";
  $("vwap").textContent = "-";
  history.replaceState(null, "", "?symbol=" + encodeURIComponent(symbol));
  send({ op: "subscribe", symbol, channels: ["book", "trades", "ticker"] });
  render();
  refreshVwap();
}

function applyLevels(side, levels) {
  for (const lv of levels) {
    const key = cents(lv.price);
    if (lv.total_quantity === 0) side.delete(key);
    else side.set(key, [lv.total_quantity, lv.order_count]);
  }
}

function onMessage(msg) {
  if (msg.symbol !== undefined && msg.symbol !== state.symbol && msg.type !== "error") return;
  switch (msg.type) {
    case "symbols": {
      const list = $("symbols");
      list.replaceChildren(...msg.symbols.map((s) => new Option(s, s)));
      if (!state.symbol && msg.symbols.length) watch(msg.symbols[0]);
      break;
    }
    case "book_snapshot":
      state.bids.clear();
      state.asks.clear();
      applyLevels(state.bids, msg.bids);
      applyLevels(state.asks, msg.asks);
      state.seq = msg.sequence;
      setStatus("live", "live");
      break;
    case "book":
      if (state.seq === null || msg.sequence <= state.seq) break;
      if (msg.first_sequence !== state.seq + 1) {   // gap: start over from a snapshot
        setStatus("resync", "resync");
        state.seq = null;
        send({ op: "subscribe", symbol: state.symbol, channels: ["book"] });
        break;
      }
      applyLevels(state.bids, msg.bids);
      applyLevels(state.asks, msg.asks);
      state.seq = msg.sequence;
      break;
    case "trades_snapshot":
      state.trades = msg.trades.slice().reverse();
      break;
    case "trade":
      state.trades.unshift(msg);
      state.trades.length = Math.min(state.trades.length, MAX_TRADES);
      scheduleVwap();
      break;
    case "ticker":
      $("last").textContent = msg.last_price === null ? "-" : msg.last_price.toFixed(2);
      break;
    case "error":
      setStatus(msg.code + ": " + msg.message, "error");
      break;
    default:
      break;
  }
}

function render() {
  const body = $("ladder").tBodies[0];
  const asks = [...state.asks.keys()].sort((a, b) => a - b).slice(0, DEPTH).reverse();
  const bids = [...state.bids.keys()].sort((a, b) => b - a).slice(0, DEPTH);
  const rows = [];
  for (const p of asks) rows.push(row("ask", p, state.asks.get(p)));
  for (const p of bids) rows.push(row("bid", p, state.bids.get(p)));
  body.replaceChildren(...rows);
  const bestBid = bids[0], bestAsk = asks[asks.length - 1];
  $("spread").textContent = bestBid !== undefined && bestAsk !== undefined ? fmt(bestAsk - bestBid) : "-";
  $("seq").textContent = state.seq === null ? "-" : String(state.seq);
  const tbody = $("trades").tBodies[0];
  tbody.replaceChildren(...state.trades.map((t) => {
    const tr = cells([t.executed_at.slice(11, 19), t.taker_side === "bid" ? "buy" : "sell",
      t.price.toFixed(2), String(t.quantity)], ["time", "side", "price", "qty"]);
    tr.className = t.taker_side;
    return tr;
  }));
}

function row(side, price, level) {
  const [qty, orders] = level;
  const values = side === "bid"
    ? [String(orders), String(qty), fmt(price), "", ""]
    : ["", "", fmt(price), String(qty), String(orders)];
  const tr = cells(values, ["orders", "qty", "price", "qty", "orders"]);
  tr.className = side;
  tr.dataset.price = fmt(price);
  return tr;
}

function cells(values, classes) {
  const tr = document.createElement("tr");
  values.forEach((v, i) => {
    const td = document.createElement("td");
    td.textContent = v;
    td.className = classes[i];
    tr.appendChild(td);
  });
  return tr;
}

function scheduleVwap() {
  if (state.vwapTimer === null) state.vwapTimer = setTimeout(refreshVwap, 250);
}

async function refreshVwap() {
  state.vwapTimer = null;
  const symbol = state.symbol;
  if (!symbol) return;
  try {
    const res = await fetch("/stocks/" + encodeURIComponent(symbol) + "/price");
    if (!res.ok || symbol !== state.symbol) return;
    const body = await res.json();
    $("vwap").textContent = body.current_price === null ? "-" : body.current_price.toFixed(2);
  } catch (err) {
    /* the socket's status shows connectivity problems */
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/ws/market");
  state.ws = ws;
  setStatus("connecting", "connecting");
  ws.onopen = () => {
    state.retry = 500;
    send({ op: "symbols" });
    if (state.symbol) watch(state.symbol);
  };
  ws.onmessage = (event) => {
    for (const msg of JSON.parse(event.data)) onMessage(msg);
    render();
  };
  ws.onclose = (event) => {
    setStatus("disconnected" + (event.reason ? ": " + event.reason : "") + ", retrying", "error");
    state.seq = null;
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 10000);
  };
}

$("picker").addEventListener("submit", (event) => {
  event.preventDefault();
  watch($("symbol").value);
});
const initial = new URLSearchParams(location.search).get("symbol");
if (initial) {
  state.symbol = initial;
  $("symbol").value = initial;
  $("watched").textContent = initial;
}
connect();
