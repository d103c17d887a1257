from twisted.application.service import ServiceMaker

iot_agent = ServiceMaker("iot-agent", "connectors.iot_agent.tap",
                         "IoT agent: devices over HTTP and MQTT into tenant realms (dojot-compatible).", "iot-agent")
