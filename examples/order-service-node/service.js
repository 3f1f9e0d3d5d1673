// An order service as a team might run it: it takes orders from the JetStream stream ORDERS
// (subject orders.placed) and over HTTP, and confirms each one. catga-bench tests it as a black
// box from its AsyncAPI documents alone (asyncapi.yaml, http.asyncapi.yaml,
// http-async.asyncapi.yaml); README.md explains how.
//
//   NATS_URL=nats://127.0.0.1:4222 HTTP_PORT=8085 node service.js
//
// Environment:
//   NATS_URL              broker URL (default nats://127.0.0.1:4222); reconnects forever
//   HTTP_PORT             HTTP port (default 8085); HTTP_HOST the bind address (default 0.0.0.0)
//   ORDER_SERVICE_DEFECT  one seeded defect, to see catga-bench's gate catch it:
//                           drop_1pct          every 100th order is acked / answered 202 but never
//                                              confirmed (sync HTTP: answered 500)
//                           dup_1pct           every 100th confirmation is published twice
//                           stall_1s_every_5s  every 5 s all handling (NATS and HTTP) pauses 1 s
//                           bad_schema_1pct    every 100th confirmation lacks its `status`
//                         any other value: one line on stderr, exit code 2.
//
// Input OrderPlaced {sku: string, quantity: integer >= 1}, correlation id in the header
// Catga-Correlation-Id. Output OrderConfirmed {order_id: <correlation id>, sku, quantity,
// status: "confirmed"} with the same header. Prints "order-service ready" once the JetStream
// consumer and the HTTP server are live. SIGTERM/SIGINT: stop consuming, drain NATS, close HTTP,
// exit 0.

import { randomUUID } from "node:crypto";
import http from "node:http";
import process from "node:process";

import {
  AckPolicy,
  ConsumerEvents,
  Events,
  Match,
  connect,
  headers as natsHeaders,
  nanos,
} from "nats";

const NATS_URL = process.env.NATS_URL || "nats://127.0.0.1:4222";
const HTTP_HOST = process.env.HTTP_HOST || "0.0.0.0";
const HTTP_PORT = Number.parseInt(process.env.HTTP_PORT || "8085", 10);
const DEFECT = process.env.ORDER_SERVICE_DEFECT || "";

const STREAM = "ORDERS";
const INPUT_SUBJECT = "orders.placed";
const OUTPUT_SUBJECT = "orders.confirmed";
const DURABLE = "order-service";
const ACK_WAIT_MS = 2_000;
const MAX_ACK_PENDING = 20_000;
const CORRELATION_HEADER = "Catga-Correlation-Id";
const MAX_BODY_BYTES = 64 * 1024;
const DEFECT_EVERY = 100; // the "1 %" defects hit every 100th valid order (deterministic)
const STALL_EVERY_MS = 5_000;
const STALL_FOR_MS = 1_000;
const SHUTDOWN_TIMEOUT_MS = 4_000; // below the harness's default stop grace (5 s)

