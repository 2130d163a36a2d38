// An independent Modbus TCP server (modbus-serial, written by people outside axedge) serving a
// register image in the case-folder format (tests/connectors/modbus/cases/*/registers.json).
// Usage: node server.js REGISTERS_JSON  -> prints {"port": N} once listening. Read-only.
"use strict";
const fs = require("fs");
const net = require("net");
const ModbusRTU = require("modbus-serial");

const image = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const tables = {};
for (const table of ["holding", "input", "coil", "discrete_input"]) {
  const cells = new Map();
  for (const [start, values] of Object.entries(image[table] || {})) {
    values.forEach((v, i) => cells.set(Number(start) + i, typeof v === "string" ? parseInt(v, 16) : v));
  }
  tables[table] = cells;
}

function illegal(what) {
  const err = new Error(what);
  err.modbusErrorCode = 0x02; // illegal data address
  return err;
}

function cell(table, addr, unitID) {
  if (unitID !== image.unit_id) {
    const err = new Error(`no unit ${unitID}`);
    err.modbusErrorCode = 0x0b; // gateway target device failed to respond
    throw err;
  }
  const cells = tables[table];
  if (!cells.has(addr)) throw illegal(`${table} ${addr}`);
  return cells.get(addr);
}

const many = (table) => (addr, length, unitID) => {
  const out = [];
  for (let i = 0; i < length; i++) out.push(cell(table, addr + i, unitID));
  return out;
};

const vector = {
  getHoldingRegister: (addr, unitID) => cell("holding", addr, unitID),
  getMultipleHoldingRegisters: many("holding"),
  getInputRegister: (addr, unitID) => cell("input", addr, unitID),
  getMultipleInputRegisters: many("input"),
  getCoil: (addr, unitID) => Boolean(cell("coil", addr, unitID)),
  getDiscreteInput: (addr, unitID) => Boolean(cell("discrete_input", addr, unitID)),
  setRegister: () => { throw illegal("read-only"); },
  setCoil: () => { throw illegal("read-only"); },
};

// modbus-serial treats port 0 as "default 502", so find a free port first (retry if taken meanwhile).
function start(attempt) {
  const probe = net.createServer();
  probe.listen(0, "127.0.0.1", () => {
    const port = probe.address().port;
    probe.close(() => {
      const server = new ModbusRTU.ServerTCP(vector, { host: "127.0.0.1", port, unitID: 255 });
      server.on("initialized", () => process.stdout.write(JSON.stringify({ port }) + "\n"));
      server.on("serverError", (err) => {
        if (err.code === "EADDRINUSE" && attempt < 5) start(attempt + 1);
        else { console.error(err); process.exit(1); }
      });
    });
  });
}
start(0);
process.on("SIGTERM", () => process.exit(0));
