"""The IoT agent: devices over HTTP and MQTT into tenant realms (``twistd iot-agent``)."""
