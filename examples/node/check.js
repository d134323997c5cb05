// Calls a Leadscore server as a Node.js service would, every call on a gzip channel, and prints
// what it saw as one JSON line: unary, server-streaming and bidi calls, and the standard
// details of three refusals (a bad field, a rate limit, an oversized request).
//
//   node check.js --server 127.0.0.1:50051 --token ls_... --zone Etc/GMT-2
"use strict";
const { parseArgs } = require("util");
const { clients, errorDetails, call } = require("./leadscore");

const { values: args } = parseArgs({
  options: {
    server: { type: "string", default: "127.0.0.1:50051" },
    token: { type: "string" },
    zone: { type: "string", default: "Etc/GMT" },
    leads: { type: "string", default: "30" },
  },
});
const { leads, scoring, dialer } = clients(args.server, { token: args.token });
const count = Number(args.leads);

function lead(n) {
  return {
    id: `node-${n}`,
    attributes: { role: { text: "CTO" }, employees: { number: 40 * n } },
    time_zone: args.zone,
    consent: { phone_consent: true },
    phone: `+1646555${String(n).padStart(4, "0")}`,
  };
}

// A refused call's code, text and details.
async function refusal(promise) {
  try {
    await promise;
    return null;
  } catch (error) {
    return { code: error.code, message: error.details, ...errorDetails(error) };
  }
}

// Server streaming: every ranked lead, explained.
function topLeads(limit) {
  return new Promise((resolve, reject) => {
    const ranked = [];
    const stream = scoring.TopLeads({ limit, explain: true });
    stream.on("data", (lead) => ranked.push(lead));
    stream.on("error", reject);
    stream.on("end", () => resolve(ranked));
  });
}

// Bidi: a hopper session claims `n` leads and reports each; the outcomes acknowledged.
function hopper(n) {
  return new Promise((resolve, reject) => {
    const session = dialer.DialerSession();
    let acknowledged = 0;
    session.on("data", (pushed) => {
      if (pushed.claim) {
        session.write({ outcome: { lease_id: pushed.claim.lease.lease_id, result: "CALL_RESULT_NO_ANSWER" } });
      } else if (pushed.outcome_ack && ++acknowledged === n) {
        session.end();
        resolve(acknowledged);
      } else if (pushed.starved || pushed.rejected) {
        session.cancel();
        reject(new Error(`the session answered ${JSON.stringify(pushed)}`));
      }
    });
    session.on("error", (error) => (acknowledged === n ? resolve(acknowledged) : reject(error)));
    session.write({ hello: { agent_id: "node-hopper" } });
    session.write({ credits: n });
  });
}

async function main() {
  const seen = {};
  const upserted = await call(leads, "UpsertLeads", { leads: Array.from({ length: count }, (_, n) => lead(n)) });
  seen.upserted = upserted.created + upserted.updated;
  const batch = await call(scoring, "ScoreBatch", {
    requests: Array.from({ length: count }, (_, n) => ({ lead: lead(n), explain: true })),
  });
  seen.scored = batch.scores.length;
  seen.ranked = (await topLeads(count)).length;
  seen.hopper_outcomes = await hopper(3);

  seen.bad_field = await refusal(call(leads, "UpsertLeads", { leads: [{ ...lead(0), time_zone: "Mars/Olympus" }] }));
  // Random text, so that gzip cannot shrink it under the bound.
  const noise = () => Array.from({ length: 1000 }, () => Math.floor(Math.random() * 36).toString(36)).join("");
  const big = { ...lead(0), attributes: Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`a${i}`, { text: noise() }])) };
  seen.oversized = await refusal(call(leads, "UpsertLeads", { leads: Array.from({ length: 40 }, () => big) }));
  // Calls until the token's rate refuses one.
  for (let i = 0; i < 200 && !seen.rate_limited; i++) {
    seen.rate_limited = await refusal(call(scoring, "Score", { lead: lead(1) }));
  }
  console.log(JSON.stringify(seen));
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
