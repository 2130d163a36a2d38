// An independent Sparkplug B edge node: Eclipse Tahu's JavaScript client (sparkplug-client).
// usage: node edge_node.js <mqtt url> <user> <password> <group> <edge node> <n data messages>
// Prints "SENT" after the births and data, "REBIRTH" for every NCMD Node Control/Rebirth
// (answered with new births); stops with an NDEATH when stdin closes.
const sparkplug = require("sparkplug-client");

const [url, username, password, group, node, count] = process.argv.slice(2);
const client = sparkplug.newClient({
  serverUrl: url, username, password, groupId: group, edgeNode: node,
  clientId: `tahu-${node}`, publishDeath: true, version: "spBv1.0",
});

function births() {
  const now = Date.now();
  client.publishNodeBirth({
    timestamp: now,
    metrics: [
      { name: "Temperature", alias: 1, type: "Double", value: 20.5, timestamp: now },
      { name: "Count", alias: 2, type: "Int32", value: -7, timestamp: now },
      { name: "Big", alias: 3, type: "Int64", value: -5000000000, timestamp: now },
      { name: "Flag", alias: 4, type: "Boolean", value: true, timestamp: now },
      { name: "Mode", alias: 5, type: "String", value: "AUTO", timestamp: now },
      { name: "Level", alias: 6, type: "Float", value: 1.5, timestamp: now },
      { name: "Counter32", alias: 7, type: "UInt32", value: 4000000000, timestamp: now },
      { name: "Node Control/Rebirth", type: "Boolean", value: false },
    ],
  });
  client.publishDeviceBirth("Pump1", {
    timestamp: now,
    metrics: [{ name: "Inputs/Speed", alias: 10, type: "Double", value: 100.0, timestamp: now }],
  });
}

let started = false;
client.on("birth", () => {
  births();
  if (started) return;
  started = true;
  const t0 = 1700000000000;
  for (let i = 0; i < Number(count); i++) {
    client.publishNodeData({
      timestamp: t0 + i,
      metrics: [
        { alias: 1, type: "Double", value: i + 0.25, timestamp: t0 + i },
        { alias: 2, type: "Int32", value: -i, timestamp: t0 + i },
      ],
    });
    client.publishDeviceData("Pump1", { timestamp: t0 + i, metrics: [{ alias: 10, type: "Double", value: 1000 + i, timestamp: t0 + i }] });
  }
  console.log("SENT");
});

client.on("ncmd", (payload) => {
  if ((payload.metrics || []).some((m) => m.name === "Node Control/Rebirth" && m.value)) {
    console.log("REBIRTH");
    births();
  }
});

process.stdin.on("end", () => {
  client.stop();
  setTimeout(() => process.exit(0), 300);
});
process.stdin.resume();