const DEFECTS = ["drop_1pct", "dup_1pct", "stall_1s_every_5s", "bad_schema_1pct"];
if (DEFECT && !DEFECTS.includes(DEFECT)) {
  console.error(
    `order-service: unknown ORDER_SERVICE_DEFECT ${JSON.stringify(DEFECT)}; allowed: ${DEFECTS.join(", ")}`,
  );
  process.exit(2);
}
if (!Number.isInteger(HTTP_PORT) || HTTP_PORT < 0 || HTTP_PORT > 65_535) {
  console.error(`order-service: HTTP_PORT must be a port number, got ${JSON.stringify(process.env.HTTP_PORT)}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// The business logic: validate an order and confirm it. Shared by the NATS and the HTTP paths.

class InvalidOrder extends Error {}

/**
 * Parse and validate an OrderPlaced payload.
 * @param {Uint8Array} data  the raw JSON body
 * @returns {{sku: string, quantity: number}}
 * @throws {InvalidOrder} when the body is not JSON or breaks the schema
 */
function parseOrder(data) {
  let order;
  try {
    order = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8"));
  } catch {
    throw new InvalidOrder("body is not JSON");
  }
  if (order === null || typeof order !== "object" || Array.isArray(order)) {
    throw new InvalidOrder("body is not a JSON object");
  }
  if (typeof order.sku !== "string" || order.sku.length === 0) {
    throw new InvalidOrder("sku must be a non-empty string");
  }
  if (!Number.isInteger(order.quantity) || order.quantity < 1) {
    throw new InvalidOrder("quantity must be an integer >= 1");
  }
  return { sku: order.sku, quantity: order.quantity };
}

let ordersSeen = 0; // valid orders handled, both paths; drives the deterministic 1 % defects

/**
 * Confirm one valid order, applying the seeded defect.
 * @param {{sku: string, quantity: number}} order
 * @param {string} orderId  the correlation id
 * @returns {{confirmation: object|null, copies: number}}  confirmation null = dropped;
 *   copies = how many times to publish it (2 under dup_1pct)
 */
function confirm(order, orderId) {
  ordersSeen += 1;
  const hit = DEFECT !== "" && ordersSeen % DEFECT_EVERY === 0;
  if (hit && DEFECT === "drop_1pct") {
    return { confirmation: null, copies: 0 };
  }
  const confirmation = { order_id: orderId, sku: order.sku, quantity: order.quantity, status: "confirmed" };
  if (hit && DEFECT === "bad_schema_1pct") {
    delete confirmation.status;
  }
  return { confirmation, copies: hit && DEFECT === "dup_1pct" ? 2 : 1 };
}

// stall_1s_every_5s: a global gate every handler awaits; closed for 1 s every 5 s.
let gate = null;
function startStallDefect() {
  const timer = setInterval(() => {
    gate = new Promise((resolve) => {
      setTimeout(() => {
        gate = null;
        resolve();
      }, STALL_FOR_MS).unref();
    });
  }, STALL_EVERY_MS);
  timer.unref();
}

// ---------------------------------------------------------------------------------------------
// NATS: connection, stream/consumer provisioning, the consume loop.

let nc = null;
let natsUp = false; // connected (false while reconnecting)
let consumerUp = false; // the durable exists and we are pulling from it
let stopping = false;
let messages = null; // the current ConsumerMessages iterator
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** @returns {boolean} true when the NATS error means "not found" */
function isNotFound(err) {
  return err?.code === "404" || /not found/i.test(err?.message ?? "");
}

/**
 * Create the stream ORDERS and the durable pull consumer if missing; leave existing ones as they
 * are. Retries every second while JetStream is unavailable (NATS not yet reachable, say).
 */
async function ensureStreamAndConsumer(jsm) {
  for (;;) {
    try {
      try {
        await jsm.streams.info(STREAM);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await jsm.streams.add({ name: STREAM, subjects: [INPUT_SUBJECT] });
        console.log(`order-service: created stream ${STREAM} (${INPUT_SUBJECT})`);
      }
      try {
        await jsm.consumers.info(STREAM, DURABLE);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await jsm.consumers.add(STREAM, {
          durable_name: DURABLE,
          ack_policy: AckPolicy.Explicit,
          ack_wait: nanos(ACK_WAIT_MS),
          max_ack_pending: MAX_ACK_PENDING,
          filter_subject: INPUT_SUBJECT,
        });
        console.log(`order-service: created durable consumer ${DURABLE} on ${STREAM}`);
      }
      return;
    } catch (err) {
      if (stopping) return;
      console.error(`order-service: cannot provision ${STREAM}/${DURABLE} yet: ${err.message}; retrying`);
      await sleep(1_000);
    }
  }
}

/**
 * Handle one JetStream message: confirm, publish, THEN ack. A malformed message is acked (never
 * redelivered: it would fail again) and logged.
 */
function handleMessage(m) {
  const cid = m.headers?.get(CORRELATION_HEADER, Match.IgnoreCase) || "";
  let order;
  try {
    order = parseOrder(m.data);
  } catch (err) {
    if (!(err instanceof InvalidOrder)) throw err;
    console.log(`order-service: malformed order seq=${m.seq} id=${cid || "-"}: ${err.message}; acked`);
    m.ack();
    return;
  }
  publishConfirmation(order, cid || randomUUID());
  m.ack();
}

/** Confirm an order and publish the OrderConfirmed event(s) on orders.confirmed. */
function publishConfirmation(order, orderId) {
  const { confirmation, copies } = confirm(order, orderId);
  if (confirmation === null) return;
  const h = natsHeaders();
  h.set(CORRELATION_HEADER, orderId);
  const body = Buffer.from(JSON.stringify(confirmation));
  for (let i = 0; i < copies; i += 1) nc.publish(OUTPUT_SUBJECT, body, { headers: h });
}

// Consumer liveness. A missing stream or consumer (deleted under us, JetStream restarted empty)
// ends the current consume(); consumeLoop then recreates them and consumes again. Missed
// heartbeats (a silent link, say) mark the consumer down until a message arrives or a
// consumer-info probe succeeds; nats.js re-issues its pull requests itself.
const RESTART_ON = new Set([
  ConsumerEvents.ConsumerNotFound,
  ConsumerEvents.StreamNotFound,
  ConsumerEvents.ConsumerDeleted,
  ConsumerEvents.NoResponders,
]);

async function probeConsumer(jsm, iter) {
  while (!stopping && !consumerUp && messages === iter) {
    try {
      await jsm.consumers.info(STREAM, DURABLE);
      consumerUp = true;
    } catch (err) {
      if (isNotFound(err)) {
        iter.stop();
        return;
      }
      await sleep(1_000);
    }
  }
}

async function watchConsumer(iter, jsm) {
  for await (const s of await iter.status()) {
    if (RESTART_ON.has(s.type)) {
      console.error(`order-service: consumer problem: ${s.type} ${JSON.stringify(s.data)}; re-subscribing`);
      consumerUp = false;
      iter.stop();
      return;
    }
    if (s.type === ConsumerEvents.HeartbeatsMissed && consumerUp) {
      console.error(`order-service: consumer problem: ${s.type} ${JSON.stringify(s.data)}`);
      consumerUp = false;
      probeConsumer(jsm, iter);
    }
  }
}

/** Consume until shutdown, provisioning and re-subscribing whenever the iterator ends. */
async function consumeLoop(js, jsm, onLive) {
  while (!stopping) {
    try {
      await ensureStreamAndConsumer(jsm);
      const consumer = await js.consumers.get(STREAM, DURABLE);
      messages = await consumer.consume({ max_messages: 1_000 });
      consumerUp = true;
      watchConsumer(messages, jsm).catch(() => {});
      onLive();
      for await (const m of messages) {
        if (gate !== null) await gate;
        consumerUp = true;
        handleMessage(m);
      }
    } catch (err) {
      if (!stopping) console.error(`order-service: consume failed: ${err.message}; retrying`);
    }
    consumerUp = false;
    if (!stopping) await sleep(500);
  }
}

async function watchConnection() {
  for await (const s of nc.status()) {
    if (s.type === Events.Disconnect) {
      natsUp = false;
      console.error(`order-service: NATS disconnected (${s.data}); reconnecting`);
    } else if (s.type === Events.Reconnect) {
      natsUp = true;
      console.log(`order-service: NATS reconnected (${s.data})`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP: POST /orders (sync), POST /orders/async (202, then an event on NATS), GET /health.

const JSON_HEADERS = { "Content-Type": "application/json" };

function reply(res, status, body, orderId) {
  const payload = body === undefined ? "" : JSON.stringify(body);
  const headers = { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(payload) };
  if (orderId) headers[CORRELATION_HEADER] = orderId;
  res.writeHead(status, headers);
  res.end(payload);
}

/**
 * Read the whole request body.
 * @returns {Promise<Buffer|null>}  null when it exceeds MAX_BODY_BYTES
 */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on("end", () => resolve(size > MAX_BODY_BYTES ? null : Buffer.concat(chunks, size)));
    req.on("error", reject);
  });
}

/** POST /orders (sync: 200 + OrderConfirmed) and POST /orders/async (202, then the event). */
async function handleOrder(req, res, isAsync) {
  const header = req.headers["catga-correlation-id"];
  const orderId = (Array.isArray(header) ? header[0] : header) || randomUUID();
  const body = await readBody(req);
  if (body === null) {
    reply(res, 413, { error: `body over ${MAX_BODY_BYTES} bytes` }, orderId);
    return;
  }
  let order;
  try {
    order = parseOrder(body);
  } catch (err) {
    if (!(err instanceof InvalidOrder)) throw err;
    console.log(`order-service: malformed HTTP order id=${orderId}: ${err.message}; 400`);
    reply(res, 400, { error: err.message }, orderId);
    return;
  }
  if (isAsync) {
    if (nc === null) {
      reply(res, 503, { error: "not connected to NATS yet" }, orderId);
      return;
    }
    // accepted at once; the confirmation follows as an event on orders.confirmed
    reply(res, 202, { order_id: orderId, status: "accepted" }, orderId);
    if (gate !== null) await gate;
    publishConfirmation(order, orderId);
    return;
  }
  if (gate !== null) await gate;
  const { confirmation } = confirm(order, orderId);
  if (confirmation === null) {
    reply(res, 500, { error: "order could not be confirmed" }, orderId);
    return;
  }
  reply(res, 200, confirmation, orderId);
}

const server = http.createServer((req, res) => {
  const path = req.url.split("?", 1)[0];
  if (path === "/orders" || path === "/orders/async") {
    if (req.method !== "POST") {
      res.writeHead(405, { ...JSON_HEADERS, Allow: "POST" });
      res.end(JSON.stringify({ error: "use POST" }));
      req.resume();
      return;
    }
    handleOrder(req, res, path === "/orders/async").catch((err) => {
      console.error(`order-service: HTTP handler failed: ${err.stack || err}`);
      if (!res.headersSent) reply(res, 500, { error: "internal error" });
    });
    return;
  }
  if (path === "/health" && (req.method === "GET" || req.method === "HEAD")) {
    const ok = natsUp && consumerUp && !stopping;
    reply(res, ok ? 200 : 503, { status: ok ? "ok" : "unavailable", nats: natsUp, consumer: consumerUp });
    return;
  }
  reply(res, 404, { error: "not found" });
  req.resume();
});
server.keepAliveTimeout = 65_000; // longer than typical load balancer / client idle timeouts

// ---------------------------------------------------------------------------------------------
// Startup and shutdown.

async function shutdown(signal) {
  if (stopping) {
    process.exit(0); // a second signal: do not wait any more
  }
  stopping = true;
  console.log(`order-service: ${signal}, shutting down`);
  setTimeout(() => {
    console.error("order-service: shutdown took too long; exiting");
    process.exit(0);
  }, SHUTDOWN_TIMEOUT_MS).unref();
  server.close();
  server.closeIdleConnections();
  try {
    messages?.stop();
  } catch {
    // already stopped
  }
  if (nc !== null && !nc.isClosed()) {
    try {
      if (natsUp) await nc.drain(); // flushes the confirmations and acks still buffered
      else await nc.close();
    } catch (err) {
      console.error(`order-service: NATS drain failed: ${err.message}`);
    }
  }
  server.closeAllConnections();
  process.exit(0);
}

async function main() {
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));

  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(HTTP_PORT, HTTP_HOST, resolve);
  });

  console.log(`order-service: connecting to ${NATS_URL}`);
  nc = await connect({
    servers: NATS_URL,
    name: "order-service",
    waitOnFirstConnect: true, // keep trying if the broker is not up yet
    maxReconnectAttempts: -1, // reconnect forever
    reconnectTimeWait: 250,
    pingInterval: 5_000,
    maxPingOut: 2, // notice a silent (partitioned) link within ~10 s
  });
  natsUp = true;
  watchConnection().catch(() => {});
  nc.closed().then((err) => {
    if (!stopping) {
      console.error(`order-service: NATS connection closed${err ? `: ${err.message}` : ""}`);
      process.exit(1);
    }
  });

  const jsm = await nc.jetstreamManager(false); // no API check: ensureStreamAndConsumer retries
  if (DEFECT === "stall_1s_every_5s") startStallDefect();

  let announced = false;
  consumeLoop(nc.jetstream(), jsm, () => {
    if (announced) return;
    announced = true;
    console.log(
      `order-service ready (nats ${NATS_URL}, http ${HTTP_HOST}:${server.address().port}, defect ${DEFECT || "none"})`,
    );
  });
}

main().catch((err) => {
  console.error(`order-service: startup failed: ${err.stack || err}`);
  process.exit(1);
});
