// keyreg explorer: the only script. Every page works without it; it adds two things:
// 1. live refresh: figures marked data-field inside a [data-live] block follow the API route named there
//    (every 5 s while the tab is visible: the overview's health, a proposal's tallies);
// 2. wallet voting: an injected EIP-1193 wallet (window.ethereum) signs a castVoteBySig ballot whose
//    typed data the node builds, and the ballot goes to POST /v1/gov/ballots. No Ethereum library.
// Text from the network is only ever set with textContent (never as HTML).
"use strict";

function pick(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function refresh(block, status) {
  fetch(block.dataset.live, { headers: { accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
    .then((data) => {
      block.querySelectorAll("[data-field]").forEach((el) => {
        const v = pick(data, el.dataset.field);
        if (v !== undefined && v !== null) el.textContent = String(v);
      });
      // A progress bar whose value is a sum of fields (the quorum: for + abstain).
      document.querySelectorAll("progress[data-sum]").forEach((bar) => {
        const total = bar.dataset.sum.split(",").reduce((n, f) => n + Number(pick(data, f) || 0), 0);
        bar.value = Math.min(total, Number(bar.max));
        bar.textContent = total + " of " + bar.max;
      });
      if (status) status.textContent = "";
    })
    .catch(() => { if (status) status.textContent = "live refresh paused: the node did not answer"; });
}

function startLive() {
  const status = document.getElementById("live-status");
  document.querySelectorAll("[data-live]").forEach((block) => {
    setInterval(() => { if (!document.hidden) refresh(block, status); }, 5000);
  });
}

function say(el, text) { el.textContent = text; }

async function pollBallot(id, out) {
  for (let i = 0; i < 120; i++) {  // two minutes: the relay waits for its turn and a block
    // The id is governor:proposalId:voter as the node gave it (hex, digits and colons only).
    if (!/^0x[0-9a-f]{40}:[0-9]{1,78}:0x[0-9a-f]{40}$/.test(id)) return null;
    const r = await fetch("/v1/gov/ballots/" + id);
    if (r.ok) {
      const rec = await r.json();
      if (rec.status !== "queued") return rec;
    }
    say(out, "ballot queued at the relay…");
    await new Promise((done) => setTimeout(done, 1000));
  }
  return null;
}

async function vote(box, support, buttons) {
  const out = document.getElementById("vote-status");
  if (!window.ethereum || typeof window.ethereum.request !== "function") {
    say(out, "No browser wallet found. Use the keyreg command below instead.");
    return;
  }
  buttons.forEach((b) => { b.disabled = true; });
  try {
    say(out, "asking the wallet for an account…");
    const accounts = await window.ethereum.request({ method: "eth_requestAccounts" });
    if (!accounts || !accounts.length) throw new Error("the wallet gave no account");
    const voter = String(accounts[0]);
    const q = new URLSearchParams({ governor: box.dataset.governor, voter: voter, support: support });
    const r = await fetch(box.dataset.ballotUrl + "?" + q.toString());
    const prepared = await r.json();
    if (!r.ok) throw new Error(prepared.message || "the node could not prepare the ballot");
    say(out, "sign the ballot in your wallet…");
    const signature = await window.ethereum.request({
      method: "eth_signTypedData_v4",
      params: [voter, JSON.stringify(prepared.typedData)],
    });
    const ballot = Object.assign({}, prepared.ballot, { signature: String(signature).toLowerCase() });
    const sent = await fetch("/v1/gov/ballots", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(ballot),
    });
    const answer = await sent.json();
    if (sent.status !== 202) throw new Error(answer.message || "the node refused the ballot");
    say(out, "ballot accepted by the node; relaying…");
    const rec = await pollBallot(answer.id, out);
    if (!rec) say(out, "the ballot is still queued; check the Anchors page later");
    else if (rec.status === "relayed") say(out, "relayed: your vote (" + prepared.support + ") is in transaction " + rec.txHash + ", block " + rec.block);
    else say(out, "not relayed (" + rec.status + "): " + (rec.error ? JSON.stringify(rec.error) : ""));
    const tallies = document.getElementById("tallies");
    if (tallies) refresh(tallies, null);  // and every 5 s after (live refresh)
  } catch (e) {
    say(out, "vote not sent: " + (e && e.message ? e.message : String(e)));
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function startWallet() {
  const box = document.getElementById("wallet-vote");
  if (!box) return;
  const buttons = Array.from(box.querySelectorAll("[data-vote]"));
  buttons.forEach((b) => b.addEventListener("click", () => vote(box, b.dataset.vote, buttons)));
}

document.addEventListener("DOMContentLoaded", () => { startLive(); startWallet(); });
