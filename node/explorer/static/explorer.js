// keyreg explorer: the only script. Every page works without it; it adds two things:
// 1. live refresh: figures marked data-field inside a [data-live] block follow the API route named there
//    (every 5 s while the tab is visible: the overview's health, a proposal's tallies);
// 2. wallet voting: an injected EIP-1193 wallet (window.ethereum) signs a castVoteBySig ballot whose
//    typed data the node builds, and the ballot goes to POST /v1/gov/ballots. No Ethereum library;
// 3. wallet signing of a ceremony: the wallet signs the proposal's event (eth_signTypedData_v4 over
//    the typed data the node serves, passed on as the node's own text) and the signature goes to
//    POST /v1/proposals/{id}/signatures; the page shows what the node answered.
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

function fillAddresses(list, addresses, empty) {
  list.replaceChildren();
  (addresses.length ? addresses : [null]).forEach((a) => {
    const li = document.createElement("li");
    if (a === null) { li.className = "muted"; li.textContent = empty; }
    else { const code = document.createElement("code"); code.textContent = String(a); li.appendChild(code); }
    list.appendChild(li);
  });
}

function showProposal(p) {
  // The node's answer: the signatures so far (textContent only: every value is network text).
  const signers = Array.isArray(p.signers) ? p.signers.map(String) : [];
  const members = p.authority && Array.isArray(p.authority.signers) ? p.authority.signers.map(String) : [];
  const count = document.getElementById("c-count");
  const missing = document.getElementById("c-missing");
  const bar = document.getElementById("c-progress");
  if (count) count.textContent = String(signers.length);
  if (missing) missing.textContent = String(Number(p.missing) || 0);
  if (bar) { bar.value = signers.length; bar.textContent = signers.length + " of " + bar.max; }
  const signed = document.getElementById("c-signed");
  const may = document.getElementById("c-may");
  if (signed) fillAddresses(signed, signers, "nobody yet");
  const complete = Number(p.missing) === 0;
  if (may) fillAddresses(may, complete ? [] : members.filter((a) => !signers.includes(a)), "nobody: the threshold is met");
  const badge = document.querySelector("#c-state .badge");
  const s = p.submitted;
  if (badge && s) {
    const applied = s.status === "accepted" || s.status === "known";
    badge.textContent = applied ? "applied" : String(s.status);
    badge.className = "badge " + (applied ? "state-executed" : "state-defeated");
  }
}

async function signCeremony(box, button) {
  const out = document.getElementById("sign-status");
  if (!window.ethereum || typeof window.ethereum.request !== "function") {
    say(out, "No browser wallet found. Use one of the commands below instead.");
    return;
  }
  button.disabled = true;
  let done = false;
  try {
    say(out, "asking the wallet for an account…");
    const accounts = await window.ethereum.request({ method: "eth_requestAccounts" });
    if (!accounts || !accounts.length) throw new Error("the wallet gave no account");
    const signer = String(accounts[0]);
    const r = await fetch(box.dataset.typedUrl, { headers: { accept: "application/json" } });
    const typed = await r.text();  // handed to the wallet as the node wrote it: no number is re-encoded
    if (!r.ok) {
      let message = "HTTP " + r.status;
      try { message = JSON.parse(typed).message || message; } catch (e) { /* not JSON */ }
      throw new Error("the node has no typed data for this proposal: " + message);
    }
    say(out, "sign the event in your wallet…");
    const signature = await window.ethereum.request({ method: "eth_signTypedData_v4", params: [signer, typed] });
    say(out, "handing the signature to the node…");
    const sent = await fetch(box.dataset.postUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ signature: String(signature) }),
    });
    let answer = {};
    try { answer = await sent.json(); } catch (e) { /* not JSON */ }
    if (!sent.ok) {
      say(out, "refused by the node (" + (answer.code || "HTTP " + sent.status) + "): " + (answer.message || ""));
      return;
    }
    showProposal(answer);
    const s = answer.submitted;
    if (s && (s.status === "accepted" || s.status === "known")) {
      done = true;
      say(out, "applied: the threshold is reached and the node " + s.status + " the " + answer.kind +
        " at seq " + s.seq + "; the subject's head is now " + s.digest);
    } else if (s) {
      done = true;
      say(out, "not applied: the threshold is reached but the node answered " + s.status +
        (s.error ? " (" + s.error.code + ": " + s.error.message + ")" : ""));
    } else {
      say(out, "attached: " + answer.signers.length + " of " + answer.authority.threshold + " signatures; " +
        answer.missing + " more needed (signed by " + signer + ")");
    }
  } catch (e) {
    say(out, "not signed: " + (e && e.message ? e.message : String(e)));
  } finally {
    button.disabled = done;
  }
}

function startCeremony() {
  const box = document.getElementById("wallet-sign");
  if (!box) return;
  const button = document.getElementById("sign-button");
  button.addEventListener("click", () => signCeremony(box, button));
}

document.addEventListener("DOMContentLoaded", () => { startLive(); startWallet(); startCeremony(); });
