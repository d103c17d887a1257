// Plays an MPEG-TS stream (MPEG-1 video) from a relay topic with JSMpeg.
//
// Open /relay/video.html#access=/session/TOPIC&token=JWT. The fragment never
// reaches a server. The page POSTs the token to the access URL (the seed's
// flow), gets {"uri": "ws(s)://.../session/TOPIC?code=..."} and plays it;
// when the stream ends or fails it asks for a new code and reconnects.
// Options in the fragment: gl=0 draws with Canvas 2D instead of WebGL.
// window.relayVideo = {player, frames, connects, error} for scripts and tests.
(function () {
  'use strict';
  var params = new URLSearchParams(window.location.hash.slice(1));
  var access = params.get('access');
  var token = params.get('token');
  var canvas = document.getElementById('video');
  var status = document.getElementById('status');
  var state = window.relayVideo = { player: null, frames: 0, connects: 0, error: null };

  function show(text) { status.textContent = text; }

  function fail(text) {
    state.error = text;
    show(text);
  }

  function connect() {
    fetch(access, { method: 'POST', headers: { Authorization: token } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.message || ('HTTP ' + response.status));
          return body.uri;
        });
      })
      .then(play)
      .catch(function (e) {
        fail('cannot get the stream: ' + e.message);
        setTimeout(connect, 2000);
      });
  }

  function play(uri) {
    state.connects += 1;
    if (state.player) state.player.destroy();
    state.player = new JSMpeg.Player(uri, {
      canvas: canvas,
      audio: false,
      disableGl: params.get('gl') === '0',
      videoBufferSize: 512 * 1024,
      reconnectInterval: 0,  // a code is good once: reconnecting means a new POST
      onVideoDecode: function () { state.frames += 1; },
      onSourceEstablished: function () { show('playing'); },
      onSourceCompleted: function () { show('stream ended'); },
    });
  }

  setInterval(function () {
    var socket = state.player && state.player.source && state.player.source.socket;
    if (socket && socket.readyState === WebSocket.CLOSED && !state.reconnecting) {
      state.reconnecting = true;
      show('reconnecting');
      setTimeout(function () { state.reconnecting = false; connect(); }, 1000);
    }
  }, 500);

  if (!access || !token) {
    fail('open this page as video.html#access=/session/TOPIC&token=JWT');
    return;
  }
  connect();
})();
