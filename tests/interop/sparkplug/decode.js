// An independent Sparkplug B decoder: Eclipse Tahu's sparkplug-payload (protobufjs).
// stdin: JSON lines {"topic": ..., "b64": ...}; stdout: JSON lines {"topic": ..., "payload": decoded}.
const { get } = require("sparkplug-payload");
const sp = get("spBv1.0");
const readline = require("readline");

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const msg = JSON.parse(line);
  const p = sp.decodePayload(Buffer.from(msg.b64, "base64"));
  const plain = JSON.parse(JSON.stringify(p, (k, v) => (v && typeof v === "object" && "low" in v && "high" in v ? Number(BigInt.asIntN(64, (BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0))) : v)));
  console.log(JSON.stringify({ topic: msg.topic, payload: plain }));
});
