from relayrouter.plugin import Plugin

iot_agent = Plugin("iot-agent", "connectors.iot_agent.tap",
                   "IoT agent: devices over HTTP and MQTT into tenant realms (dojot-compatible).", extra="iot")
