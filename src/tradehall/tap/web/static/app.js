/*
 * Tradehall Tap - the single-page app (issue 9, spec Part A §9 and Part B §5).
 *
 * One canvas shows the live BTC price line scrolling left and, over it, the grid of future time
 * columns x price rows with each cell's reward rate. A tap (click, touch, or Enter on the
 * keyboard cursor) places a bet on that cell at the selected preset amount:
 *
 *   tap -> PENDING (pulsing) -> POST /api/bets -> 202 (new balance) ... bet:confirmed -> CONFIRMED
 *                                              \-> 4xx/5xx -> reverted, with a message
 *   socket drops while PENDING -> UNKNOWN, with a "Refresh bets" prompt (GET /api/bets decides)
 *   bet:resolved -> WON (payout) / LOST / VOID (refund)
 *
 * The server is the authority on everything: placeability, rates and balances come from it; the
 * page only refuses taps it knows the server would refuse (closed columns, CRITICAL feed), so the
 * user gets an immediate answer. A CRITICAL breaker that is receiving fresh prices is shown as
 * "Warming up" (it reopens after the recovery period), not as "Feed down". Server time is
 * estimated from the price ticks' timestamps, so the grid scrolls with the server's columns and
 * the login timestamp falls inside its window even if this device's clock is off.
 *
 * WebSocket: reconnects with full-jitter exponential back-off (random 0..min(5 s, 250 ms x 2^n)),
 * pings every 10 s and treats 15 s of silence as a dead socket.
 */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const STORE_SESSION = "tap.session.v1";
  const STORE_DEV_KEY = "tap.devWallet.v1";
  const STORE_AMOUNT = "tap.amount.v1";
  const BANNERS = {
    degraded: "Price feed delayed - trades at your own risk",
    critical: "Betting suspended - price feed issue detected",
  };
  // The breaker is CRITICAL but prices are fresh: it is counting its recovery period. Each
  // system:status says how long it has been counting (recovering_for_ms) and the period
  // (recovery_ms, also in /app-config.json), so the page counts down locally between statuses;
  // before the first such status it names the period instead.
  function warmingText() {
    const ms = Number.isFinite(S.recoveryMs) ? S.recoveryMs : S.config.breaker_recovery_ms;
    if (!(Number.isFinite(ms) && ms > 0)) return "Warming up - betting opens once the price feed is steady";
    if (S.recoveringAt === null) return `Warming up - betting opens after ${Math.round(ms / 1000)} s of steady prices`;
    const left = Math.ceil((ms - (performance.now() - S.recoveringAt)) / 1000);
    return left > 0 ? `Warming up - betting opens in ${left} s` : "Warming up - betting opens in a moment";
  }
  const RANK = { failed: 0, pending: 1, unknown: 1, confirmed: 2, won: 3, lost: 3, void: 3 };

  const S = {
    config: {
      chain_id: 1,
      dev_self_fund: false,
      breaker_degraded_ms: 3000,
      breaker_recovery_ms: null,
    },
    grid: null,
    cellsById: new Map(),
    offsetMs: 0,
    offsetKnown: false,
    prices: [],
    health: "unknown",
    override: "auto",
    lastPriceAt: null, // performance.now() when the server last received a price (estimated)
    recoveringAt: null, // performance.now() when the breaker's warm-up began (estimated), or null
    recoveryMs: null, // the warm-up period, from system:status
    feed: "connecting", // what the indicator shows: connecting, healthy, degraded, warming, critical
    session: null,
    balance: null,
    amount: null,
    bets: new Map(),
    history: [],
    ws: null,
    wsOpen: false,
    attempt: 0,
    lastMessageAt: 0,
    cursor: { col: 2, row: null },
    hover: null,
    view: null,
    lastTap: null,
    taps: 0,
  };

  // ------------------------------------------------------------------ formatting

  const usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  const fmtUsd = (cents) => (cents === null || cents === undefined ? "-" : usd.format(cents / 100));
  const fmtPrice = (cents) =>
    "$" + (cents / 100).toLocaleString("en-US", { minimumFractionDigits: 0, maximumFractionDigits: 0 });
  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(sec) {
    const d = new Date(sec * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function fmtRate(rate) {
    const r = Number(rate);
    if (!Number.isFinite(r)) return "-";
    return (r < 10 ? r.toFixed(2) : r < 100 ? r.toFixed(1) : r.toFixed(0)) + "\u00d7";
  }
  const describeCell = (c) =>
    `${fmtPrice(c.lower)}-${fmtPrice(c.upper)} between ${fmtTime(c.col_start)} and ${fmtTime(c.col_end)}`;

  function parseCellId(cellId, columnSeconds) {
    const [start, lower, upper] = cellId.split("_").map(Number);
    return { cell_id: cellId, col_start: start, col_end: start + columnSeconds, lower, upper };
  }

  function randomHex(bytes) {
    return EthSign.toHex(crypto.getRandomValues(new Uint8Array(bytes)));
  }

  const serverNowMs = () => Date.now() + S.offsetMs;

  function noteServerTime(serverMs) {
    const sample = serverMs - Date.now();
    S.offsetMs = S.offsetKnown ? S.offsetMs * 0.8 + sample * 0.2 : sample;
    S.offsetKnown = true;
  }

  // ------------------------------------------------------------------ HTTP

  async function api(method, path, body) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (S.session) headers.Authorization = `Bearer ${S.session.id}`;
    const resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
    if (resp.status === 401 && S.session && !path.startsWith("/api/auth/login")) {
      signOutLocally("Your session has expired. Sign in again.");
    }
    return { ok: resp.ok, status: resp.status, data: data || {} };
  }

  // ------------------------------------------------------------------ status line and banners

  function setStatus(state, text) {
    const el = $("bet-status");
    el.dataset.state = state;
    el.textContent = text;
  }

  function pricesFresh() {
    const limit = S.config.breaker_degraded_ms ?? 3000;
    return S.lastPriceAt !== null && performance.now() - S.lastPriceAt <= limit;
  }

  function feedState() {
    if (!S.wsOpen) return "connecting";
    if (S.health === "critical" && S.override === "auto" && pricesFresh()) return "warming";
    return S.health;
  }

  // Bets are refused while the breaker is CRITICAL; the reason shown depends on why.
  const suspendedText = () => (S.feed === "warming" ? warmingText() : BANNERS.critical);

  // Called on every status, price and socket change and twice a second (a warming feed whose
  // prices stop must turn to "Feed down" without waiting for the next status); touches the DOM
  // only when the shown state changes.
  let renderedFeed = "";
  function renderHealth() {
    S.feed = feedState();
    const shown = S.feed === "warming" ? warmingText() : ""; // the countdown re-renders each second
    const key = `${S.feed}|${S.health}|${S.wsOpen}|${shown}`;
    if (key === renderedFeed) return;
    renderedFeed = key;
    const feed = $("feed-state");
    const text = $("feed-text");
    feed.dataset.state = S.feed;
    text.textContent =
      {
        connecting: "Reconnecting...",
        healthy: "Live",
        degraded: "Feed delayed",
        warming: "Warming up",
        critical: "Feed down",
      }[S.feed] || "Connecting...";
    // the banner follows the server's state even while the socket reconnects
    const level = S.feed === "connecting" ? S.health : S.feed;
    const banner = $("banner");
    const message = level === "warming" ? warmingText() : BANNERS[level];
    banner.hidden = !message;
    banner.dataset.level = message ? level : "none";
    $("banner-text").textContent = message || "";
    $("board").setAttribute("aria-disabled", S.health === "critical" ? "true" : "false");
  }
  setInterval(renderHealth, 500);

  // Balances arrive from responses and events in any order; a ticket taken when a request is sent
  // (or an event received) keeps a slow old answer from overwriting a newer balance.
  let tickets = 0;
  let appliedTicket = 0;
  const ticket = () => ++tickets;

  function setBalance(cents, since) {
    if (cents === null || cents === undefined) return;
    if (since < appliedTicket) return;
    appliedTicket = since;
    S.balance = cents;
    const el = $("balance");
    el.textContent = fmtUsd(cents);
    el.dataset.cents = String(cents);
  }

  // ------------------------------------------------------------------ wallets and sign-in

  function loginText(nonce, timestamp, chainId) {
    return [
      "Tap Trading Bet",
      "Action: login",
      "Cell: -",
      "Amount: 0",
      `Nonce: ${nonce}`,
      `Timestamp: ${timestamp}`,
      `Chain: ${chainId}`,
      "Version: 1",
    ].join("\n");
  }

  function devKey() {
    let hex = localStorage.getItem(STORE_DEV_KEY);
    let key = null;
    try {
      key = hex ? EthSign.fromHex(hex) : null;
    } catch (_) {
      key = null;
    }
    if (!key || !EthSign.validPrivateKey(key)) {
      key = EthSign.generatePrivateKey();
      localStorage.setItem(STORE_DEV_KEY, EthSign.toHex(key));
    }
    return key;
  }

  function devWallet() {
    const key = devKey();
    return { wallet: EthSign.address(key), sign: async (text) => EthSign.personalSign(key, text) };
  }

  async function injectedWallet() {
    const eth = window.ethereum;
    if (!eth || typeof eth.request !== "function") throw new Error("No browser wallet found.");
    const accounts = await eth.request({ method: "eth_requestAccounts" });
    if (!accounts || !accounts.length) throw new Error("The wallet shared no account.");
    const wallet = accounts[0];
    return {
      wallet,
      sign: (text) =>
        eth.request({ method: "personal_sign", params: ["0x" + EthSign.toHex(EthSign.utf8(text)), wallet] }),
    };
  }

  async function signIn(kind) {
    const error = $("signin-error");
    error.textContent = "";
    try {
      const { wallet, sign } = kind === "dev" ? devWallet() : await injectedWallet();
      const nonce = randomHex(16);
      const timestamp = Math.floor(serverNowMs() / 1000);
      const chainId = S.config.chain_id;
      const signature = await sign(loginText(nonce, timestamp, chainId));
      const since = ticket();
      const resp = await api("POST", "/api/auth/login", { wallet, nonce, timestamp, chain_id: chainId, signature });
      if (!resp.ok) {
        error.textContent =
          resp.status === 401
            ? "Sign-in refused: the signature did not verify or took too long. Try again."
            : resp.data.message || `Sign-in failed (${resp.status}).`;
        return;
      }
      S.session = { id: resp.data.session_id, wallet: resp.data.user.wallet, expires_at: resp.data.expires_at, kind };
      localStorage.setItem(STORE_SESSION, JSON.stringify(S.session));
      setBalance(resp.data.user.balance, since);
      $("signin-dialog").close();
      afterSignIn();
    } catch (exc) {
      error.textContent = (exc && exc.message) || "Sign-in failed.";
    }
  }

  function afterSignIn() {
    $("signin").hidden = true;
    $("signout").hidden = false;
    $("fund").hidden = !S.config.dev_self_fund;
    $("signout").setAttribute("aria-label", `Sign out ${S.session.wallet}`);
    $("signout").title = S.session.wallet;
    if (S.ws && S.wsOpen) S.ws.send(JSON.stringify({ type: "auth", token: S.session.id }));
    refreshAccount();
  }

  function signOutLocally(message) {
    S.session = null;
    S.bets.clear();
    S.history = [];
    localStorage.removeItem(STORE_SESSION);
    $("signin").hidden = false;
    $("signout").hidden = true;
    $("fund").hidden = true;
    $("balance").textContent = "-";
    $("balance").dataset.cents = "";
    $("unknown-banner").hidden = true;
    renderHistory();
    if (message) setStatus("refused", message);
    if (S.ws) S.ws.close(); // the next socket is anonymous
  }

  async function signOut() {
    if (S.session) {
      try {
        await api("POST", "/api/auth/logout");
      } catch (_) {
        /* revoke best effort; the local session is dropped anyway */
      }
    }
    signOutLocally("Signed out.");
  }

  function openSignIn() {
    $("injected-note").hidden = !!window.ethereum;
    $("signin-injected").disabled = !window.ethereum;
    const stored = localStorage.getItem(STORE_DEV_KEY);
    $("dev-address").textContent = stored ? `Stored development wallet: ${devWallet().wallet}` : "";
    $("signin-error").textContent = "";
    $("signin-dialog").showModal();
  }

  async function refreshAccount() {
    if (!S.session) return;
    try {
      const since = ticket();
      const me = await api("GET", "/api/me");
      if (me.ok) setBalance(me.data.balance, since);
      await loadHistory();
    } catch (_) {
      /* offline: the socket reconnect will try again */
    }
  }

  async function fund() {
    const button = $("fund");
    button.disabled = true;
    try {
      const since = ticket();
      const resp = await api("POST", "/api/dev/fund", { amount: 10000 });
      if (resp.ok) {
        setBalance(resp.data.balance, since);
        setStatus("idle", "Added $100.00 of test funds.");
      } else {
        setStatus("failed", resp.data.message || "Funding failed.");
      }
    } catch (_) {
      setStatus("failed", "Funding failed: no answer from the server.");
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ bets

  function failureMessage(code, fallback) {
    return (
      {
        insufficient_funds: "Not enough balance for this bet - add funds first.",
        cell_unavailable: "That column has closed - pick a later one.",
        duplicate_bet: "You already have a bet on this cell.",
        PRICE_FEED_STALE: suspendedText(),
        rate_limited: "Too many bets - wait a moment.",
        invalid_amount: "That amount is not one of the presets.",
        overloaded: "The server is busy - try again.",
        error: "The bet could not be stored.",
      }[code] || fallback || "The bet was not placed."
    );
  }

  function refuse(text) {
    setStatus("refused", text);
  }

  function placeable(cell) {
    if (!S.grid || !cell) return false;
    const nowS = Math.floor(serverNowMs() / 1000);
    const cs = S.grid.column_seconds;
    const current = nowS - (nowS % cs);
    const offset = (S.grid.first_placeable - S.grid.columns[0]) / cs;
    const info = S.cellsById.get(cell.cell_id);
    return !!info && info.placeable && cell.col_start >= current + offset * cs;
  }

  function tapCell(cell) {
    if (!cell) return;
    S.lastTap = cell.cell_id;
    S.taps += 1;
    if (!S.session) {
      refuse("Sign in to place bets.");
      openSignIn();
      return;
    }
    // warming up is routine, not an error: said calmly, not in the red "refused" style
    if (S.health === "critical") return S.feed === "warming" ? setStatus("waiting", warmingText()) : refuse(suspendedText());
    if (!placeable(cell)) return refuse("This column is closed for bets: bets open from the third column on.");
    const existing = S.bets.get(cell.cell_id);
    if (existing && existing.state !== "failed") return refuse("You already have a bet on this cell.");
    if (!S.amount) return refuse("Choose an amount first.");
    placeBet(cell);
  }

  async function placeBet(cell) {
    const info = S.cellsById.get(cell.cell_id);
    const bet = {
      ...parseCellId(cell.cell_id, S.grid.column_seconds),
      amount: S.amount,
      rate: info ? info.rate : null,
      state: "pending",
      bet_id: null,
      payout: null,
      changedAt: performance.now(),
    };
    S.bets.set(cell.cell_id, bet);
    setStatus("pending", `Placing ${fmtUsd(bet.amount)} on ${describeCell(bet)}...`);
    renderHistory();
    let resp;
    const since = ticket();
    try {
      resp = await api("POST", "/api/bets", { cell_id: bet.cell_id, amount: bet.amount, nonce: randomHex(16) });
    } catch (_) {
      markUnknown(bet);
      return;
    }
    if (resp.ok) {
      bet.bet_id = resp.data.bet_id;
      setBalance(resp.data.new_balance, since);
      if (bet.state === "pending") {
        setStatus("pending", `Bet accepted, waiting for confirmation: ${describeCell(bet)}`);
        setTimeout(() => checkBet(bet), 4000);
      }
    } else if (resp.status === 504) {
      bet.bet_id = resp.data.bet_id || null;
      markUnknown(bet);
    } else {
      failBet(bet, failureMessage(resp.data.error, resp.data.message));
      if (resp.data.error === "PRICE_FEED_STALE" && S.feed === "warming") setStatus("waiting", warmingText());
      if (resp.data.error === "duplicate_bet") loadHistorySoon(); // placed elsewhere: show it
    }
    renderHistory();
  }

  async function checkBet(bet) {
    if (bet.state !== "pending" || !bet.bet_id || !S.session) return;
    try {
      const resp = await api("GET", `/api/bets/${encodeURIComponent(bet.bet_id)}`);
      if (resp.ok) applyServerBet(resp.data);
    } catch (_) {
      /* still pending; the socket or a refresh will settle it */
    }
  }

  function setBetState(bet, state) {
    if (bet.state === state) return;
    bet.state = state;
    bet.changedAt = performance.now();
  }

  function failBet(bet, message) {
    if (bet.state === "failed" || RANK[bet.state] >= RANK.confirmed) return;
    setBetState(bet, "failed");
    setStatus("failed", message);
    setTimeout(() => {
      if (S.bets.get(bet.cell_id) === bet && bet.state === "failed") {
        S.bets.delete(bet.cell_id);
        renderHistory();
      }
    }, 1500);
    renderHistory();
  }

  function markUnknown(bet) {
    if (bet.state !== "pending") return;
    setBetState(bet, "unknown");
    $("unknown-banner").hidden = false;
    setStatus("unknown", `Bet status unknown (${describeCell(bet)}) - refresh to check.`);
    renderHistory();
  }

  function confirmBet(data) {
    if (!S.grid) return;
    let bet = S.bets.get(data.cell_id);
    if (!bet) {
      bet = { ...parseCellId(data.cell_id, S.grid.column_seconds), amount: null, rate: null, payout: null };
      bet.state = "pending";
      S.bets.set(data.cell_id, bet);
    }
    bet.bet_id = data.bet_id;
    if (RANK[bet.state] < RANK.confirmed) setBetState(bet, "confirmed");
    setBalance(data.new_balance, ticket());
    setStatus("confirmed", `Bet confirmed: ${describeCell(bet)}.`);
    updateUnknownBanner();
    loadHistorySoon();
  }

  function resolveBet(data) {
    if (!S.grid) return;
    let bet = S.bets.get(data.cell_id);
    if (!bet) {
      bet = { ...parseCellId(data.cell_id, S.grid.column_seconds), amount: null, rate: null };
      S.bets.set(data.cell_id, bet);
    }
    bet.bet_id = data.bet_id;
    bet.payout = data.status === "void" ? data.refund : data.payout;
    setBetState(bet, data.status);
    if (data.new_balance !== null && data.new_balance !== undefined) setBalance(data.new_balance, ticket());
    else refreshAccount();
    const text =
      data.status === "won"
        ? `Won ${fmtUsd(data.payout)} on ${describeCell(bet)}!`
        : data.status === "void"
          ? `Bet voided (price data gap), ${fmtUsd(data.refund)} refunded.`
          : `Lost: the price missed ${describeCell(bet)}.`;
    setStatus(data.status, text);
    updateUnknownBanner();
    loadHistorySoon();
  }

  function applyServerBet(row) {
    const state = row.status === "insufficient_funds" ? "failed" : row.status;
    let bet = S.bets.get(row.cell_id);
    if (!bet) {
      bet = { cell_id: row.cell_id, state };
      S.bets.set(row.cell_id, bet);
    }
    Object.assign(bet, {
      col_start: row.col_start,
      col_end: row.col_end,
      lower: row.lower,
      upper: row.upper,
      amount: row.amount,
      rate: row.rate,
      bet_id: row.bet_id,
      payout: row.payout,
    });
    if (state === "failed") {
      if (RANK[bet.state] < RANK.confirmed) failBet(bet, failureMessage("insufficient_funds"));
    } else if (RANK[state] >= RANK[bet.state] || bet.state === "unknown") {
      if (bet.state === "pending" && state === "confirmed") {
        setStatus("confirmed", `Bet confirmed: ${describeCell(bet)}.`);
      }
      setBetState(bet, state);
    }
  }

  function updateUnknownBanner() {
    const anyUnknown = [...S.bets.values()].some((b) => b.state === "unknown");
    $("unknown-banner").hidden = !anyUnknown;
  }

  async function loadHistory() {
    if (!S.session) return;
    const resp = await api("GET", "/api/bets?limit=50");
    if (!resp.ok) return;
    S.history = resp.data.bets || [];
    const seen = new Set();
    for (const row of S.history) {
      seen.add(row.cell_id);
      applyServerBet(row);
    }
    for (const bet of [...S.bets.values()]) {
      if (bet.state === "unknown" && !seen.has(bet.cell_id)) {
        S.bets.delete(bet.cell_id);
        setStatus("failed", `Your bet on ${describeCell(bet)} was not placed.`);
      }
    }
    updateUnknownBanner();
    renderHistory();
  }

  let historyTimer = null;
  function loadHistorySoon() {
    if (historyTimer) return;
    historyTimer = setTimeout(() => {
      historyTimer = null;
      loadHistory().catch(() => {});
    }, 300);
  }

  async function refreshBets() {
    const button = $("refresh-bets");
    button.disabled = true;
    try {
      await refreshAccount();
    } finally {
      button.disabled = false;
    }
  }

  function renderHistory() {
    const body = $("history-body");
    const rows = [];
    const listed = new Set(S.history.map((b) => b.cell_id));
    for (const bet of S.bets.values()) {
      if (!listed.has(bet.cell_id) && bet.state !== "failed") rows.push({ ...bet, local: true });
    }
    for (const row of S.history) {
      const local = S.bets.get(row.cell_id);
      rows.push({ ...row, state: local ? local.state : row.status, payout: row.payout ?? (local && local.payout) });
    }
    body.replaceChildren(
      ...rows.map((b) => {
        const tr = document.createElement("tr");
        tr.dataset.cell = b.cell_id;
        tr.dataset.status = b.state;
        const status = document.createElement("span");
        status.className = `badge ${b.state}`;
        status.textContent = b.state === "insufficient_funds" ? "failed" : b.state;
        if (b.state === "won") status.textContent = `won ${fmtUsd(b.payout)}`;
        if (b.state === "void") status.textContent = `refund ${fmtUsd(b.payout)}`;
        const window_ = document.createElement("time");
        window_.dateTime = new Date(b.col_start * 1000).toISOString();
        window_.textContent = fmtTime(b.col_start);
        window_.title = `${fmtTime(b.col_start)} to ${fmtTime(b.col_end)}`;
        const cells = [
          window_,
          `${fmtPrice(b.lower)}-${(b.upper / 100).toLocaleString("en-US", { maximumFractionDigits: 0 })}`,
          b.amount ? fmtUsd(b.amount) : "-",
          b.rate ? fmtRate(b.rate) : "-",
          status,
        ];
        for (const value of cells) {
          const td = document.createElement("td");
          if (typeof value === "string") td.textContent = value;
          else td.append(value);
          tr.append(td);
        }
        return tr;
      }),
    );
    $("history").hidden = rows.length === 0;
    $("history-empty").hidden = rows.length !== 0;
    $("history-empty").textContent = S.session ? "No bets yet: tap a highlighted cell." : "Sign in to see your bets.";
  }

  // ------------------------------------------------------------------ grid and presets

  function applyGrid(grid) {
    const presetsChanged = !S.grid || S.grid.presets.join() !== grid.presets.join();
    S.grid = grid;
    S.cellsById = new Map(grid.cells.map((c) => [c.cell_id, c]));
    if (!S.offsetKnown) noteServerTime(grid.timestamp * 1000 + 500);
    if (!S.prices.length) {
      S.prices.push({ t: grid.timestamp * 1000, p: grid.price });
      $("price").textContent = fmtUsd(grid.price);
    }
    if (presetsChanged) renderPresets(grid.presets);
    if (S.cursor.row === null) S.cursor.row = Math.floor(grid.rows.length / 2);
  }

  async function pollGrid() {
    try {
      if (!document.hidden) {
        const resp = await api("GET", "/api/grid");
        if (resp.ok) applyGrid(resp.data);
      }
    } catch (_) {
      /* the next poll retries */
    }
    setTimeout(pollGrid, 1000);
  }

  function renderPresets(presets) {
    const box = $("presets");
    const stored = Number(localStorage.getItem(STORE_AMOUNT));
    S.amount = presets.includes(stored) ? stored : presets[0];
    const options = document.createElement("div");
    options.className = "options";
    for (const cents of presets) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "amount";
      input.value = String(cents);
      input.checked = cents === S.amount;
      input.addEventListener("change", () => {
        S.amount = cents;
        localStorage.setItem(STORE_AMOUNT, String(cents));
      });
      const span = document.createElement("span");
      span.textContent = cents % 100 === 0 ? `$${cents / 100}` : fmtUsd(cents);
      label.append(input, span);
      options.append(label);
    }
    box.querySelector(".options")?.remove();
    box.append(options);
  }

  // ------------------------------------------------------------------ WebSocket

  // Full jitter: uniform in [0, min(5 s, 250 ms x 2^attempt)).
  const backoffDelay = (attempt, random) => random * Math.min(5000, 250 * 2 ** attempt);

  function reconnectLater() {
    const delay = backoffDelay(S.attempt, Math.random());
    S.attempt += 1;
    setTimeout(connect, delay);
  }

  function connect() {
    let ws;
    try {
      ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    } catch (_) {
      reconnectLater();
      return;
    }
    S.ws = ws;
    ws.onopen = () => {
      S.wsOpen = true;
      S.lastMessageAt = performance.now();
      if (S.session) ws.send(JSON.stringify({ type: "auth", token: S.session.id }));
      renderHealth();
    };
    ws.onmessage = (event) => {
      S.lastMessageAt = performance.now();
      S.attempt = 0;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      onMessage(msg);
    };
    ws.onclose = () => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.wsOpen = false;
      for (const bet of S.bets.values()) markUnknown(bet);
      renderHealth();
      reconnectLater();
    };
  }

  function onMessage(msg) {
    const data = msg.data || {};
    switch (msg.type) {
      case "price":
        noteServerTime(data.timestamp);
        S.lastPriceAt = performance.now();
        if (S.feed !== "healthy") renderHealth();
        S.prices.push({ t: data.timestamp, p: data.price });
        if (S.prices.length > 4000) S.prices.splice(0, S.prices.length - 3000);
        $("price").textContent = fmtUsd(data.price);
        break;
      case "system:status":
        S.health = data.price_health;
        S.override = data.override || "auto";
        S.recoveringAt = Number.isFinite(data.recovering_for_ms) ? performance.now() - data.recovering_for_ms : null;
        if (Number.isFinite(data.recovery_ms)) S.recoveryMs = data.recovery_ms;
        if (Number.isFinite(data.stale_for_ms)) {
          const at = performance.now() - data.stale_for_ms;
          if (S.lastPriceAt === null || at > S.lastPriceAt) S.lastPriceAt = at;
        }
        renderHealth();
        break;
      case "auth:ok":
        refreshAccount();
        break;
      case "auth:error":
        signOutLocally("Your session has expired. Sign in again.");
        break;
      case "bet:confirmed":
        confirmBet(data);
        break;
      case "bet:failed": {
        const bet = S.bets.get(data.cell_id);
        if (bet) failBet(bet, failureMessage(data.status));
        break;
      }
      case "bet:resolved":
        resolveBet(data);
        break;
      default:
        break;
    }
  }

  setInterval(() => {
    if (!S.ws || !S.wsOpen) return;
    if (performance.now() - S.lastMessageAt > 15000) S.ws.close();
    else S.ws.send(JSON.stringify({ type: "ping" }));
  }, 10000);

  // ------------------------------------------------------------------ canvas

  const canvas = $("board");
  const ctx = canvas.getContext("2d");
  let hatch = null;

  function hatchPattern() {
    if (hatch) return hatch;
    const tile = document.createElement("canvas");
    tile.width = tile.height = 8;
    const t = tile.getContext("2d");
    t.strokeStyle = "rgba(255,255,255,0.07)";
    t.beginPath();
    t.moveTo(0, 8);
    t.lineTo(8, 0);
    t.stroke();
    hatch = ctx.createPattern(tile, "repeat");
    return hatch;
  }

  function resize() {
    const rect = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(rect.width * dpr));
    canvas.height = Math.max(1, Math.round(rect.height * dpr));
  }
  new ResizeObserver(resize).observe(canvas);

  // The layout of one frame: where time and price map to, and which cells are drawn where.
  function computeView(width, height, nowMs) {
    const g = S.grid;
    const phone = width < 520;
    const axisW = phone ? 52 : 70;
    const headH = 22;
    const plot = { left: 0, top: headH, width: width - axisW, height: height - headH };
    const cs = g.column_seconds;
    const colPx = Math.max(phone ? 50 : 64, Math.min(130, plot.width / (g.columns.length + 1.5)));
    const pxPerSec = colPx / cs;
    const pastS = Math.min(2.5 * cs, (plot.width * (phone ? 0.24 : 0.3)) / pxPerSec);
    const nowS = nowMs / 1000;
    const nowX = plot.left + pastS * pxPerSec;
    const rows = g.rows;
    const rowPx = plot.height / rows.length;
    const top = rows[rows.length - 1] + g.row_cents;
    const current = Math.floor(nowS) - (Math.floor(nowS) % cs);
    const columns = [];
    for (let i = 0; i < g.columns.length; i++) columns.push(current + i * cs);
    return {
      width, height, plot, axisW, headH, cs, pxPerSec, nowS, nowX, rowPx, top, rows, columns, current,
      x: (t) => nowX + (t - nowS) * pxPerSec,
      y: (cents) => plot.top + ((top - cents) / g.row_cents) * rowPx,
    };
  }

  function cellAt(view, rowIndex, colStart) {
    const lower = view.rows[rowIndex];
    const id = `${colStart}_${lower}_${lower + S.grid.row_cents}`;
    const info = S.cellsById.get(id);
    return { cell_id: id, col_start: colStart, col_end: colStart + view.cs, lower, upper: lower + S.grid.row_cents, rate: info ? info.rate : null };
  }

  function cellRect(view, cell) {
    const x0 = view.x(cell.col_start);
    const x1 = view.x(cell.col_end);
    const y0 = view.y(cell.upper);
    const y1 = view.y(cell.lower);
    return { x: x0, y: y0, w: x1 - x0, h: y1 - y0 };
  }

  function hitTest(px, py) {
    const view = S.view;
    if (!view || !S.grid) return null;
    if (py < view.plot.top || px > view.plot.left + view.plot.width) return null;
    const t = view.nowS + (px - view.nowX) / view.pxPerSec;
    const colStart = Math.floor(t / view.cs) * view.cs;
    if (!view.columns.includes(colStart)) return null;
    const rowIndex = view.rows.length - 1 - Math.floor((py - view.plot.top) / view.rowPx);
    if (rowIndex < 0 || rowIndex >= view.rows.length) return null;
    return cellAt(view, rowIndex, colStart);
  }

  function draw() {
    requestAnimationFrame(draw);
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.width / dpr;
    const height = canvas.height / dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    if (!S.grid) {
      ctx.fillStyle = "#8d99ae";
      ctx.textAlign = "center";
      ctx.fillText("Waiting for prices...", width / 2, height / 2);
      S.view = null;
      return;
    }
    const view = computeView(width, height, serverNowMs());
    S.view = view;
    const critical = S.health === "critical";
    const pulse = 0.5 + 0.5 * Math.sin(performance.now() / 180);
    const { plot } = view;

    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.left, 0, plot.width, height);
    ctx.clip();
    // past columns: faint boundaries under the price line
    ctx.strokeStyle = "rgba(255,255,255,0.05)";
    ctx.lineWidth = 1;
    for (let t = view.current; view.x(t) > plot.left; t -= view.cs) {
      ctx.beginPath();
      ctx.moveTo(view.x(t) + 0.5, plot.top);
      ctx.lineTo(view.x(t) + 0.5, plot.top + plot.height);
      ctx.stroke();
    }
    // column headers and cells
    const labelEvery = view.cs * view.pxPerSec >= 58 ? 1 : 2;
    for (const colStart of view.columns) {
      const x0 = view.x(colStart);
      const x1 = view.x(colStart + view.cs);
      if (x1 < plot.left || x0 > plot.left + plot.width) continue;
      ctx.fillStyle = "#8d99ae";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      if ((colStart / view.cs) % labelEvery === 0) ctx.fillText(fmtTime(colStart), (x0 + x1) / 2, view.headH / 2);
      for (let r = 0; r < view.rows.length; r++) {
        const cell = cellAt(view, r, colStart);
        const rect = cellRect(view, cell);
        const open = !critical && placeable(cell);
        if (open) {
          const rate = Number(cell.rate) || 100;
          const heat = Math.max(0.08, Math.min(0.45, 0.5 / Math.log2(rate + 1)));
          ctx.fillStyle = `rgba(56, 189, 248, ${heat})`;
        } else {
          ctx.fillStyle = hatchPattern();
        }
        ctx.fillRect(rect.x + 1, rect.y + 1, rect.w - 2, rect.h - 2);
        if (!open) {
          ctx.fillStyle = "rgba(255,255,255,0.03)";
          ctx.fillRect(rect.x + 1, rect.y + 1, rect.w - 2, rect.h - 2);
        }
        if (cell.rate && rect.h >= 13 && rect.w >= 34) {
          ctx.fillStyle = open ? "rgba(230,235,245,0.92)" : "rgba(141,153,174,0.45)";
          ctx.fillText(fmtRate(cell.rate), rect.x + rect.w / 2, rect.y + rect.h / 2);
        }
      }
    }
    // the user's bets, wherever they are on screen
    for (const bet of S.bets.values()) {
      if (bet.col_start === undefined) continue;
      const rect = cellRect(view, bet);
      if (rect.x + rect.w < plot.left || rect.x > plot.left + plot.width) continue;
      const colours = {
        pending: `rgba(247,181,0,${0.35 + 0.5 * pulse})`,
        confirmed: "rgba(247,181,0,0.9)",
        unknown: "rgba(245,158,11,0.45)",
        won: "rgba(34,197,94,0.9)",
        lost: "rgba(239,68,68,0.45)",
        void: "rgba(141,153,174,0.6)",
        failed: "rgba(239,68,68,0.85)",
      };
      ctx.fillStyle = colours[bet.state] || "rgba(255,255,255,0.3)";
      ctx.fillRect(rect.x + 1, rect.y + 1, rect.w - 2, rect.h - 2);
      ctx.strokeStyle = bet.state === "confirmed" ? "#fde68a" : "rgba(0,0,0,0.5)";
      ctx.lineWidth = bet.state === "confirmed" ? 2 : 1;
      ctx.strokeRect(rect.x + 1.5, rect.y + 1.5, rect.w - 3, rect.h - 3);
      const label = { pending: "...", unknown: "?", won: "WON", lost: "lost", void: "void", failed: "x" }[bet.state];
      ctx.fillStyle = "#111";
      ctx.fillText(label || (bet.amount ? fmtUsd(bet.amount) : "bet"), rect.x + rect.w / 2, rect.y + rect.h / 2);
    }
    // keyboard cursor and hover
    const focusCell = canvas.matches(":focus-visible") ? cursorCell(view) : S.hover && hitTest(S.hover.x, S.hover.y);
    if (focusCell) {
      const rect = cellRect(view, focusCell);
      ctx.strokeStyle = "#60a5fa";
      ctx.lineWidth = 2;
      ctx.strokeRect(rect.x + 1, rect.y + 1, rect.w - 2, rect.h - 2);
    }
    // price line, scrolling left
    const since = (view.nowS - (view.nowX - plot.left) / view.pxPerSec - 2) * 1000;
    ctx.strokeStyle = "#f7b500";
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    let last = null;
    for (const pt of S.prices) {
      if (pt.t < since) continue;
      const px = view.x(pt.t / 1000);
      const py = Math.max(plot.top, Math.min(plot.top + plot.height, view.y(pt.p)));
      if (!started) ctx.moveTo(px, py);
      else ctx.lineTo(px, py);
      started = true;
      last = { x: px, y: py, p: pt.p };
    }
    if (last) {
      const headX = Math.max(last.x, Math.min(view.nowX, last.x + 2 * view.pxPerSec));
      ctx.lineTo(headX, last.y);
      ctx.stroke();
      ctx.fillStyle = "#f7b500";
      ctx.beginPath();
      ctx.arc(headX, last.y, 4, 0, Math.PI * 2);
      ctx.fill();
    }
    // now line
    ctx.strokeStyle = "rgba(255,255,255,0.35)";
    ctx.setLineDash([4, 4]);
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(view.nowX, plot.top);
    ctx.lineTo(view.nowX, plot.top + plot.height);
    ctx.stroke();
    ctx.setLineDash([]);
    if (critical) {
      ctx.fillStyle = "rgba(11,15,23,0.55)";
      ctx.fillRect(plot.left, plot.top, plot.width, plot.height);
      const warming = S.feed === "warming";
      ctx.fillStyle = warming ? "#bfdbfe" : "#fecaca";
      ctx.font = "600 14px system-ui, sans-serif";
      const label = warming ? "Warming up - bets open shortly" : "Betting suspended";
      ctx.fillText(label, plot.left + plot.width / 2, plot.top + plot.height / 2);
    }
    ctx.restore();
    // price axis
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    ctx.fillStyle = "#8d99ae";
    const every = view.rowPx < 16 ? 2 : 1;
    for (let r = 0; r < view.rows.length; r += every) {
      ctx.fillText(fmtPrice(view.rows[r]), plot.left + plot.width + 6, view.y(view.rows[r]));
    }
    if (last) {
      ctx.fillStyle = "#f7b500";
      ctx.fillRect(plot.left + plot.width + 2, last.y - 9, view.axisW - 4, 18);
      ctx.fillStyle = "#111";
      ctx.fillText(fmtPrice(last.p), plot.left + plot.width + 6, last.y);
    }
  }

  // ------------------------------------------------------------------ input

  function cursorCell(view) {
    if (!view || S.cursor.row === null) return null;
    const col = Math.max(0, Math.min(view.columns.length - 1, S.cursor.col));
    const row = Math.max(0, Math.min(view.rows.length - 1, S.cursor.row));
    return cellAt(view, row, view.columns[col]);
  }

  function announce(cell) {
    if (!cell) return;
    const open = S.health !== "critical" && placeable(cell);
    $("cell-readout").textContent =
      `${describeCell(cell)}, rate ${cell.rate ? fmtRate(cell.rate) : "unknown"}, ` +
      (open ? "open: press Enter to bet." : "closed for bets.");
  }

  canvas.addEventListener("click", (event) => {
    const rect = canvas.getBoundingClientRect();
    const cell = hitTest(event.clientX - rect.left, event.clientY - rect.top);
    if (cell) tapCell(cell);
  });
  canvas.addEventListener("pointermove", (event) => {
    const rect = canvas.getBoundingClientRect();
    S.hover = { x: event.clientX - rect.left, y: event.clientY - rect.top };
  });
  canvas.addEventListener("pointerleave", () => {
    S.hover = null;
  });
  canvas.addEventListener("keydown", (event) => {
    if (!S.view) return;
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
    if (moves[event.key]) {
      event.preventDefault();
      const [dc, dr] = moves[event.key];
      S.cursor.col = Math.max(0, Math.min(S.view.columns.length - 1, S.cursor.col + dc));
      S.cursor.row = Math.max(0, Math.min(S.view.rows.length - 1, (S.cursor.row ?? 0) + dr));
      announce(cursorCell(S.view));
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      tapCell(cursorCell(S.view));
    }
  });
  canvas.addEventListener("focus", () => {
    if (canvas.matches(":focus-visible")) announce(cursorCell(S.view));
  });

  $("signin").addEventListener("click", openSignIn);
  $("signout").addEventListener("click", signOut);
  $("fund").addEventListener("click", fund);
  $("refresh-bets").addEventListener("click", refreshBets);
  $("signin-dev").addEventListener("click", () => signIn("dev"));
  $("signin-injected").addEventListener("click", () => signIn("injected"));
  $("signin-cancel").addEventListener("click", () => $("signin-dialog").close());

  // Read-only hooks for the browser tests: where a cell is drawn, and its state.
  window.tapDebug = Object.freeze({
    cellRect(cellId) {
      if (!S.view || !S.grid) return null;
      const cell = parseCellId(cellId, S.grid.column_seconds);
      const r = cellRect(S.view, cell);
      const box = canvas.getBoundingClientRect();
      return { x: box.left + r.x, y: box.top + r.y, w: r.w, h: r.h };
    },
    lastTap: () => S.lastTap,
    taps: () => S.taps,
    cellState: (cellId) => (S.bets.get(cellId) || {}).state || null,
    placeable: (cellId) => !!S.grid && placeable(parseCellId(cellId, S.grid.column_seconds)),
    grid: () => S.grid,
    health: () => S.health,
    feed: () => S.feed,
    socketOpen: () => S.wsOpen,
    backoffDelay,
  });

  // ------------------------------------------------------------------ start

  async function start() {
    try {
      const resp = await fetch("/app-config.json", { cache: "no-store" });
      if (resp.ok) S.config = await resp.json();
    } catch (_) {
      /* defaults */
    }
    try {
      const stored = JSON.parse(localStorage.getItem(STORE_SESSION) || "null");
      if (stored && stored.id && stored.expires_at * 1000 > Date.now()) {
        S.session = stored;
        afterSignIn();
      }
    } catch (_) {
      localStorage.removeItem(STORE_SESSION);
    }
    renderHealth();
    renderHistory();
    connect();
    pollGrid();
    requestAnimationFrame(draw);
  }

  start();
})();
