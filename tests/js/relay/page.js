// An experiment page written the way the seed's pages are: POST the token to
// the access URL (Authorization header, no Bearer), open the WebSocket URI it
// answers with, send commands as text, read data frames (text and binary).
// ?access=<access URL>&token=<JWT>
(async function () {
  'use strict';
  const params = new URLSearchParams(window.location.search);
  const results = window.results = { frames: [] };
  try {
    const response = await fetch(params.get('access'), {
      method: 'POST', headers: { Authorization: params.get('token') } });
    results.status = response.status;
    const body = await response.json();
    results.uri = body.uri;
    const ws = new WebSocket(body.uri);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => ws.send('{"set":"speed","to":42}');
    ws.onmessage = (m) => {
      if (typeof m.data === 'string') {
        results.frames.push({ text: m.data });
      } else {
        results.frames.push({ binary: Array.from(new Uint8Array(m.data)) });
      }
      if (results.frames.length === 2) {
        ws.close();
        window.done = true;
      }
    };
    ws.onerror = () => { window.error = 'websocket error'; window.done = true; };
  } catch (e) {
    window.error = String(e);
    window.done = true;
  }
})();
