// Independent OPC UA server for axedge interop tests: node-opcua with the official DI, IA,
// Machinery and MachineTool nodesets, one instantiated MachineTool, a few changing values.
// Usage: node server.js PORT PKI_DIR   -> prints {"port": N, "endpoint": "..."} on stdout when ready.
"use strict";
const { OPCUAServer, OPCUACertificateManager, DataType, Variant, MessageSecurityMode, SecurityPolicy, standardUnits, Range } = require("node-opcua");
const { nodesets } = require("node-opcua-nodesets");

const NS_MT = "http://opcfoundation.org/UA/MachineTool/";
const NS_MACHINERY = "http://opcfoundation.org/UA/Machinery/";

async function main() {
    const port = parseInt(process.argv[2] || "0", 10);
    const pki = process.argv[3] || require("os").tmpdir() + "/axedge-node-opcua-pki";
    const serverCertificateManager = new OPCUACertificateManager({ rootFolder: pki, automaticallyAcceptUnknownCertificate: true });
    const server = new OPCUAServer({
        serverCertificateManager,
        port,
        hostname: "127.0.0.1",
        nodeset_filename: [nodesets.standard, nodesets.di, nodesets.ia, nodesets.machinery, nodesets.isa95JobControl, nodesets.machineryJobs, nodesets.machineTool],
        securityModes: [MessageSecurityMode.None],
        securityPolicies: [SecurityPolicy.None],
        allowAnonymous: true,
        buildInfo: { productName: "axedge-interop-node-opcua" },
    });
    await server.initialize();
    const addressSpace = server.engine.addressSpace;
    const nsMT = addressSpace.getNamespaceIndex(NS_MT);
    const nsMach = addressSpace.getNamespaceIndex(NS_MACHINERY);
    const own = addressSpace.getOwnNamespace();

    const machineToolType = addressSpace.findObjectType("MachineToolType", nsMT);
    const machines = addressSpace.findNode(`ns=${nsMach};i=1001`); // Objects/Machines
    const mt = machineToolType.instantiate({ browseName: { name: "Mill42", namespaceIndex: own.index }, organizedBy: machines });

    const ident = mt.getChildByName("Identification");
    const set = (node, dataType, value) => node && node.setValueFromSource(new Variant({ dataType, value }));
    set(ident.getChildByName("Manufacturer"), DataType.LocalizedText, { text: "Interop Werke" });
    set(ident.getChildByName("SerialNumber"), DataType.String, "NODE-0042");

    // Monitoring/Spindle with an override that changes (SpindleMonitoringType from the MachineTool nodeset)
    const monitoring = mt.getChildByName("Monitoring");
    const spindleType = addressSpace.findObjectType("SpindleMonitoringType", nsMT);
    const spindle = spindleType.instantiate({ browseName: { name: "Spindle", namespaceIndex: own.index }, componentOf: monitoring, optionals: ["Override"] });
    const override = spindle.getChildByName("Override");
    // the nodeset declares EngineeringUnits / EURange without values: a real machine fills them in
    set(override.getChildByName("EngineeringUnits"), DataType.ExtensionObject, standardUnits.percent);
    set(override.getChildByName("EURange"), DataType.ExtensionObject, new Range({ low: 0, high: 200 }));
    const isRotating = spindle.getChildByName("IsRotating");
    const channelType = addressSpace.findObjectType("ChannelMonitoringType", nsMT);
    const channel = channelType.instantiate({ browseName: { name: "Channel1", namespaceIndex: own.index }, componentOf: monitoring });
    const feed = channel.getChildByName("FeedOverride");

    let k = 0;
    setInterval(() => {
        k += 1;
        set(override, DataType.Double, 100 + (k % 10));
        set(feed, DataType.Double, 90 + (k % 5));
        set(isRotating, DataType.Boolean, k % 2 === 0);
    }, 200);

    await server.start();
    const actual = server.endpoints[0].port;
    process.stdout.write(JSON.stringify({ port: actual, endpoint: `opc.tcp://127.0.0.1:${actual}`, machine: "Mill42" }) + "\n");
    const stop = async () => { await server.shutdown(100); process.exit(0); };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((err) => { console.error(err); process.exit(1); });
